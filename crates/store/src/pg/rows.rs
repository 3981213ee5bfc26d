//! Queries shared by PostgreSQL's writer and readers, over a connection or a transaction
//! alike, with the mapping of their rows. Every statement is prepared once per connection
//! (`prepare_cached`).

use std::collections::HashMap;

use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, FileInfo, Markers, MessageId, MessageKind,
    MessageView, Millis, Seq, SystemEvent, UserId, UserInfo,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::error::Res;
use crate::files::StoredFile;
use crate::queries::{sql, unsql, ConversationRow, MemberRow};
use crate::StoreError;

/// How `messages.kind` stores a [`MessageKind`].
pub(crate) fn kind_to_sql(kind: MessageKind) -> i16 {
    match kind {
        MessageKind::Text => 0,
        MessageKind::System => 1,
        MessageKind::File => 2,
    }
}

fn kind_from_sql(v: i16) -> MessageKind {
    match v {
        1 => MessageKind::System,
        2 => MessageKind::File,
        _ => MessageKind::Text,
    }
}

/// The select list and joins [`message_from_row`] reads; callers append `WHERE …`.
pub(crate) const MESSAGES: &str = "SELECT m.id, m.conversation_id, m.seq, m.ts, m.sender, \
     u.username, m.kind, m.body, m.local_id, m.event, f.id, f.name, f.size, f.mime, f.sha256 \
     FROM messages m LEFT JOIN users u ON u.id = m.sender LEFT JOIN files f ON f.id = m.file_id";

/// One row of [`MESSAGES`].
pub(crate) fn message_from_row(row: &Row) -> Res<MessageView> {
    let event = match row.try_get::<_, Option<String>>(9)? {
        Some(json) => Some(
            serde_json::from_str::<SystemEvent>(&json)
                .map_err(|e| StoreError::Db(format!("a stored system event: {e}")))?,
        ),
        None => None,
    };
    let file = match row.try_get::<_, Option<i64>>(10)? {
        Some(id) => Some(FileInfo {
            id: unsql(id),
            name: row.try_get(11)?,
            size: unsql(row.try_get(12)?),
            mime: row.try_get(13)?,
            sha256: row.try_get::<_, Option<String>>(14)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(MessageView {
        id: MessageId(unsql(row.try_get(0)?)),
        conversation: ConversationId(unsql(row.try_get(1)?)),
        seq: Seq(unsql(row.try_get(2)?)),
        ts: row.try_get(3)?,
        sender: row.try_get::<_, Option<i64>>(4)?.map(|s| UserId(unsql(s))),
        sender_name: row.try_get(5)?,
        kind: kind_from_sql(row.try_get(6)?),
        body: row.try_get(7)?,
        local_id: row.try_get(8)?,
        event,
        file,
    })
}

/// Every row of a message query, mapped.
pub(crate) fn messages(rows: &[Row]) -> Res<Vec<MessageView>> {
    rows.iter().map(message_from_row).collect()
}

/// The message at `seq` in `conversation`.
pub(crate) async fn message_at(
    c: &impl GenericClient,
    conversation: ConversationId,
    seq: Seq,
) -> Res<Option<MessageView>> {
    let stmt = c
        .prepare_cached(&format!(
            "{MESSAGES} WHERE m.conversation_id = $1 AND m.seq = $2"
        ))
        .await?;
    let row = c
        .query_opt(&stmt, &[&sql(conversation.0), &sql(seq.0)])
        .await?;
    row.as_ref().map(message_from_row).transpose()
}

/// The message `sender` stored under `local_id`, if any.
pub(crate) async fn message_by_local_id(
    c: &impl GenericClient,
    sender: UserId,
    local_id: &str,
) -> Res<Option<MessageView>> {
    let stmt = c
        .prepare_cached(&format!(
            "{MESSAGES} WHERE m.sender = $1 AND m.local_id = $2"
        ))
        .await?;
    let row = c.query_opt(&stmt, &[&sql(sender.0), &local_id]).await?;
    row.as_ref().map(message_from_row).transpose()
}

/// A user by id.
pub(crate) async fn user(c: &impl GenericClient, id: UserId) -> Res<Option<UserInfo>> {
    let stmt = c
        .prepare_cached("SELECT username FROM users WHERE id = $1")
        .await?;
    Ok(match c.query_opt(&stmt, &[&sql(id.0)]).await? {
        Some(row) => Some(UserInfo {
            id,
            username: row.try_get(0)?,
        }),
        None => None,
    })
}

/// A user and the columns a login checks, by a username key.
pub(crate) fn user_from_row(row: &Row) -> Res<UserInfo> {
    Ok(UserInfo {
        id: UserId(unsql(row.try_get(0)?)),
        username: row.try_get(1)?,
    })
}

/// The row of conversation `id`.
pub(crate) async fn conversation_row(
    c: &impl GenericClient,
    id: ConversationId,
) -> Res<Option<ConversationRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT kind, name, owner, last_seq, last_ts FROM conversations WHERE id = $1",
        )
        .await?;
    let Some(row) = c.query_opt(&stmt, &[&sql(id.0)]).await? else {
        return Ok(None);
    };
    Ok(Some(ConversationRow {
        kind: kind_of(row.try_get(0)?),
        name: row.try_get(1)?,
        owner: row.try_get::<_, Option<i64>>(2)?.map(|o| UserId(unsql(o))),
        last_seq: Seq(unsql(row.try_get(3)?)),
        last_ts: row.try_get(4)?,
    }))
}

/// `conversations.kind` as a [`ConversationKind`].
pub(crate) fn kind_of(kind: &str) -> ConversationKind {
    if kind == "direct" {
        ConversationKind::Direct
    } else {
        ConversationKind::Group
    }
}

/// The members of `id` with their markers, longest-standing first.
pub(crate) async fn member_rows(c: &impl GenericClient, id: ConversationId) -> Res<Vec<MemberRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT m.user_id, u.username, m.delivered_seq, m.read_seq, u.last_seen
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 ORDER BY m.id",
        )
        .await?;
    c.query(&stmt, &[&sql(id.0)])
        .await?
        .iter()
        .map(|r| {
            let user = UserId(unsql(r.try_get(0)?));
            Ok(MemberRow {
                user: UserInfo {
                    id: user,
                    username: r.try_get(1)?,
                },
                markers: Markers {
                    user,
                    delivered: Seq(unsql(r.try_get(2)?)),
                    read: Seq(unsql(r.try_get(3)?)),
                },
                last_seen: r.try_get(4)?,
            })
        })
        .collect()
}

/// The members of each of `ids` with their markers, longest-standing first.
pub(crate) async fn members_of(
    c: &impl GenericClient,
    ids: &[i64],
) -> Res<HashMap<ConversationId, Vec<MemberRow>>> {
    let stmt = c
        .prepare_cached(
            "SELECT m.conversation_id, m.user_id, u.username, m.delivered_seq, m.read_seq,
                    u.last_seen
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ANY($1) ORDER BY m.conversation_id, m.id",
        )
        .await?;
    let mut out: HashMap<ConversationId, Vec<MemberRow>> = HashMap::new();
    for r in c.query(&stmt, &[&ids]).await? {
        let user = UserId(unsql(r.try_get(1)?));
        out.entry(ConversationId(unsql(r.try_get(0)?)))
            .or_default()
            .push(MemberRow {
                user: UserInfo {
                    id: user,
                    username: r.try_get(2)?,
                },
                markers: Markers {
                    user,
                    delivered: Seq(unsql(r.try_get(3)?)),
                    read: Seq(unsql(r.try_get(4)?)),
                },
                last_seen: r.try_get(5)?,
            });
    }
    Ok(out)
}

/// The last message of each of `ids` that has one.
pub(crate) async fn last_messages(
    c: &impl GenericClient,
    ids: &[i64],
) -> Res<HashMap<ConversationId, MessageView>> {
    let stmt = c
        .prepare_cached(&format!(
            "{MESSAGES} JOIN conversations c ON c.id = m.conversation_id AND m.seq = c.last_seq
             WHERE c.id = ANY($1)"
        ))
        .await?;
    let mut out = HashMap::new();
    for row in c.query(&stmt, &[&ids]).await? {
        let message = message_from_row(&row)?;
        out.insert(message.conversation, message);
    }
    Ok(out)
}

/// For each of `ids`: the messages after `user`'s read marker that others sent.
pub(crate) async fn unread_counts(
    c: &impl GenericClient,
    user: UserId,
    ids: &[i64],
) -> Res<HashMap<ConversationId, u64>> {
    let stmt = c
        .prepare_cached(
            "SELECT x.conversation_id, count(*) FROM members m
             JOIN messages x ON x.conversation_id = m.conversation_id AND x.seq > m.read_seq
             WHERE m.user_id = $1 AND m.conversation_id = ANY($2)
               AND (x.sender IS NULL OR x.sender <> $1)
             GROUP BY x.conversation_id",
        )
        .await?;
    let mut out = HashMap::new();
    for row in c.query(&stmt, &[&sql(user.0), &ids]).await? {
        let n: i64 = row.try_get(1)?;
        out.insert(ConversationId(unsql(row.try_get(0)?)), unsql(n));
    }
    Ok(out)
}

/// `user`'s read marker in `id`, or `None` if they are not a member.
pub(crate) async fn read_marker(
    c: &impl GenericClient,
    user: UserId,
    id: ConversationId,
) -> Res<Option<Seq>> {
    let stmt = c
        .prepare_cached("SELECT read_seq FROM members WHERE conversation_id = $1 AND user_id = $2")
        .await?;
    Ok(
        match c.query_opt(&stmt, &[&sql(id.0), &sql(user.0)]).await? {
            Some(row) => Some(Seq(unsql(row.try_get(0)?))),
            None => None,
        },
    )
}

/// Messages after `read` that `user` did not send.
async fn unread(c: &impl GenericClient, user: UserId, id: ConversationId, read: Seq) -> Res<u64> {
    let stmt = c
        .prepare_cached(
            "SELECT count(*) FROM messages
             WHERE conversation_id = $1 AND seq > $2 AND (sender IS NULL OR sender <> $3)",
        )
        .await?;
    let n: i64 = c
        .query_one(&stmt, &[&sql(id.0), &sql(read.0), &sql(user.0)])
        .await?
        .try_get(0)?;
    Ok(unsql(n))
}

/// Assembles a [`ConversationInfo`], as `crate::queries::conversation_info` does for SQLite:
/// `last_seq` overrides the row's; with a `viewer`, `unread` is counted and a direct chat is
/// named after the other member.
pub(crate) async fn conversation_info(
    c: &impl GenericClient,
    id: ConversationId,
    row: &ConversationRow,
    last_seq: Seq,
    viewer: Option<(UserId, Seq)>,
) -> Res<ConversationInfo> {
    let rows = member_rows(c, id).await?;
    let last_message = if last_seq == Seq::ZERO {
        None
    } else {
        message_at(c, id, last_seq).await?
    };
    let mut info = ConversationInfo {
        id,
        kind: row.kind,
        name: row.name.clone(),
        owner: row.owner,
        members: rows.iter().map(|m| m.user.clone()).collect(),
        last_seq,
        last_message,
        unread: 0,
        markers: Vec::new(),
    };
    if let Some((viewer, read)) = viewer {
        info.unread = if read >= last_seq {
            0
        } else {
            unread(c, viewer, id, read).await?
        };
        info.markers = rows.iter().map(|m| m.markers).collect();
        info = crate::for_viewer(&info, viewer);
    }
    Ok(info)
}

/// The conversations `user` is a member of.
pub(crate) async fn user_conversations(
    c: &impl GenericClient,
    user: UserId,
) -> Res<Vec<ConversationId>> {
    let stmt = c
        .prepare_cached(
            "SELECT conversation_id FROM members WHERE user_id = $1 ORDER BY conversation_id",
        )
        .await?;
    c.query(&stmt, &[&sql(user.0)])
        .await?
        .iter()
        .map(|r| Ok(ConversationId(unsql(r.try_get(0)?))))
        .collect()
}

/// The columns [`stored_file`] reads, from `files`.
pub(crate) const FILE_ROW: &str = "id, uploader, conversation_id, upload_id, name, mime, size, \
                                   sha256, created_at, completed_at IS NOT NULL";

/// One row of [`FILE_ROW`].
pub(crate) fn stored_file(r: &Row) -> Res<StoredFile> {
    Ok(StoredFile {
        id: unsql(r.try_get(0)?),
        uploader: UserId(unsql(r.try_get(1)?)),
        conversation: ConversationId(unsql(r.try_get(2)?)),
        upload_id: r.try_get(3)?,
        name: r.try_get(4)?,
        mime: r.try_get(5)?,
        size: unsql(r.try_get(6)?),
        sha256: r.try_get(7)?,
        created_at: r.try_get(8)?,
        completed: r.try_get(9)?,
    })
}

/// The `files` row `id`.
pub(crate) async fn file_row(c: &impl GenericClient, id: u64) -> Res<Option<StoredFile>> {
    let stmt = c
        .prepare_cached(&format!("SELECT {FILE_ROW} FROM files WHERE id = $1"))
        .await?;
    let row = c.query_opt(&stmt, &[&sql(id)]).await?;
    row.as_ref().map(stored_file).transpose()
}

/// `uploader`'s upload `upload_id`.
pub(crate) async fn file_by_upload_id(
    c: &impl GenericClient,
    uploader: UserId,
    upload_id: &str,
) -> Res<Option<StoredFile>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {FILE_ROW} FROM files WHERE uploader = $1 AND upload_id = $2"
        ))
        .await?;
    let row = c.query_opt(&stmt, &[&sql(uploader.0), &upload_id]).await?;
    row.as_ref().map(stored_file).transpose()
}

/// Unfinished uploads and bytes announced in the last day, for `uploader`.
pub(crate) async fn usage(
    c: &impl GenericClient,
    uploader: UserId,
    now: Millis,
) -> Res<(u64, u64)> {
    let stmt = c
        .prepare_cached(
            "SELECT (SELECT count(*) FROM files WHERE uploader = $1 AND completed_at IS NULL),
                    (SELECT coalesce(sum(size), 0)::BIGINT FROM files
                     WHERE uploader = $1 AND created_at > $2)",
        )
        .await?;
    let row = c
        .query_one(&stmt, &[&sql(uploader.0), &(now - crate::files::DAY_MS)])
        .await?;
    Ok((unsql(row.try_get(0)?), unsql(row.try_get(1)?)))
}

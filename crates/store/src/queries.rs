//! Plain synchronous queries shared by the writer and the readers. Every statement goes through
//! `prepare_cached`, so each connection parses it once.

use std::time::{SystemTime, UNIX_EPOCH};

use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, Markers, MessageId, MessageKind,
    MessageView, Millis, Seq, SystemEvent, UserId, UserInfo,
};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::Res;

/// A `u64` from the API as an SQLite integer. Ids and seqs past `i64::MAX` cannot exist in
/// the database, so saturating keeps comparisons right (`seq > huge` matches nothing) without
/// a failure path.
pub(crate) fn sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An SQLite integer that the schema keeps non-negative, as a `u64`.
pub(crate) fn unsql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A caller's `limit` as an SQL `LIMIT`.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The server's wall clock in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
    })
}

/// How `messages.kind` stores a [`MessageKind`].
pub(crate) fn kind_to_sql(kind: MessageKind) -> i64 {
    match kind {
        MessageKind::Text => 0,
        MessageKind::System => 1,
        MessageKind::File => 2,
    }
}

fn kind_from_sql(v: i64) -> MessageKind {
    match v {
        1 => MessageKind::System,
        2 => MessageKind::File,
        _ => MessageKind::Text,
    }
}

/// The columns [`message_from_row`] reads, for `FROM messages m LEFT JOIN users u ON u.id = m.sender`.
/// A file message's file comes from a subquery rather than a join, so every query that reads
/// messages gets it without changing its `FROM` (read by [`crate::files::file_from_column`]).
pub(crate) const MESSAGE_COLUMNS: &str = concat!(
    "m.id, m.conversation_id, m.seq, m.ts, m.sender, u.username, m.kind, m.body, m.local_id, m.event, ",
    "CASE WHEN m.file_id IS NULL THEN NULL ELSE (SELECT json_array(f.id, f.name, f.size, f.mime, f.sha256) FROM files f WHERE f.id = m.file_id) END"
);

/// One row of [`MESSAGE_COLUMNS`].
pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageView> {
    let event: Option<String> = row.get(9)?;
    let event = match event {
        Some(json) => Some(serde_json::from_str::<SystemEvent>(&json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
        })?),
        None => None,
    };
    Ok(MessageView {
        id: MessageId(unsql(row.get(0)?)),
        conversation: ConversationId(unsql(row.get(1)?)),
        seq: Seq(unsql(row.get(2)?)),
        ts: row.get(3)?,
        sender: row.get::<_, Option<i64>>(4)?.map(|s| UserId(unsql(s))),
        sender_name: row.get(5)?,
        kind: kind_from_sql(row.get(6)?),
        body: row.get(7)?,
        local_id: row.get(8)?,
        event,
        file: crate::files::file_from_column(row, 10)?,
    })
}

/// The message at `seq` in `conversation`.
pub(crate) fn message_at(
    conn: &Connection,
    conversation: ConversationId,
    seq: Seq,
) -> Res<Option<MessageView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender
         WHERE m.conversation_id = ?1 AND m.seq = ?2"
    ))?;
    Ok(stmt
        .query_row([sql(conversation.0), sql(seq.0)], message_from_row)
        .optional()?)
}

/// The message `sender` stored under `local_id`, if any.
pub(crate) fn message_by_local_id(
    conn: &Connection,
    sender: UserId,
    local_id: &str,
) -> Res<Option<MessageView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender
         WHERE m.sender = ?1 AND m.local_id = ?2"
    ))?;
    Ok(stmt
        .query_row(rusqlite::params![sql(sender.0), local_id], message_from_row)
        .optional()?)
}

/// A user by id.
pub(crate) fn user(conn: &Connection, id: UserId) -> Res<Option<UserInfo>> {
    let mut stmt = conn.prepare_cached("SELECT username FROM users WHERE id = ?1")?;
    Ok(stmt
        .query_row([sql(id.0)], |r| {
            Ok(UserInfo {
                id,
                username: r.get(0)?,
            })
        })
        .optional()?)
}

/// The key usernames are compared by: case-insensitive across Unicode, not only ASCII (which
/// is all SQLite's `NOCASE` folds).
pub(crate) fn username_key(name: &str) -> String {
    name.to_lowercase()
}

/// A conversation's own row.
#[derive(Debug, Clone)]
pub(crate) struct ConversationRow {
    pub(crate) kind: ConversationKind,
    pub(crate) name: String,
    pub(crate) owner: Option<UserId>,
    pub(crate) last_seq: Seq,
    pub(crate) last_ts: Millis,
}

/// The row of conversation `id`.
pub(crate) fn conversation_row(
    conn: &Connection,
    id: ConversationId,
) -> Res<Option<ConversationRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, name, owner, last_seq, last_ts FROM conversations WHERE id = ?1",
    )?;
    Ok(stmt
        .query_row([sql(id.0)], |r| {
            let kind: String = r.get(0)?;
            Ok(ConversationRow {
                kind: if kind == "direct" {
                    ConversationKind::Direct
                } else {
                    ConversationKind::Group
                },
                name: r.get(1)?,
                owner: r.get::<_, Option<i64>>(2)?.map(|o| UserId(unsql(o))),
                last_seq: Seq(unsql(r.get(3)?)),
                last_ts: r.get(4)?,
            })
        })
        .optional()?)
}

/// A member with their markers and when they were last online.
#[derive(Debug, Clone)]
pub(crate) struct MemberRow {
    pub(crate) user: UserInfo,
    pub(crate) markers: Markers,
    pub(crate) last_seen: Option<Millis>,
}

/// The members of `id` with their markers, longest-standing first.
pub(crate) fn member_rows(conn: &Connection, id: ConversationId) -> Res<Vec<MemberRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.user_id, u.username, m.delivered_seq, m.read_seq, u.last_seen
         FROM members m JOIN users u ON u.id = m.user_id
         WHERE m.conversation_id = ?1 ORDER BY m.id",
    )?;
    let rows = stmt.query_map([sql(id.0)], |r| {
        let user = UserId(unsql(r.get(0)?));
        Ok(MemberRow {
            user: UserInfo {
                id: user,
                username: r.get(1)?,
            },
            markers: Markers {
                user,
                delivered: Seq(unsql(r.get(2)?)),
                read: Seq(unsql(r.get(3)?)),
            },
            last_seen: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `user`'s read marker in `id`, or `None` if they are not a member.
pub(crate) fn read_marker(conn: &Connection, user: UserId, id: ConversationId) -> Res<Option<Seq>> {
    let mut stmt = conn.prepare_cached(
        "SELECT read_seq FROM members WHERE conversation_id = ?1 AND user_id = ?2",
    )?;
    Ok(stmt
        .query_row([sql(id.0), sql(user.0)], |r| Ok(Seq(unsql(r.get(0)?))))
        .optional()?)
}

/// Messages after `read` that `user` did not send.
pub(crate) fn unread(conn: &Connection, user: UserId, id: ConversationId, read: Seq) -> Res<u64> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM messages
         WHERE conversation_id = ?1 AND seq > ?2 AND (sender IS NULL OR sender <> ?3)",
    )?;
    let n: i64 = stmt.query_row([sql(id.0), sql(read.0), sql(user.0)], |r| r.get(0))?;
    Ok(unsql(n))
}

/// Assembles a [`ConversationInfo`]. `last_seq` overrides the row's (the writer knows a newer
/// one than its not-yet-flushed row). With a `viewer` (and their read marker), `unread` is
/// counted and a direct chat is named after the other member; without one it is the neutral
/// form events carry.
pub(crate) fn conversation_info(
    conn: &Connection,
    id: ConversationId,
    row: &ConversationRow,
    last_seq: Seq,
    viewer: Option<(UserId, Seq)>,
) -> Res<ConversationInfo> {
    let rows = member_rows(conn, id)?;
    let last_message = if last_seq == Seq::ZERO {
        None
    } else {
        message_at(conn, id, last_seq)?
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
            unread(conn, viewer, id, read)?
        };
        info.markers = rows.iter().map(|m| m.markers).collect();
        info = crate::for_viewer(&info, viewer);
    }
    Ok(info)
}

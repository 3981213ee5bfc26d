//! PostgreSQL's read side: a pool of connections on the caller's runtime. Multi-statement
//! reads run in one `REPEATABLE READ READ ONLY` transaction, so they see one snapshot, as
//! SQLite's readers do.

use chatgroup_protocol::{
    ConversationId, ConversationInfo, MessageView, Millis, Seq, UserId, UserInfo,
};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::IsolationLevel;

use super::rows::{self, MESSAGES};
use crate::error::{Fail, Res};
use crate::files::StoredFile;
use crate::queries::{sql, sql_limit, unsql, username_key, ConversationRow};
use crate::{StoreError, UserAuth};

/// The read pool.
#[derive(Debug, Clone)]
pub(crate) struct Reads {
    pool: Pool,
}

/// Runs `$body` with `$c` bound to a pooled connection's snapshot transaction, and turns
/// every failure into a [`StoreError`].
macro_rules! snapshot {
    ($self:ident, |$c:ident| $body:expr) => {{
        let result: Res<_> = async {
            let mut client = $self.client().await?;
            let $c = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let out = $body;
            // Nothing to commit; ending it releases the snapshot.
            $c.commit().await?;
            Ok(out)
        }
        .await;
        result.map_err(StoreError::from)
    }};
}

impl Reads {
    pub(crate) fn new(pool: Pool) -> Self {
        Reads { pool }
    }

    async fn client(&self) -> Res<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs one statement's worth of work on a pooled connection.
    async fn one<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Client) -> Res<T>,
    ) -> Result<T, StoreError> {
        let result: Res<T> = async {
            let client = self.client().await?;
            f(&client).await
        }
        .await;
        result.map_err(StoreError::from)
    }

    pub(crate) async fn user_by_name(
        &self,
        username: &str,
    ) -> Result<Option<UserAuth>, StoreError> {
        let key = username_key(username);
        self.one(async |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT id, username, password_hash FROM users WHERE username_key = $1",
                )
                .await?;
            Ok(match c.query_opt(&stmt, &[&key]).await? {
                Some(row) => Some(UserAuth {
                    user: rows::user_from_row(&row)?,
                    password_hash: row.try_get(2)?,
                }),
                None => None,
            })
        })
        .await
    }

    pub(crate) async fn user(&self, id: UserId) -> Result<Option<UserInfo>, StoreError> {
        self.one(async |c| rows::user(c, id).await).await
    }

    pub(crate) async fn users_by_names(
        &self,
        names: &[String],
    ) -> Result<Vec<UserInfo>, StoreError> {
        snapshot!(self, |c| {
            let stmt = c
                .prepare_cached("SELECT id, username FROM users WHERE username_key = $1")
                .await?;
            let mut users = Vec::with_capacity(names.len());
            for name in names {
                let row = c
                    .query_opt(&stmt, &[&username_key(name)])
                    .await?
                    .ok_or(Fail::Store(StoreError::NotFound("user")))?;
                users.push(rows::user_from_row(&row)?);
            }
            users
        })
    }

    pub(crate) async fn search_users(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<UserInfo>, StoreError> {
        let pattern = format!("{}%", crate::read::escape_like(&username_key(prefix)));
        self.one(async |c| {
            let stmt = c
                .prepare_cached(
                    r"SELECT id, username FROM users WHERE username_key LIKE $1 ESCAPE '\'
                      ORDER BY username_key LIMIT $2",
                )
                .await?;
            c.query(&stmt, &[&pattern, &sql_limit(limit)])
                .await?
                .iter()
                .map(rows::user_from_row)
                .collect()
        })
        .await
    }

    pub(crate) async fn member_presence(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<Vec<(UserInfo, Option<Millis>)>, StoreError> {
        snapshot!(self, |c| {
            check_member(&c, user, id).await?;
            rows::member_rows(&c, id)
                .await?
                .into_iter()
                .map(|m| (m.user, m.last_seen))
                .collect()
        })
    }

    /// Four statements whatever the number of conversations (a login's sync lists them
    /// all): the list with each conversation's row, then every member, every last message
    /// and every unread count in one statement each.
    pub(crate) async fn conversations(
        &self,
        user: UserId,
    ) -> Result<Vec<ConversationInfo>, StoreError> {
        snapshot!(self, |c| {
            // Ties between conversations whose last messages share a millisecond break by
            // the last message's id, then the conversation's.
            let stmt = c
                .prepare_cached(
                    "SELECT c.id, m.read_seq, c.kind, c.name, c.owner, c.last_seq, c.last_ts
                     FROM members m JOIN conversations c ON c.id = m.conversation_id
                     WHERE m.user_id = $1
                     ORDER BY c.last_ts DESC,
                              (SELECT x.id FROM messages x
                               WHERE x.conversation_id = c.id AND x.seq = c.last_seq) DESC NULLS LAST,
                              c.id DESC",
                )
                .await?;
            let mut list = Vec::new();
            for row in c.query(&stmt, &[&sql(user.0)]).await? {
                let id = ConversationId(unsql(row.try_get(0)?));
                let read = Seq(unsql(row.try_get(1)?));
                let conv = ConversationRow {
                    kind: rows::kind_of(row.try_get(2)?),
                    name: row.try_get(3)?,
                    owner: row.try_get::<_, Option<i64>>(4)?.map(|o| UserId(unsql(o))),
                    last_seq: Seq(unsql(row.try_get(5)?)),
                    last_ts: row.try_get(6)?,
                };
                list.push((id, read, conv));
            }
            let ids: Vec<i64> = list.iter().map(|(id, _, _)| sql(id.0)).collect();
            let mut members = rows::members_of(&c, &ids).await?;
            let mut last = rows::last_messages(&c, &ids).await?;
            let unread = rows::unread_counts(&c, user, &ids).await?;
            list.into_iter()
                .map(|(id, read, conv)| {
                    let members = members.remove(&id).unwrap_or_default();
                    let mut info = ConversationInfo {
                        id,
                        kind: conv.kind,
                        name: conv.name,
                        owner: conv.owner,
                        members: members.iter().map(|m| m.user.clone()).collect(),
                        last_seq: conv.last_seq,
                        last_message: last.remove(&id),
                        unread: if read >= conv.last_seq {
                            0
                        } else {
                            unread.get(&id).copied().unwrap_or(0)
                        },
                        markers: members.iter().map(|m| m.markers).collect(),
                    };
                    info = crate::for_viewer(&info, user);
                    info
                })
                .collect::<Vec<_>>()
        })
    }

    pub(crate) async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<ConversationInfo, StoreError> {
        snapshot!(self, |c| {
            let row = rows::conversation_row(&c, id)
                .await?
                .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
            let read = rows::read_marker(&c, user, id)
                .await?
                .ok_or(Fail::Store(StoreError::NotMember))?;
            rows::conversation_info(&c, id, &row, row.last_seq, Some((user, read))).await?
        })
    }

    pub(crate) async fn is_member(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<bool, StoreError> {
        self.one(async |c| Ok(rows::read_marker(c, user, id).await?.is_some()))
            .await
    }

    pub(crate) async fn messages_after(
        &self,
        user: UserId,
        id: ConversationId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<MessageView>, StoreError> {
        snapshot!(self, |c| {
            check_member(&c, user, id).await?;
            let stmt = c
                .prepare_cached(&format!(
                    "{MESSAGES} WHERE m.conversation_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"
                ))
                .await?;
            let found = c
                .query(&stmt, &[&sql(id.0), &sql(after.0), &sql_limit(limit)])
                .await?;
            rows::messages(&found)?
        })
    }

    pub(crate) async fn history(
        &self,
        user: UserId,
        id: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<(Vec<MessageView>, bool), StoreError> {
        let before = before.map_or(i64::MAX, |s| sql(s.0));
        snapshot!(self, |c| {
            check_member(&c, user, id).await?;
            // One more than asked tells whether older messages exist.
            let stmt = c
                .prepare_cached(&format!(
                    "{MESSAGES} WHERE m.conversation_id = $1 AND m.seq < $2
                     ORDER BY m.seq DESC LIMIT $3"
                ))
                .await?;
            let found = c
                .query(
                    &stmt,
                    &[&sql(id.0), &before, &sql_limit(limit.saturating_add(1))],
                )
                .await?;
            let mut page = rows::messages(&found)?;
            let more = page.len() > limit;
            page.truncate(limit);
            page.reverse();
            (page, more)
        })
    }

    pub(crate) async fn last_seq(&self, id: ConversationId) -> Result<Seq, StoreError> {
        self.one(async |c| {
            Ok(rows::conversation_row(c, id)
                .await?
                .ok_or(Fail::Store(StoreError::NotFound("conversation")))?
                .last_seq)
        })
        .await
    }

    pub(crate) async fn file(&self, id: u64) -> Result<Option<StoredFile>, StoreError> {
        self.one(async |c| rows::file_row(c, id).await).await
    }

    pub(crate) async fn unfinished_uploads(
        &self,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<StoredFile>, StoreError> {
        self.one(async |c| {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {} FROM files WHERE completed_at IS NULL AND created_at < $1
                     ORDER BY created_at LIMIT $2",
                    rows::FILE_ROW
                ))
                .await?;
            c.query(&stmt, &[&before, &sql_limit(limit)])
                .await?
                .iter()
                .map(rows::stored_file)
                .collect()
        })
        .await
    }
}

/// `NotFound` if the conversation does not exist, `NotMember` if `user` is not in it.
async fn check_member(c: &impl GenericClient, user: UserId, id: ConversationId) -> Res<()> {
    if rows::read_marker(c, user, id).await?.is_some() {
        return Ok(());
    }
    let exists = rows::conversation_row(c, id).await?.is_some();
    Err(Fail::Store(if exists {
        StoreError::NotMember
    } else {
        StoreError::NotFound("conversation")
    }))
}

/// A pool that could not hand out a connection, as a store error.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> Fail {
    match e {
        deadpool_postgres::PoolError::Backend(e) => Fail::Pg(e),
        other => Fail::Store(StoreError::Db(format!("database pool: {other}"))),
    }
}

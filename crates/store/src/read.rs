//! The read side: a pool of read-only connections, each query run on tokio's blocking pool so
//! SQLite never stalls an async worker. Multi-statement reads run in one read transaction, so
//! they see one committed snapshot (WAL gives each reader its own).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chatgroup_protocol::{
    ConversationId, ConversationInfo, MessageView, Millis, Seq, UserId, UserInfo,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Semaphore;

use crate::error::{Fail, Res};
use crate::queries::{self, sql, sql_limit, unsql, MESSAGE_COLUMNS};
use crate::{StoreError, UserAuth};

/// Read-only connections, handed out one per query.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per connection: a query waits here (asynchronously) for a free one instead
    /// of piling up on the blocking pool.
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(crate) fn open(path: PathBuf, count: usize) -> Res<Self> {
        let count = count.max(1);
        let conns = (0..count)
            .map(|_| crate::schema::open_reader(&path))
            .collect::<Res<Vec<_>>>()?;
        Ok(Readers {
            path,
            idle: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(count)),
        })
    }

    /// Runs `query` on a free connection, off the async threads.
    pub(crate) async fn run<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Res<T> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Db("store reads need a tokio runtime".into()))?;
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = Arc::clone(&self.idle);
        let path = self.path.clone();
        let task = runtime.spawn_blocking(move || {
            let _permit = permit;
            let taken = idle.lock().ok().and_then(|mut v| v.pop());
            // A connection is missing only if a query panicked while holding it: replace it.
            let mut conn = match taken {
                Some(c) => c,
                None => crate::schema::open_reader(&path)?,
            };
            let result = query(&mut conn);
            if let Ok(mut v) = idle.lock() {
                v.push(conn);
            }
            result
        });
        match task.await {
            Ok(result) => result.map_err(StoreError::from),
            Err(e) => Err(StoreError::Db(format!("read task failed: {e}"))),
        }
    }
}

/// Runs `f` in a read transaction: one snapshot for all its statements.
fn snapshot<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Res<T>) -> Res<T> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    // Nothing to commit; ending the transaction releases the snapshot so checkpoints can
    // move past it.
    tx.finish()?;
    Ok(out)
}

pub(crate) fn user_by_name(conn: &mut Connection, username: &str) -> Res<Option<UserAuth>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, username, password_hash FROM users WHERE username_key = ?1")?;
    Ok(stmt
        .query_row([queries::username_key(username)], |r| {
            Ok(UserAuth {
                user: UserInfo {
                    id: UserId(unsql(r.get(0)?)),
                    username: r.get(1)?,
                },
                password_hash: r.get(2)?,
            })
        })
        .optional()?)
}

pub(crate) fn users_by_names(conn: &mut Connection, names: &[String]) -> Res<Vec<UserInfo>> {
    snapshot(conn, |conn| {
        let mut stmt =
            conn.prepare_cached("SELECT id, username FROM users WHERE username_key = ?1")?;
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            let user = stmt
                .query_row([queries::username_key(name)], |r| {
                    Ok(UserInfo {
                        id: UserId(unsql(r.get(0)?)),
                        username: r.get(1)?,
                    })
                })
                .optional()?
                .ok_or(Fail::Store(StoreError::NotFound("user")))?;
            users.push(user);
        }
        Ok(users)
    })
}

pub(crate) fn search_users(
    conn: &mut Connection,
    prefix: &str,
    limit: usize,
) -> Res<Vec<UserInfo>> {
    // Keys are lowercased, so LIKE's own (ASCII-only) case folding is not needed; the
    // wildcards in the user's prefix are escaped so `a_` means "a_", not "a and any".
    let pattern = format!("{}%", escape_like(&queries::username_key(prefix)));
    let mut stmt = conn.prepare_cached(
        "SELECT id, username FROM users WHERE username_key LIKE ?1 ESCAPE '\\'
         ORDER BY username_key LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![pattern, sql_limit(limit)], |r| {
        Ok(UserInfo {
            id: UserId(unsql(r.get(0)?)),
            username: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `s` with LIKE's wildcards (and the escape character itself) escaped by `\`.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn conversations(conn: &mut Connection, user: UserId) -> Res<Vec<ConversationInfo>> {
    snapshot(conn, |conn| {
        let mut stmt = conn.prepare_cached(
            // Message ids follow commit order: they break ties between conversations whose
            // last messages share a millisecond.
            "SELECT c.id, m.read_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ?1
             ORDER BY c.last_ts DESC,
                      (SELECT x.id FROM messages x
                       WHERE x.conversation_id = c.id AND x.seq = c.last_seq) DESC,
                      c.id DESC",
        )?;
        let list = stmt
            .query_map([sql(user.0)], |r| {
                Ok((ConversationId(unsql(r.get(0)?)), Seq(unsql(r.get(1)?))))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(list.len());
        for (id, read) in list {
            if let Some(row) = queries::conversation_row(conn, id)? {
                out.push(queries::conversation_info(
                    conn,
                    id,
                    &row,
                    row.last_seq,
                    Some((user, read)),
                )?);
            }
        }
        Ok(out)
    })
}

pub(crate) fn conversation(
    conn: &mut Connection,
    user: UserId,
    id: ConversationId,
) -> Res<ConversationInfo> {
    snapshot(conn, |conn| {
        let row = queries::conversation_row(conn, id)?
            .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
        let read =
            queries::read_marker(conn, user, id)?.ok_or(Fail::Store(StoreError::NotMember))?;
        queries::conversation_info(conn, id, &row, row.last_seq, Some((user, read)))
    })
}

/// The members of `id` with when each was last online, for `user` (a member).
pub(crate) fn member_presence(
    conn: &mut Connection,
    user: UserId,
    id: ConversationId,
) -> Res<Vec<(UserInfo, Option<Millis>)>> {
    snapshot(conn, |conn| {
        check_member(conn, user, id)?;
        Ok(queries::member_rows(conn, id)?
            .into_iter()
            .map(|m| (m.user, m.last_seen))
            .collect())
    })
}

/// `NotFound` if the conversation does not exist, `NotMember` if `user` is not in it.
fn check_member(conn: &Connection, user: UserId, id: ConversationId) -> Res<()> {
    if queries::read_marker(conn, user, id)?.is_some() {
        return Ok(());
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
        .exists([sql(id.0)])?;
    Err(Fail::Store(if exists {
        StoreError::NotMember
    } else {
        StoreError::NotFound("conversation")
    }))
}

pub(crate) fn messages_after(
    conn: &mut Connection,
    user: UserId,
    id: ConversationId,
    after: Seq,
    limit: usize,
) -> Res<Vec<MessageView>> {
    snapshot(conn, |conn| {
        check_member(conn, user, id)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender
             WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![sql(id.0), sql(after.0), sql_limit(limit)],
            queries::message_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

pub(crate) fn history(
    conn: &mut Connection,
    user: UserId,
    id: ConversationId,
    before: Option<Seq>,
    limit: usize,
) -> Res<(Vec<MessageView>, bool)> {
    snapshot(conn, |conn| {
        check_member(conn, user, id)?;
        let before = before.map_or(i64::MAX, |s| sql(s.0));
        // One more than asked tells whether older messages exist without a second query.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender
             WHERE m.conversation_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
        ))?;
        let mut page = stmt
            .query_map(
                params![sql(id.0), before, sql_limit(limit.saturating_add(1))],
                queries::message_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let more = page.len() > limit;
        page.truncate(limit);
        page.reverse();
        Ok((page, more))
    })
}

pub(crate) fn is_member(conn: &mut Connection, user: UserId, id: ConversationId) -> Res<bool> {
    Ok(queries::read_marker(conn, user, id)?.is_some())
}

pub(crate) fn last_seq(conn: &mut Connection, id: ConversationId) -> Res<Seq> {
    let mut stmt = conn.prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?;
    stmt.query_row([sql(id.0)], |r| Ok(Seq(unsql(r.get(0)?))))
        .optional()?
        .ok_or(Fail::Store(StoreError::NotFound("conversation")))
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"a%b_c\d"), r"a\%b\_c\\d");
    }
}

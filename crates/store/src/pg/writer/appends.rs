//! The writer's appends, the hot path: a batch's plain appends pass their checks and take
//! their seqs in memory and wait in the attempt, then go in with one multi-row `INSERT`
//! ([`flush`]) instead of one round trip each; file posts go in one by one
//! ([`Db::insert_append`]). Also the start of an attempt ([`start`]), which reads the
//! originals the duplicates are found among.

use std::collections::{HashMap, HashSet};

use chatgroup_protocol::{ConversationId, MessageId, MessageKind, MessageView, Seq, UserId};
use deadpool_postgres::{GenericClient, Transaction};

use super::{Answer, Attempt, Db};
use crate::error::{Fail, Res};
use crate::pg::rows::{self, kind_to_sql};
use crate::queries::{now_ms, sql, unsql};
use crate::writer::{Appended, Command, ConvState};
use crate::{AppendRequest, Committed, StoreError};

/// A plain append that passed its checks and holds its seq, waiting to be inserted with the
/// others (one statement for all of them instead of one round trip each). Its message id
/// is known only after the insert; `patch` says which events and answers carry it.
pub(super) struct Row {
    pub(super) message: MessageView,
    /// `(event index, answer index)` of the append and of its in-batch duplicates.
    pub(super) patch: Vec<(usize, Option<usize>)>,
}

impl Db {
    /// The hot path for a plain append: the same checks and seq as [`Db::insert_append`],
    /// but the row waits in `a.rows` for [`flush`]. Duplicates are found in memory: among
    /// the originals read when the attempt began, then among the waiting rows.
    pub(super) async fn buffer_append(
        &mut self,
        tx: &Transaction<'_>,
        req: &AppendRequest,
        a: &mut Attempt,
    ) -> Res<Buffered> {
        let key = (req.sender, req.local_id.clone());
        let earlier = |a: &Attempt| -> Option<Buffered> {
            if let Some(original) = a.originals.get(&key) {
                return Some(Buffered::done(Appended::Duplicate(Box::new(
                    original.clone(),
                ))));
            }
            a.waiting.get(&key).map(|&row| Buffered {
                outcome: Appended::Duplicate(Box::new(a.rows[row].message.clone())),
                row: Some(row),
            })
        };
        let refused = |a: &Attempt, error: StoreError| {
            earlier(a).unwrap_or(Buffered::done(Appended::Refused(error)))
        };
        if req.kind == MessageKind::System {
            return Ok(Buffered::done(Appended::Refused(StoreError::Invalid(
                "system messages are written by the server only".into(),
            ))));
        }
        let sender_name = match self.name(tx, a, req.sender).await {
            Ok(name) => name,
            Err(Fail::Store(_)) => return Ok(refused(a, StoreError::NotMember)),
            Err(e) => return Err(e),
        };
        let Some(state) = a.convs.get(&req.conversation) else {
            return Ok(refused(a, StoreError::NotFound("conversation")));
        };
        if !state.members.contains(&req.sender) {
            return Ok(refused(a, StoreError::NotMember));
        }
        if let Some(duplicate) = earlier(a) {
            return Ok(duplicate);
        }
        let Some(state) = a.convs.get_mut(&req.conversation) else {
            return Ok(refused(a, StoreError::NotFound("conversation")));
        };
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        state.last_seq = seq;
        state.last_ts = ts;
        state.dirty = true;
        let row = a.rows.len();
        a.rows.push(Row {
            message: MessageView {
                conversation: req.conversation,
                // Filled in by flush.
                id: MessageId(0),
                seq,
                ts,
                sender: Some(req.sender),
                sender_name: Some(sender_name.clone()),
                kind: req.kind,
                body: req.body.clone(),
                local_id: Some(req.local_id.clone()),
                event: None,
                file: None,
            },
            patch: Vec::new(),
        });
        a.waiting.insert(key, row);
        Ok(Buffered {
            outcome: Appended::New {
                id: MessageId(0),
                seq,
                ts,
                sender_name,
            },
            row: Some(row),
        })
    }

    pub(super) async fn insert_append(
        &mut self,
        tx: &Transaction<'_>,
        req: &AppendRequest,
        a: &mut Attempt,
    ) -> Res<Appended> {
        if req.kind == MessageKind::System {
            return Ok(Appended::Refused(StoreError::Invalid(
                "system messages are written by the server only".into(),
            )));
        }
        let sender_name = match self.name(tx, a, req.sender).await {
            Ok(name) => name,
            Err(Fail::Store(_)) => return refuse_append(tx, req, StoreError::NotMember).await,
            Err(e) => return Err(e),
        };
        let Some(state) = a.convs.get_mut(&req.conversation) else {
            return refuse_append(tx, req, StoreError::NotFound("conversation")).await;
        };
        if !state.members.contains(&req.sender) {
            return refuse_append(tx, req, StoreError::NotMember).await;
        }
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        // The unique index on (sender, local_id) turns a retry into no row; if another node
        // is inserting the same pair right now, this waits for its transaction and then sees
        // the original.
        let stmt = tx
            .prepare_cached(
                "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, local_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (sender, local_id) DO NOTHING RETURNING id",
            )
            .await?;
        let inserted = tx
            .query_opt(
                &stmt,
                &[
                    &sql(req.conversation.0),
                    &sql(seq.0),
                    &ts,
                    &sql(req.sender.0),
                    &kind_to_sql(req.kind),
                    &req.body,
                    &req.local_id,
                ],
            )
            .await?;
        let Some(row) = inserted else {
            return match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
                Some(original) => Ok(Appended::Duplicate(Box::new(original))),
                None => Err(StoreError::Db("a conflicting local id vanished".into()).into()),
            };
        };
        let id = MessageId(unsql(row.try_get(0)?));
        state.last_seq = seq;
        state.last_ts = ts;
        state.dirty = true;
        Ok(Appended::New {
            id,
            seq,
            ts,
            sender_name,
        })
    }
}

/// How a plain append went: its outcome and, if its message is waiting to be inserted, the
/// row whose id it needs.
pub(super) struct Buffered {
    pub(super) outcome: Appended,
    pub(super) row: Option<usize>,
}

impl Buffered {
    fn done(outcome: Appended) -> Self {
        Buffered { outcome, row: None }
    }
}

/// Inserts the waiting appends in one statement and fills their ids into the events and
/// answers that carry them.
///
/// A row that does not go in was inserted meanwhile by another node under the same
/// `(sender, local_id)`, after this attempt read the originals (the insert waited for that
/// node's commit): its seq would be a gap, so the attempt ends as a conflict and the batch
/// runs again, this time finding the original.
pub(super) async fn flush(tx: &Transaction<'_>, a: &mut Attempt) -> Res<()> {
    if a.rows.is_empty() {
        return Ok(());
    }
    let n = a.rows.len();
    let (mut conversations, mut seqs, mut tss, mut senders) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut kinds, mut bodies, mut local_ids) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in &a.rows {
        let m = &row.message;
        conversations.push(sql(m.conversation.0));
        seqs.push(sql(m.seq.0));
        tss.push(m.ts);
        senders.push(m.sender.map_or(0, |s| sql(s.0)));
        kinds.push(kind_to_sql(m.kind));
        bodies.push(m.body.as_str());
        local_ids.push(m.local_id.as_deref().unwrap_or_default());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, local_id)
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[],
                                  $5::SMALLINT[], $6::TEXT[], $7::TEXT[])
             ON CONFLICT (sender, local_id) DO NOTHING
             RETURNING id, sender, local_id",
        )
        .await?;
    let inserted = tx
        .query(
            &stmt,
            &[
                &conversations,
                &seqs,
                &tss,
                &senders,
                &kinds,
                &bodies,
                &local_ids,
            ],
        )
        .await?;
    if inserted.len() != n {
        return Err(Fail::Conflict);
    }
    let mut ids = HashMap::with_capacity(n);
    for row in inserted {
        let sender = UserId(unsql(row.try_get(1)?));
        let local_id: String = row.try_get(2)?;
        ids.insert((sender, local_id), MessageId(unsql(row.try_get(0)?)));
    }
    for row in a.rows.drain(..) {
        let key = (
            row.message.sender.unwrap_or(UserId(0)),
            row.message.local_id.clone().unwrap_or_default(),
        );
        let id = *ids.get(&key).ok_or(Fail::Conflict)?;
        for (event, answer) in row.patch {
            if let Some(Committed::Message { message, .. } | Committed::Duplicate { message, .. }) =
                a.events.get_mut(event)
            {
                message.id = id;
            }
            if let Some(Answer::Message(Some(Ok((message, _))))) =
                answer.and_then(|i| a.answers.get_mut(i))
            {
                message.id = id;
            }
        }
        let mut message = row.message;
        message.id = id;
        a.originals.insert(key.clone(), message);
        a.waiting.remove(&key);
    }
    Ok(())
}

/// Starts an attempt: locks the conversations `ids` (already in id order), reads their
/// state and members, and reads the messages already stored under the local ids of the
/// batch's plain appends. The three statements are prepared first (once per connection),
/// then sent together and answered in order, in one round trip: the members are read after
/// the locks are held, since a connection runs its statements one after the other.
pub(super) async fn start(
    tx: &Transaction<'_>,
    ids: &[i64],
    cmds: &[Command],
    a: &mut Attempt,
) -> Res<()> {
    let (mut senders, mut local_ids) = (Vec::new(), Vec::new());
    for cmd in cmds {
        if let Command::Append { req, .. } = cmd {
            senders.push(sql(req.sender.0));
            local_ids.push(req.local_id.as_str());
        }
    }
    let lock = tx
        .prepare_cached(
            "SELECT id, kind, owner, last_seq, last_ts FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await?;
    let members = tx
        .prepare_cached(
            "SELECT conversation_id, user_id FROM members WHERE conversation_id = ANY($1)",
        )
        .await?;
    let originals = tx
        .prepare_cached(&format!(
            "{} WHERE (m.sender, m.local_id) IN
                 (SELECT * FROM unnest($1::BIGINT[], $2::TEXT[]))",
            rows::MESSAGES
        ))
        .await?;
    let none = || async { Ok(Vec::new()) };
    let (locked, members, originals) = tokio::try_join!(
        async {
            if ids.is_empty() {
                none().await
            } else {
                tx.query(&lock, &[&ids]).await
            }
        },
        async {
            if ids.is_empty() {
                none().await
            } else {
                tx.query(&members, &[&ids]).await
            }
        },
        async {
            if senders.is_empty() {
                none().await
            } else {
                tx.query(&originals, &[&senders, &local_ids]).await
            }
        },
    )?;
    for row in locked {
        let kind: &str = row.try_get(1)?;
        a.convs.insert(
            ConversationId(unsql(row.try_get(0)?)),
            ConvState {
                kind: rows::kind_of(kind),
                owner: row.try_get::<_, Option<i64>>(2)?.map(|o| UserId(unsql(o))),
                last_seq: Seq(unsql(row.try_get(3)?)),
                last_ts: row.try_get(4)?,
                members: HashSet::new(),
                dirty: false,
            },
        );
    }
    for row in members {
        let id = ConversationId(unsql(row.try_get(0)?));
        if let Some(state) = a.convs.get_mut(&id) {
            state.members.insert(UserId(unsql(row.try_get(1)?)));
        }
    }
    for row in originals {
        let message = rows::message_from_row(&row)?;
        if let (Some(sender), Some(local_id)) = (message.sender, message.local_id.clone()) {
            a.originals.insert((sender, local_id), message);
        }
    }
    Ok(())
}

/// A refused append is still a duplicate if its local id was stored before.
pub(super) async fn refuse_append(
    tx: &Transaction<'_>,
    req: &AppendRequest,
    error: StoreError,
) -> Res<Appended> {
    Ok(
        match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
            Some(original) => Appended::Duplicate(Box::new(original)),
            None => Appended::Refused(error),
        },
    )
}

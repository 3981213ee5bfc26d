//! The writer's conversation operations: groups and direct chats, members joining and
//! leaving, renames, and the system messages they write. Each checks before it writes and
//! changes the attempt's state of a conversation only once all its statements succeeded.

use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, MessageId, MessageKind, MessageView,
    Millis, Seq, SystemEvent, UserId,
};
use deadpool_postgres::{GenericClient, Transaction};

use super::{Attempt, Db};
use crate::error::{Fail, Res};
use crate::pg::rows::{self, kind_to_sql};
use crate::queries::{now_ms, sql, unsql};
use crate::writer::{check_group, check_member, group_name, ConvState};
use crate::{Committed, StoreError};

impl Db {
    pub(super) async fn create_group(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        owner: UserId,
        name: &str,
        members: &[UserId],
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let name = group_name(name)?;
        let mut users = vec![owner];
        for &m in members {
            if !users.contains(&m) {
                users.push(m);
            }
        }
        for &u in &users {
            self.name(tx, a, u).await?;
        }
        let now = now_ms();
        let id: i64 = tx
            .query_one(
                "INSERT INTO conversations (kind, name, owner, created_at)
                 VALUES ('group', $1, $2, $3) RETURNING id",
                &[&name, &sql(owner.0), &now],
            )
            .await?
            .try_get(0)?;
        let id = ConversationId(unsql(id));
        insert_members(tx, id, &users, Seq::ZERO, now).await?;
        let mut state = ConvState {
            kind: ConversationKind::Group,
            owner: Some(owner),
            last_seq: Seq::ZERO,
            last_ts: 0,
            members: users.iter().copied().collect(),
            dirty: false,
        };
        let conversation = neutral_info(tx, id, &state).await?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!(
            "{} created the group \"{name}\"",
            self.name(tx, a, owner).await?
        );
        let event = SystemEvent::Created {
            by: owner,
            name: Some(name.to_owned()),
        };
        self.system_message(tx, a, id, &mut state, owner, event, body, events)
            .await?;
        let info = viewer_info(tx, id, &state, owner).await?;
        a.put(id, state, true);
        Ok(info)
    }

    pub(super) async fn create_direct(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        x: UserId,
        y: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<(ConversationInfo, bool)> {
        if x == y {
            return Err(
                StoreError::Invalid("a direct chat needs two different users".into()).into(),
            );
        }
        let x_name = self.name(tx, a, x).await?;
        let y_name = self.name(tx, a, y).await?;
        let (lo, hi) = if x < y { (x, y) } else { (y, x) };
        let now = now_ms();
        // Created by another node meanwhile: this waits for it and then inserts nothing.
        let created = tx
            .query_opt(
                "INSERT INTO conversations (kind, name, direct_lo, direct_hi, created_at)
                 VALUES ('direct', '', $1, $2, $3)
                 ON CONFLICT (direct_lo, direct_hi) WHERE direct_lo IS NOT NULL DO NOTHING
                 RETURNING id",
                &[&sql(lo.0), &sql(hi.0), &now],
            )
            .await?;
        let Some(row) = created else {
            let id: i64 = tx
                .query_one(
                    "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2",
                    &[&sql(lo.0), &sql(hi.0)],
                )
                .await?
                .try_get(0)?;
            let id = ConversationId(unsql(id));
            let row = rows::conversation_row(tx, id)
                .await?
                .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
            let last_seq = a.convs.get(&id).map_or(row.last_seq, |s| s.last_seq);
            let read = rows::read_marker(tx, x, id).await?.unwrap_or(last_seq);
            let info = rows::conversation_info(tx, id, &row, last_seq, Some((x, read))).await?;
            return Ok((info, false));
        };
        let id = ConversationId(unsql(row.try_get(0)?));
        let users = vec![x, y];
        insert_members(tx, id, &users, Seq::ZERO, now).await?;
        let mut state = ConvState {
            kind: ConversationKind::Direct,
            owner: None,
            last_seq: Seq::ZERO,
            last_ts: 0,
            members: users.iter().copied().collect(),
            dirty: false,
        };
        let conversation = neutral_info(tx, id, &state).await?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!("{x_name} started a chat with {y_name}");
        let event = SystemEvent::Created { by: x, name: None };
        self.system_message(tx, a, id, &mut state, x, event, body, events)
            .await?;
        let info = viewer_info(tx, id, &state, x).await?;
        a.put(id, state, true);
        Ok((info, true))
    }

    pub(super) async fn add_member(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        if state.owner != Some(by) {
            return Err(StoreError::NotOwner.into());
        }
        let user_name = self.name(tx, a, user).await?;
        if state.members.contains(&user) {
            return viewer_info(tx, conversation, &state, by).await;
        }
        insert_members(tx, conversation, &[user], state.last_seq, now_ms()).await?;
        state.members.insert(user);
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::MembersAdded {
            conversation: info,
            users: vec![user],
        });
        let body = format!("{} added {user_name}", self.name(tx, a, by).await?);
        let event = SystemEvent::Joined { user, by };
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        let info = viewer_info(tx, conversation, &state, by).await?;
        a.put(conversation, state, true);
        Ok(info)
    }

    pub(super) async fn remove_member(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<()> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        let (event, body) = if by == user {
            let name = self.name(tx, a, user).await?;
            (SystemEvent::Left { user }, format!("{name} left"))
        } else {
            if state.owner != Some(by) {
                return Err(StoreError::NotOwner.into());
            }
            if !state.members.contains(&user) {
                return Err(StoreError::NotFound("member").into());
            }
            let by_name = self.name(tx, a, by).await?;
            let name = self.name(tx, a, user).await?;
            (
                SystemEvent::Removed { user, by },
                format!("{by_name} removed {name}"),
            )
        };
        // The system message goes out while `user` is still a member, so they get it too.
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        tx.execute(
            "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2",
            &[&sql(conversation.0), &sql(user.0)],
        )
        .await?;
        state.members.remove(&user);
        events.push(Committed::MemberRemoved { conversation, user });
        if state.owner == Some(user) {
            let heir: Option<i64> = tx
                .query_opt(
                    "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY id LIMIT 1",
                    &[&sql(conversation.0)],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            state.owner = heir.map(|h| UserId(unsql(h)));
            tx.execute(
                "UPDATE conversations SET owner = $2 WHERE id = $1",
                &[&sql(conversation.0), &heir],
            )
            .await?;
        }
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::ConversationChanged { conversation: info });
        a.put(conversation, state, true);
        Ok(())
    }

    pub(super) async fn rename(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        name: &str,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        let name = group_name(name)?;
        let by_name = self.name(tx, a, by).await?;
        tx.execute(
            "UPDATE conversations SET name = $2 WHERE id = $1",
            &[&sql(conversation.0), &name],
        )
        .await?;
        let body = format!("{by_name} renamed the group to \"{name}\"");
        let event = SystemEvent::Renamed {
            name: name.to_owned(),
            by,
        };
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::ConversationChanged { conversation: info });
        let info = viewer_info(tx, conversation, &state, by).await?;
        a.put(conversation, state, true);
        Ok(info)
    }

    /// Stores a system message as the next seq of `state` and queues its event.
    #[allow(clippy::too_many_arguments)]
    async fn system_message(
        &mut self,
        tx: &Transaction<'_>,
        a: &Attempt,
        id: ConversationId,
        state: &mut ConvState,
        by: UserId,
        event: SystemEvent,
        body: String,
        events: &mut Vec<Committed>,
    ) -> Res<()> {
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        let json = serde_json::to_string(&event).map_err(|e| StoreError::Db(e.to_string()))?;
        let message_id: i64 = tx
            .query_one(
                "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, event)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &sql(id.0),
                    &sql(seq.0),
                    &ts,
                    &sql(by.0),
                    &kind_to_sql(MessageKind::System),
                    &body,
                    &json,
                ],
            )
            .await?
            .try_get(0)?;
        let message = MessageView {
            conversation: id,
            id: MessageId(unsql(message_id)),
            seq,
            ts,
            sender: Some(by),
            sender_name: Some(self.name(tx, a, by).await?),
            kind: MessageKind::System,
            body,
            local_id: None,
            event: Some(event),
            file: None,
        };
        state.last_seq = seq;
        state.last_ts = ts;
        events.push(Committed::Message {
            message,
            origin: None,
        });
        Ok(())
    }
}

/// Inserts member rows (read marker and joined seq at `seq`).
async fn insert_members(
    tx: &Transaction<'_>,
    id: ConversationId,
    users: &[UserId],
    seq: Seq,
    now: Millis,
) -> Res<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO members (conversation_id, user_id, joined_at, joined_seq, read_seq)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .await?;
    for u in users {
        tx.execute(&stmt, &[&sql(id.0), &sql(u.0), &now, &sql(seq.0)])
            .await?;
    }
    Ok(())
}

/// The conversation as events carry it (no viewer).
async fn neutral_info(
    tx: &Transaction<'_>,
    id: ConversationId,
    state: &ConvState,
) -> Res<ConversationInfo> {
    let row = rows::conversation_row(tx, id)
        .await?
        .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
    rows::conversation_info(tx, id, &row, state.last_seq, None).await
}

/// The conversation as `viewer` sees it, for an operation's answer.
async fn viewer_info(
    tx: &Transaction<'_>,
    id: ConversationId,
    state: &ConvState,
    viewer: UserId,
) -> Res<ConversationInfo> {
    let row = rows::conversation_row(tx, id)
        .await?
        .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
    let read = rows::read_marker(tx, viewer, id)
        .await?
        .unwrap_or(state.last_seq);
    rows::conversation_info(tx, id, &row, state.last_seq, Some((viewer, read))).await
}

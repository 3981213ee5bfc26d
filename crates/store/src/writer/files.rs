//! The writer's side of file transfer (see [`crate::files`]): starting uploads under the
//! quotas, posting finished ones as messages, deleting abandoned ones. A child of the writer
//! module so it can reuse the append path (`insert_append`) and the cache as they are.

use chatgroup_protocol::{MessageView, Millis};
use rusqlite::params;

use super::{pending, Appended, Batch, Writer};
use crate::error::{Fail, Res};
use crate::files::{
    file_by_upload_id, file_row, same_upload, usage, FileOp, NewUpload, StoredFile, UploadStart,
};
use crate::queries::{self, now_ms, sql, unsql};
use crate::{AppendRequest, Committed, StoreError};

impl FileOp {
    /// Answers an operation that could not be attempted (its batch was already failing).
    pub(super) fn refuse(self, err: &StoreError, batch: &mut Batch) {
        match self {
            FileOp::Start { reply, .. } => batch.replies.push(pending(reply, Err(err.clone()))),
            FileOp::Post { req, reply, .. } => {
                batch.replies.push(pending(reply, Err(err.clone())));
                batch.events.push(Committed::Rejected {
                    origin: req.origin,
                    conversation: req.conversation,
                    local_id: req.local_id,
                    error: err.clone(),
                });
            }
            FileOp::Delete { reply, .. } => batch.replies.push(pending(reply, Err(err.clone()))),
        }
    }
}

impl Writer {
    pub(super) fn file_op(&mut self, op: FileOp, batch: &mut Batch) {
        match op {
            FileOp::Start { req, reply } => {
                let r = self.start_upload(&req, now_ms()).map_err(StoreError::from);
                batch.replies.push(pending(reply, r));
            }
            FileOp::Post {
                req,
                file,
                sha256,
                reply,
            } => self.post_file(req, file, sha256, reply, batch),
            FileOp::Delete { id, reply } => {
                let r = super::exec_params(
                    &self.conn,
                    "DELETE FROM files WHERE id = ?1 AND completed_at IS NULL",
                    [sql(id)],
                )
                .map(|n| n > 0)
                .map_err(|e| StoreError::from(Fail::Sql(e)));
                batch.replies.push(pending(reply, r));
            }
        }
    }

    fn start_upload(&mut self, req: &NewUpload, now: Millis) -> Res<UploadStart> {
        let state = self.cache.existing(&self.conn, req.conversation)?;
        if !state.members.contains(&req.uploader) {
            return Err(StoreError::NotMember.into());
        }
        if let Some(existing) = file_by_upload_id(&self.conn, req.uploader, &req.upload_id)? {
            return Ok(if same_upload(&existing, req) {
                UploadStart::Existing(existing)
            } else {
                UploadStart::Conflict(existing)
            });
        }
        let (in_flight, used) = usage(&self.conn, req.uploader, now)?;
        if in_flight >= u64::from(req.limits.max_in_flight) {
            return Ok(UploadStart::TooManyInFlight {
                limit: req.limits.max_in_flight,
            });
        }
        if used.saturating_add(req.size) > req.limits.bytes_per_day {
            return Ok(UploadStart::DailyQuota {
                used,
                limit: req.limits.bytes_per_day,
            });
        }
        // One statement, so no savepoint.
        self.conn
            .prepare_cached(
                "INSERT INTO files (uploader, conversation_id, upload_id, name, mime, size, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                sql(req.uploader.0),
                sql(req.conversation.0),
                req.upload_id,
                req.name,
                req.mime,
                sql(req.size),
                req.sha256,
                now
            ])?;
        Ok(UploadStart::New(StoredFile {
            id: unsql(self.conn.last_insert_rowid()),
            uploader: req.uploader,
            conversation: req.conversation,
            upload_id: req.upload_id.clone(),
            name: req.name.clone(),
            mime: req.mime.clone(),
            size: req.size,
            sha256: req.sha256.clone(),
            created_at: now,
            completed: false,
        }))
    }

    /// The append path with a file attached: the message goes in through `insert_append`
    /// (membership, seq, idempotence on `(sender, local_id)`), then two single-row updates
    /// tie it to the file. Those updates run after the seq was taken; should one fail, the
    /// whole batch fails (which also drops the cache), so no seq is ever lost or reused.
    fn post_file(
        &mut self,
        req: AppendRequest,
        file: u64,
        sha256: String,
        reply: super::Reply<(MessageView, bool)>,
        batch: &mut Batch,
    ) {
        let poison = |batch: &mut Batch, error: StoreError| {
            // A failed statement after the seq was taken: the batch must not commit.
            batch.poison = Some(error.clone());
            (Appended::Refused(error), None)
        };
        let (outcome, info) = match self.insert_file_message(&req, file, &sha256) {
            Ok((Appended::New { .. }, None)) => {
                poison(batch, StoreError::Db("the file row vanished".into()))
            }
            Ok(appended) => appended,
            Err(e @ (Fail::Sql(_) | Fail::Pg(_) | Fail::Conflict | Fail::Lost(_))) => {
                poison(batch, StoreError::from(e))
            }
            Err(Fail::Store(error)) => (Appended::Refused(error), None),
        };
        let (event, result) = super::appended_event(req, outcome, info, true);
        batch.events.push(event);
        if let Some(result) = result {
            batch.replies.push(pending(reply, result));
        }
    }

    fn insert_file_message(
        &mut self,
        req: &AppendRequest,
        file: u64,
        sha256: &str,
    ) -> Res<(Appended, Option<chatgroup_protocol::FileInfo>)> {
        let row = file_row(&self.conn, file)?
            .filter(|f| f.uploader == req.sender && f.upload_id == req.local_id)
            .ok_or(Fail::Store(StoreError::NotFound("file")))?;
        if row.completed {
            // Posted before: the retry gets the original message, as any retried send does.
            return Ok(
                match queries::message_by_local_id(&self.conn, req.sender, &req.local_id)? {
                    Some(original) => (Appended::Duplicate(Box::new(original)), None),
                    None => (Appended::Refused(StoreError::NotFound("file")), None),
                },
            );
        }
        let appended = self.insert_append(req)?;
        let Appended::New { id, .. } = &appended else {
            return Ok((appended, None));
        };
        let now = now_ms();
        super::exec_params(
            &self.conn,
            "UPDATE messages SET file_id = ?2 WHERE id = ?1",
            params![sql(id.0), sql(file)],
        )?;
        super::exec_params(
            &self.conn,
            "UPDATE files SET completed_at = ?2, sha256 = ?3 WHERE id = ?1",
            params![sql(file), now, sha256],
        )?;
        let info = StoredFile {
            sha256: Some(sha256.to_owned()),
            completed: true,
            ..row
        }
        .info();
        Ok((appended, Some(info)))
    }
}

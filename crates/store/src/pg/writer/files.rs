//! The writer's side of file transfer, as SQLite's (`crate::writer::files`): uploads under
//! the quotas, finished uploads posted as file messages through the append path, abandoned
//! uploads deleted.

use deadpool_postgres::{GenericClient, Transaction};

use super::{answer, Answer, Attempt, Db};
use crate::error::{Fail, Res};
use crate::files::{same_upload, FileOp, NewUpload, StoredFile, UploadStart};
use crate::pg::rows;
use crate::queries::{now_ms, sql, unsql};
use crate::writer::{appended_event, Appended};
use crate::{AppendRequest, StoreError};

impl Db {
    pub(super) async fn file_op(
        &mut self,
        tx: &Transaction<'_>,
        op: &FileOp,
        a: &mut Attempt,
    ) -> Res<Answer> {
        Ok(match op {
            FileOp::Start { req, .. } => Answer::Upload(answer(start_upload(tx, a, req).await)?),
            FileOp::Post {
                req, file, sha256, ..
            } => {
                let (outcome, info) =
                    match self.insert_file_message(tx, a, req, *file, sha256).await {
                        Ok(done) => done,
                        Err(Fail::Store(error)) => (Appended::Refused(error), None),
                        Err(e) => return Err(e),
                    };
                let (event, result) = appended_event(req.clone(), outcome, info, true);
                a.events.push(event);
                Answer::Message(result)
            }
            FileOp::Delete { id, .. } => {
                let n = tx
                    .execute(
                        "DELETE FROM files WHERE id = $1 AND completed_at IS NULL",
                        &[&sql(*id)],
                    )
                    .await?;
                Answer::Deleted(Ok(n > 0))
            }
        })
    }

    /// The append path with a file attached, as SQLite's: the message goes in through
    /// `insert_append`, then two single-row updates tie it to the file; a failure of either
    /// fails the attempt, so no seq is ever lost or reused.
    async fn insert_file_message(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        req: &AppendRequest,
        file: u64,
        sha256: &str,
    ) -> Res<(Appended, Option<chatgroup_protocol::FileInfo>)> {
        let row = rows::file_row(tx, file)
            .await?
            .filter(|f| f.uploader == req.sender && f.upload_id == req.local_id)
            .ok_or(Fail::Store(StoreError::NotFound("file")))?;
        if row.completed {
            // Posted before: the retry gets the original message, as any retried send does.
            return Ok(
                match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
                    Some(original) => (Appended::Duplicate(Box::new(original)), None),
                    None => (Appended::Refused(StoreError::NotFound("file")), None),
                },
            );
        }
        let appended = self.insert_append(tx, req, a).await?;
        let Appended::New { id, .. } = &appended else {
            return Ok((appended, None));
        };
        // A plain append of the same local id later in this batch finds it here: the
        // originals were read before this row existed.
        if let Some(message) = rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
            a.originals
                .insert((req.sender, req.local_id.clone()), message);
        }
        tx.execute(
            "UPDATE messages SET file_id = $2 WHERE id = $1",
            &[&sql(id.0), &sql(file)],
        )
        .await?;
        tx.execute(
            "UPDATE files SET completed_at = $2, sha256 = $3 WHERE id = $1",
            &[&sql(file), &now_ms(), &sha256],
        )
        .await?;
        let info = StoredFile {
            sha256: Some(sha256.to_owned()),
            completed: true,
            ..row
        }
        .info();
        Ok((appended, Some(info)))
    }
}

/// Starts (or finds) an upload under the quotas, as SQLite's writer does.
async fn start_upload(tx: &Transaction<'_>, a: &Attempt, req: &NewUpload) -> Res<UploadStart> {
    let state = a.conv(req.conversation)?;
    if !state.members.contains(&req.uploader) {
        return Err(StoreError::NotMember.into());
    }
    if let Some(existing) = rows::file_by_upload_id(tx, req.uploader, &req.upload_id).await? {
        return Ok(if same_upload(&existing, req) {
            UploadStart::Existing(existing)
        } else {
            UploadStart::Conflict(existing)
        });
    }
    let now = now_ms();
    let (in_flight, used) = rows::usage(tx, req.uploader, now).await?;
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
    let id: i64 = tx
        .query_one(
            "INSERT INTO files (uploader, conversation_id, upload_id, name, mime, size, sha256, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &sql(req.uploader.0),
                &sql(req.conversation.0),
                &req.upload_id,
                &req.name,
                &req.mime,
                &sql(req.size),
                &req.sha256,
                &now,
            ],
        )
        .await?
        .try_get(0)?;
    Ok(UploadStart::New(StoredFile {
        id: unsql(id),
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

//! Files shared in conversations: upload records, the quotas checked when an upload starts,
//! and the post that turns a finished upload into a file message.
//!
//! The store keeps only metadata; the bytes are the server's business (it writes them under
//! the data directory and tells the store when they are complete). With PostgreSQL that is
//! each node's own data directory for now: a file is served by the node that took the
//! upload, until the files move to storage every node shares (issue 12's next slice). An upload is a `files`
//! row without `completed_at`; posting it sets `completed_at` and stores a message of kind
//! [`MessageKind::File`] whose `file_id` points at the row, in one transaction, so a file
//! message always names a complete file and a complete file always has its message.

use chatgroup_protocol::{ConversationId, FileInfo, MessageKind, MessageView, Millis, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Res;
use crate::queries::{sql, unsql};
use crate::store::Reads;
use crate::writer::Command;
use crate::{AppendRequest, Origin, Store, StoreError};

/// Reads the file column at `idx` of a message row: `[id, name, size, mime, sha256]` as a
/// JSON array, `NULL` for messages without a file.
pub(crate) fn file_from_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<FileInfo>> {
    let Some(json) = row.get::<_, Option<String>>(idx)? else {
        return Ok(None);
    };
    let (id, name, size, mime, sha256): (u64, String, u64, String, Option<String>) =
        serde_json::from_str(&json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(Some(FileInfo {
        id,
        name,
        size,
        mime,
        sha256: sha256.unwrap_or_default(),
    }))
}

/// Per-user limits checked when an upload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Uploads a user may have unfinished at once.
    pub max_in_flight: u32,
    /// Bytes a user may announce over the last 24 hours (finished and unfinished uploads
    /// that still exist; a deleted upload gives its bytes back).
    pub bytes_per_day: u64,
}

/// An upload to start (or resume, when `(uploader, upload_id)` exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    /// Who uploads; must be a member of `conversation`.
    pub uploader: UserId,
    /// Where the file will be posted.
    pub conversation: ConversationId,
    /// The client's id for the upload.
    pub upload_id: String,
    /// The file's name.
    pub name: String,
    /// Its media type.
    pub mime: String,
    /// Its exact size in bytes.
    pub size: u64,
    /// Its announced SHA-256, lowercase hex, if the client gave one.
    pub sha256: Option<String>,
    /// The quotas to check for a new upload.
    pub limits: UploadLimits,
}

/// A `files` row: an upload in progress or a complete file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The file's id (the wire's `fileId`).
    pub id: u64,
    /// Who uploaded it.
    pub uploader: UserId,
    /// The conversation it is (or will be) posted in.
    pub conversation: ConversationId,
    /// The client's id for the upload.
    pub upload_id: String,
    /// The file's name.
    pub name: String,
    /// Its media type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// While uploading, the announced SHA-256 (if any); once complete, the computed one.
    pub sha256: Option<String>,
    /// When the upload started.
    pub created_at: Millis,
    /// Whether its message was posted.
    pub completed: bool,
}

impl StoredFile {
    /// The file as a message carries it.
    #[must_use]
    pub fn info(&self) -> FileInfo {
        FileInfo {
            id: self.id,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            sha256: self.sha256.clone().unwrap_or_default(),
        }
    }
}

/// How [`Store::start_upload`] turned out. The refusals are outcomes rather than errors: each
/// has its own wire code and needs its numbers in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadStart {
    /// A new upload.
    New(StoredFile),
    /// The same `upload_id` with the same conversation, size and hash: resume it (or, when
    /// `completed`, it was posted already).
    Existing(StoredFile),
    /// The `upload_id` was used for a different file.
    Conflict(StoredFile),
    /// The user has `limit` uploads unfinished already.
    TooManyInFlight {
        /// The configured limit.
        limit: u32,
    },
    /// The upload would take the user's last-24-hours total past `limit`.
    DailyQuota {
        /// Bytes already announced in the last 24 hours.
        used: u64,
        /// The configured limit.
        limit: u64,
    },
}

/// File operations as queued for the writer.
#[derive(Debug)]
pub(crate) enum FileOp {
    Start {
        req: NewUpload,
        reply: crate::writer::Reply<UploadStart>,
    },
    Post {
        req: AppendRequest,
        file: u64,
        sha256: String,
        reply: crate::writer::Reply<(MessageView, bool)>,
    },
    Delete {
        id: u64,
        reply: crate::writer::Reply<bool>,
    },
}

/// The columns [`stored_file`] reads, from `files`.
const FILE_ROW: &str = "id, uploader, conversation_id, upload_id, name, mime, size, sha256, \
                        created_at, completed_at IS NOT NULL";

fn stored_file(r: &Row<'_>) -> rusqlite::Result<StoredFile> {
    Ok(StoredFile {
        id: unsql(r.get(0)?),
        uploader: UserId(unsql(r.get(1)?)),
        conversation: ConversationId(unsql(r.get(2)?)),
        upload_id: r.get(3)?,
        name: r.get(4)?,
        mime: r.get(5)?,
        size: unsql(r.get(6)?),
        sha256: r.get(7)?,
        created_at: r.get(8)?,
        completed: r.get(9)?,
    })
}

/// The `files` row `id`.
pub(crate) fn file_row(conn: &Connection, id: u64) -> Res<Option<StoredFile>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {FILE_ROW} FROM files WHERE id = ?1"))?;
    Ok(stmt.query_row([sql(id)], stored_file).optional()?)
}

/// `uploader`'s upload `upload_id`.
pub(crate) fn file_by_upload_id(
    conn: &Connection,
    uploader: UserId,
    upload_id: &str,
) -> Res<Option<StoredFile>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FILE_ROW} FROM files WHERE uploader = ?1 AND upload_id = ?2"
    ))?;
    Ok(stmt
        .query_row(params![sql(uploader.0), upload_id], stored_file)
        .optional()?)
}

/// A day in milliseconds: the window of the daily byte quota.
pub(crate) const DAY_MS: Millis = 24 * 3600 * 1000;

/// Unfinished uploads and bytes announced in the last day, for `uploader`.
pub(crate) fn usage(conn: &Connection, uploader: UserId, now: Millis) -> Res<(u64, u64)> {
    let in_flight: i64 = conn
        .prepare_cached("SELECT count(*) FROM files WHERE uploader = ?1 AND completed_at IS NULL")?
        .query_row([sql(uploader.0)], |r| r.get(0))?;
    let bytes: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(size), 0) FROM files WHERE uploader = ?1 AND created_at > ?2",
        )?
        .query_row(params![sql(uploader.0), now - DAY_MS], |r| r.get(0))?;
    Ok((unsql(in_flight), unsql(bytes)))
}

impl Store {
    /// Starts an upload, or finds the one `req.uploader` started with the same `upload_id`.
    /// A new upload must fit the limits; resuming one is always allowed. The uploader must be
    /// a member of the conversation (checked again when the file is posted).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] (conversation), [`StoreError::NotMember`].
    pub async fn start_upload(&self, req: NewUpload) -> Result<UploadStart, StoreError> {
        self.call(|reply| Command::Files(FileOp::Start { req, reply }))
            .await
    }

    /// Posts a finished upload: marks file `file` complete with its computed `sha256` and
    /// stores a [`MessageKind::File`] message (body = the file's name, `local_id` = the
    /// upload id) in the same transaction. The sink gets [`crate::Committed::Message`] with
    /// `origin`, like any append; posting an upload that was posted before gets
    /// [`crate::Committed::Duplicate`] with the original, and stores nothing. Resolves after
    /// the commit with the message and whether it was a duplicate.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if `file` is not an upload of `sender`,
    /// [`StoreError::NotMember`] if the sender left the conversation meanwhile.
    pub async fn post_file(
        &self,
        sender: UserId,
        file: &StoredFile,
        sha256: String,
        origin: Origin,
    ) -> Result<(MessageView, bool), StoreError> {
        let req = AppendRequest {
            sender,
            conversation: file.conversation,
            local_id: file.upload_id.clone(),
            body: file.name.clone(),
            kind: MessageKind::File,
            origin,
        };
        let file = file.id;
        self.call(|reply| {
            Command::Files(FileOp::Post {
                req,
                file,
                sha256,
                reply,
            })
        })
        .await
    }

    /// Deletes upload `id` if it is still unfinished; `false` if it was posted meanwhile (or
    /// does not exist), in which case its bytes must stay.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Closed`] and [`StoreError::Db`].
    pub async fn delete_upload(&self, id: u64) -> Result<bool, StoreError> {
        self.call(|reply| Command::Files(FileOp::Delete { id, reply }))
            .await
    }

    /// The file or upload `id`.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn file(&self, id: u64) -> Result<Option<StoredFile>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| file_row(c, id)).await,
            Reads::Postgres(p) => p.file(id).await,
        }
    }

    /// Up to `limit` unfinished uploads started before `before`, oldest first: the candidates
    /// for the idle-upload sweep.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn unfinished_uploads(
        &self,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<StoredFile>, StoreError> {
        let r = match self.reads() {
            Reads::Sqlite(r) => r,
            Reads::Postgres(p) => return p.unfinished_uploads(before, limit).await,
        };
        r.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FILE_ROW} FROM files
                     WHERE completed_at IS NULL AND created_at < ?1 ORDER BY created_at LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(
                    params![before, crate::queries::sql_limit(limit)],
                    stored_file,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

/// Checks `req` against an existing upload with the same id: the same conversation, size
/// and (where both have one) hash make it the same file.
pub(crate) fn same_upload(existing: &StoredFile, req: &NewUpload) -> bool {
    existing.conversation == req.conversation
        && existing.size == req.size
        && (req.sha256.is_none() || existing.sha256.is_none() || existing.sha256 == req.sha256)
}

//! chatgroup's persistence: users, refresh tokens, conversations and messages, behind one
//! [`Store`] handle, on SQLite (one node, the default) or PostgreSQL (several nodes sharing
//! one database). Only [`StoreConfig::backend`] says which; the API and its guarantees are
//! the same.
//!
//! # Overview
//!
//! - **Writes** go through a bounded queue to one writer thread that owns the only read-write
//!   connection. It commits everything queued in one transaction (group commit), and only
//!   after the commit hands the batch's [`Committed`] events to the sink and answers the
//!   callers: nothing is acknowledged or delivered that a crash could lose.
//! - **Order**: each conversation's messages get `seq` 1, 2, 3, … with no gap, in commit
//!   order, and the sink sees them in that order.
//! - **Idempotence**: an append whose `(sender, local_id)` was stored before gets the original
//!   message back ([`Committed::Duplicate`]) and stores nothing.
//! - **Reads** run on read-only connections on tokio's blocking pool.
//! - **Durability** is chosen with [`Durability`]: `Full` fsyncs every commit.
//!
//! # PostgreSQL
//!
//! With [`Backend::Postgres`] every chatgroup node opens its own [`Store`] on one shared
//! database, and the guarantees above hold across the nodes:
//!
//! - **Order**: each node's writer locks the conversations its batch touches
//!   (`SELECT … ORDER BY id FOR UPDATE`, always in id order, so two nodes' batches wait for
//!   each other instead of deadlocking) and takes the next seqs from the locked rows, writing
//!   them back in the same transaction. Seq order is therefore commit order across all nodes,
//!   and a batch that rolls back gives no seq out.
//! - **Idempotence**: `(sender, local_id)` is a unique index, inserted with `ON CONFLICT DO
//!   NOTHING`: a retry that lands on another node while the original is being committed waits
//!   for it and gets the original back. A batch that conflicts with another node's (a
//!   deadlock, a serialization failure, a unique key committed meanwhile) is rolled back and
//!   run again, a few times, before it fails; [`StoreStats::retries`] counts those runs.
//! - **Group commit and acks** as with SQLite: one writer thread per node commits whatever is
//!   queued in one transaction and answers only after `COMMIT`. Its sink sees that node's
//!   commits in commit order.
//! - **Other nodes' commits** do not reach this node's sink. The database is the truth: since
//!   a conversation's seqs have no gaps and follow commit order, "everything after the last
//!   seq I delivered" ([`Store::messages_after`]) is exactly what a node has not seen, which
//!   is how a node (or the bus in front of it) catches up.
//! - **Files**: only their metadata is in the database; the bytes stay in each node's data
//!   directory for now, so a file is served by the node that took its upload.
//! - **Schema**: versioned in a `schema_version` table; nodes starting at once migrate one at
//!   a time under an advisory lock. Connections are plain TCP (no TLS yet): keep the database
//!   on loopback or a private network.
//!
//! # Layout
//!
//! - `store.rs`: the [`Store`] handle, one method per operation.
//! - `writer.rs`: SQLite's writer thread, its batches and its cache; its commands are the
//!   queue both backends' writers take.
//! - `read.rs`: SQLite's reader pool and read queries.
//! - `queries.rs`: row mapping shared by both; `schema.rs`: opening and migrations.
//! - `pg/`: the PostgreSQL backend (writer, read pool, queries, migrations).
//!
//! # Example
//!
//! ```
//! use chatgroup_store::{Committed, Store, StoreConfig};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (hub, mut events) = std::sync::mpsc::channel();
//! // Runs on the writer thread after each commit; forward to the hub, in commit order.
//! let sink = Box::new(move |event: Committed| drop(hub.send(event)));
//! let store = Store::open(StoreConfig::new(dir.path()), sink)?;
//!
//! let alice = store.create_user("alice", "<argon2 hash>").await?;
//! let group = store.create_group(alice.id, "friends", &[]).await?;
//! assert_eq!(group.last_seq.0, 1); // the "created" system message
//! assert!(matches!(events.try_recv(), Ok(Committed::MembersAdded { .. })));
//! assert!(matches!(events.try_recv(), Ok(Committed::Message { .. })));
//! store.close().await;
//! # Ok::<(), chatgroup_store::StoreError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]

mod checkpoint;
mod config;
mod error;
mod files;
mod marks;
mod pg;
mod queries;
mod read;
mod schema;
mod store;
mod types;
mod writer;

pub use config::{Backend, DatabaseUrl, Durability, StoreConfig};
pub use error::StoreError;
pub use files::{NewUpload, StoredFile, UploadLimits, UploadStart};
pub use store::Store;
pub use types::{for_viewer, AppendRequest, Committed, Origin, StoreStats, UserAuth};

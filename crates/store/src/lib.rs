//! chatgroup's persistence: users, refresh tokens, conversations and messages, behind one
//! [`Store`] handle. It is SQLite today; nothing in the API says so, so another database can
//! take its place.
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
//! # Layout
//!
//! - `store.rs`: the [`Store`] handle, one method per operation.
//! - `writer.rs`: the writer thread, its batches and its cache.
//! - `read.rs`: the reader pool and the read queries.
//! - `queries.rs`: row mapping shared by both; `schema.rs`: opening and migrations.
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
mod queries;
mod read;
mod schema;
mod store;
mod types;
mod writer;

pub use config::{Durability, StoreConfig};
pub use error::StoreError;
pub use files::{NewUpload, StoredFile, UploadLimits, UploadStart};
pub use store::Store;
pub use types::{for_viewer, AppendRequest, Committed, Origin, StoreStats, UserAuth};

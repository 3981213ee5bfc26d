//! The PostgreSQL backend: the same [`crate::Store`], for several chatgroup nodes sharing one
//! database.
//!
//! - `writer.rs`: this node's writer thread; group commit, seqs from locked conversation
//!   rows, retries of batches that conflict with other nodes.
//! - `read.rs`: the read pool (snapshot transactions for multi-statement reads).
//! - `rows.rs`: queries and row mapping shared by both; `schema.rs`: migrations.
//!
//! Each node opens one writer connection (on the writer thread's own runtime) and a pool of
//! `readers` connections (on the caller's runtime, connected on first use).
//!
//! # Several nodes and their events
//!
//! A node's sink sees only its own commits. Delivering what other nodes committed is for a
//! bus in front of the stores (issue 12's next slice), which can lean on these facts:
//!
//! - Events can be published from the sink as they come: they are committed, and per
//!   conversation in seq order.
//! - A conversation's seqs have no gaps, so a node that saw seq `n` and then `n + 2` knows
//!   it missed one, and [`crate::Store::messages_after`] on any node fills the gap from the
//!   database.
//! - `Attached` lists a user's conversations as this node's commit point sees them. Another
//!   node's `MembersAdded` for the same user may be committed just before (the list already
//!   has it) or just after (the bus brings it later), so applying `MembersAdded` and
//!   `MemberRemoved` must be idempotent.
//! - A `Duplicate` names the original, whichever node committed it.

pub(crate) mod read;
mod rows;
mod schema;
mod writer;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, watch};
use tokio_postgres::NoTls;

use crate::error::Res;
use crate::marks::Board;
use crate::writer::{Command, Sink, Stats};
use crate::{DatabaseUrl, Durability, StoreConfig, StoreError};

/// What opening a PostgreSQL store starts, for [`crate::Store`] to hold.
pub(crate) struct Opened {
    pub(crate) reads: read::Reads,
    pub(crate) epoch: String,
    pub(crate) jwt_secret: Vec<u8>,
    pub(crate) writer: std::thread::JoinHandle<()>,
}

/// Connects, migrates, reads (or creates) the epoch and the token secret, and starts the
/// writer thread on `queue`.
pub(crate) fn open(
    cfg: &StoreConfig,
    url: &DatabaseUrl,
    sink: Sink,
    queue: mpsc::Receiver<Command>,
    done: watch::Sender<bool>,
    stats: Arc<Stats>,
    board: Arc<Board>,
) -> Res<Opened> {
    let base: tokio_postgres::Config = url.expose().parse().map_err(|e| {
        StoreError::Db(format!(
            "the database URL {url} is not valid: {}",
            crate::error::pg_text(&e)
        ))
    })?;
    let mut writer_cfg = base.clone();
    writer_cfg.application_name("chatgroup-writer");
    // A node cut off from the database in the middle of a batch would keep its
    // conversations locked until TCP gave up (hours): the server ends such a session
    // instead. The writer is never idle inside a transaction on purpose (the sink runs
    // after COMMIT), so the limit costs nothing.
    let mut options = String::from("-c idle_in_transaction_session_timeout=10s");
    if cfg.durability == Durability::Normal {
        // The commit returns before its WAL record is flushed: a crash of the database
        // server may lose the last commits, never corrupt the database.
        options.push_str(" -c synchronous_commit=off");
    }
    writer_cfg.options(&options);
    let mut reader_cfg = base;
    reader_cfg.application_name("chatgroup-reader");
    let reads = read::Reads::new(pool(reader_cfg, cfg.readers.max(1))?);
    let writer_pool = pool(writer_cfg, 1)?;

    // The writer's runtime is built on the writer thread and the start-up queries run on
    // it, so the writer's connection lives on the runtime that uses it.
    let (started, start) = std::sync::mpsc::sync_channel(1);
    let max_batch = cfg.max_batch;
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let error = format!("cannot start the writer's runtime: {e}");
                    let _ = started.send(Err(StoreError::Db(error)));
                    let _ = done.send(true);
                    return;
                }
            };
            let prepared = runtime.block_on(prepare(&writer_pool));
            let ok = prepared.is_ok();
            let _ = started.send(prepared);
            if ok {
                let w = writer::Writer::new(runtime, writer_pool, sink, stats, max_batch, board);
                w.run(queue, done);
            } else {
                let _ = done.send(true);
            }
        })
        .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
    let (epoch, jwt_secret) = match start.recv() {
        Ok(result) => result?,
        Err(_) => return Err(StoreError::Db("the writer thread failed to start".into()).into()),
    };
    Ok(Opened {
        reads,
        epoch,
        jwt_secret,
        writer: handle,
    })
}

/// A pool of up to `size` connections made from `cfg`, connected on first use.
fn pool(cfg: tokio_postgres::Config, size: usize) -> Res<Pool> {
    let manager = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StoreError::Db(format!("cannot build the database pool: {e}")).into())
}

/// The writer's start-up work: migrations, then the epoch and the token secret.
async fn prepare(pool: &Pool) -> Result<(String, Vec<u8>), StoreError> {
    let result: Res<_> = async {
        let mut client = pool.get().await.map_err(read::pool_error)?;
        schema::migrate(&mut client).await?;
        let epoch = crate::store::hex(&crate::schema::random_bytes(16)?);
        let epoch = schema::meta_or_insert(&client, "epoch", epoch.into_bytes()).await?;
        let epoch = String::from_utf8(epoch)
            .map_err(|_| StoreError::Db("the stored epoch is not text".into()))?;
        let secret =
            schema::meta_or_insert(&client, "jwt_secret", crate::schema::random_bytes(32)?).await?;
        Ok((epoch, secret))
    }
    .await;
    result.map_err(StoreError::from)
}

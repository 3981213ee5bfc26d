//! A store on a real database, with its sink events in a channel and a gate that can hold
//! the writer still (so tests can choose what lands in one batch).
//!
//! The database is a [`Db`]: a file in a temp dir (SQLite), or a fresh database in the
//! PostgreSQL cluster that `CHATGROUP_TEST_POSTGRES` points at, created for the test and
//! dropped after it. Test bodies written once as `async fn name(db: Db)` run on both through
//! [`on_both!`].

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Duration;

use chatgroup_protocol::{ConversationId, MessageKind, UserId, UserInfo};
use chatgroup_store::{
    AppendRequest, Backend, Committed, DatabaseUrl, Durability, Origin, Store, StoreConfig,
};
use tokio::sync::mpsc;

/// The variable naming the PostgreSQL cluster to test against (a URL whose user may create
/// databases), e.g. the one `scripts/postgres.sh start` prints.
pub(crate) const POSTGRES_VAR: &str = "CHATGROUP_TEST_POSTGRES";
/// Set to `1` to make a missing [`POSTGRES_VAR`] fail the PostgreSQL tests instead of
/// skipping them (CI sets it, so they can never silently not run).
pub(crate) const REQUIRE_VAR: &str = "CHATGROUP_REQUIRE_POSTGRES";

/// Runs each named test body, an `async fn(Db)`, once on SQLite (`sqlite::name`) and once on
/// PostgreSQL (`postgres::name`, skipped with a notice when no cluster is configured).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Db::sqlite()).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = crate::support::Db::postgres() {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both;

/// Where a test's store keeps its data.
pub(crate) enum Db {
    /// `chatgroup.db` in a temp dir.
    Sqlite(tempfile::TempDir),
    /// A database of its own, dropped with this value; the temp dir is the data dir.
    Postgres(PgDatabase),
}

/// A scratch PostgreSQL database, created for one test and dropped after it.
pub(crate) struct PgDatabase {
    pub(crate) dir: tempfile::TempDir,
    /// The cluster's URL, for administration (creating and dropping databases).
    admin: String,
    name: String,
    /// The URL of this database.
    pub(crate) url: String,
}

impl Db {
    pub(crate) fn sqlite() -> Db {
        Db::Sqlite(tempdir())
    }

    /// A fresh database in the configured cluster; `None` (after a notice) if there is none
    /// and none is required.
    pub(crate) fn postgres() -> Option<Db> {
        let Ok(admin) = std::env::var(POSTGRES_VAR) else {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{REQUIRE_VAR}=1 but {POSTGRES_VAR} is not set: start a cluster with \
                 scripts/postgres.sh start and export its URL"
            );
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                use std::io::Write as _;
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: the PostgreSQL store tests are SKIPPED: {POSTGRES_VAR} is not set \
                     (export CHATGROUP_TEST_POSTGRES=\"$(bash scripts/postgres.sh start)\"; \
                     {REQUIRE_VAR}=1 makes this a failure)"
                );
            });
            return None;
        };
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!(
            "chatgroup_test_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        admin_sql(&admin, &format!("CREATE DATABASE {name}"));
        Some(Db::Postgres(PgDatabase {
            dir: tempdir(),
            url: with_database(&admin, &name),
            admin,
            name,
        }))
    }

    /// Another fresh database of the same kind.
    pub(crate) fn another(&self) -> Db {
        match self {
            Db::Sqlite(_) => Db::sqlite(),
            Db::Postgres(_) => Db::postgres().expect("configured, since this one exists"),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Db::Sqlite(dir) => dir.path(),
            Db::Postgres(pg) => pg.dir.path(),
        }
    }

    /// The test configuration of a store on this database.
    pub(crate) fn config(&self) -> StoreConfig {
        let mut cfg = config(self.dir());
        if let Db::Postgres(pg) = self {
            cfg.backend = Backend::Postgres(DatabaseUrl::new(pg.url.clone()));
        }
        cfg
    }

    /// A store on this database (a "node", when several are open at once on PostgreSQL).
    pub(crate) fn open(&self) -> Harness {
        open_with(self.config())
    }

    /// Runs one statement on this database, outside any store (to plant a fault or an old
    /// schema). PostgreSQL only.
    pub(crate) fn execute(&self, statement: &str) {
        match self {
            Db::Sqlite(_) => panic!("execute is for PostgreSQL"),
            Db::Postgres(pg) => admin_sql(&pg.url, statement),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE ends the connections a store that was not closed may still hold.
        admin_sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, query) = match rest.find('/') {
        Some(slash) => {
            let path = &rest[slash..];
            let query = path.find('?').map_or("", |q| &path[q..]);
            (&rest[..slash], query)
        }
        None => match rest.find('?') {
            Some(q) => (&rest[..q], &rest[q..]),
            None => (rest, ""),
        },
    };
    format!("{scheme}://{authority}/{name}{query}")
}

/// Runs `statement` on the database `url` names, from a thread of its own (callers are
/// inside a runtime, where blocking on another is not allowed).
fn admin_sql(url: &str, statement: &str) {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test cluster");
            let driver = tokio::spawn(connection);
            client
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .expect("the admin statement succeeds");
}

/// Holds the writer inside the sink while closed.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<(bool, bool)>, // (closed, writer waiting)
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        while s.0 {
            s.1 = true;
            s = self.cv.wait(s).unwrap();
        }
        s.1 = false;
    }

    pub(crate) fn close(&self) {
        self.state.lock().unwrap().0 = true;
    }

    pub(crate) fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.cv.notify_all();
    }

    /// Waits until the writer is stuck in the sink.
    pub(crate) async fn writer_held(&self) {
        for _ in 0..5000 {
            if self.state.lock().unwrap().1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the writer never reached the gate");
    }
}

pub(crate) struct Harness {
    pub(crate) store: Store,
    pub(crate) events: mpsc::UnboundedReceiver<Committed>,
    pub(crate) gate: Arc<Gate>,
}

pub(crate) fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    // The tests check behaviour, not power-loss safety; NORMAL keeps them fast. The
    // durability tests open with Full.
    cfg.durability = Durability::Normal;
    cfg
}

pub(crate) fn open(dir: &Path) -> Harness {
    open_with(config(dir))
}

pub(crate) fn open_with(cfg: StoreConfig) -> Harness {
    let (tx, events) = mpsc::unbounded_channel();
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    let store = Store::open(
        cfg,
        Box::new(move |e| {
            g.pass();
            let _ = tx.send(e);
        }),
    )
    .expect("open store");
    Harness {
        store,
        events,
        gate,
    }
}

impl Harness {
    /// Every event delivered so far.
    pub(crate) fn drain(&mut self) -> Vec<Committed> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// The next `n` events, waiting for them.
    pub(crate) async fn take(&mut self, n: usize) -> Vec<Committed> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let e = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("event in time")
                .expect("sink alive");
            out.push(e);
        }
        out
    }

    pub(crate) async fn user(&self, name: &str) -> UserInfo {
        self.store
            .create_user(name, &format!("hash-of-{name}"))
            .await
            .unwrap()
    }
}

pub(crate) fn text(
    sender: UserId,
    conversation: ConversationId,
    local_id: &str,
    body: &str,
) -> AppendRequest {
    AppendRequest {
        sender,
        conversation,
        local_id: local_id.into(),
        body: body.into(),
        kind: MessageKind::Text,
        origin: Origin {
            tag: sender.0,
            reference: Some(local_id.into()),
        },
    }
}

pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

//! Appends per second through the whole store path: async `append` into the bounded queue,
//! group commit on the writer thread, the sink. 100 appenders, each with at most 16 appends
//! not yet committed (the sink's event frees a slot), 100-byte bodies, spread over 10 groups
//! of 10 members, with `Durability::Full` (fsync per commit) and `Durability::Normal`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatgroup_protocol::{ConversationId, MessageKind, UserId};
use chatgroup_store::{AppendRequest, Committed, Durability, Origin, Store, StoreConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::{Notify, Semaphore};

const APPENDERS: usize = 100;
const IN_FLIGHT: usize = 16;
const GROUP_SIZE: usize = 10;

struct Setup {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Store,
    /// Per appender, its free in-flight slots.
    windows: Arc<Vec<Semaphore>>,
    committed: Arc<AtomicU64>,
    progress: Arc<Notify>,
    senders: Vec<(UserId, ConversationId)>,
    next_local: u64,
}

fn setup(durability: Durability) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let windows: Arc<Vec<Semaphore>> =
        Arc::new((0..APPENDERS).map(|_| Semaphore::new(IN_FLIGHT)).collect());
    let committed = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut cfg = StoreConfig::new(dir.path());
    cfg.durability = durability;
    let (w, c, p) = (
        Arc::clone(&windows),
        Arc::clone(&committed),
        Arc::clone(&progress),
    );
    let store = Store::open(
        cfg,
        Box::new(move |event| {
            if let Committed::Message {
                origin: Some(origin),
                ..
            } = event
            {
                w[usize::try_from(origin.tag).expect("tag is an index")].add_permits(1);
                c.fetch_add(1, Ordering::Relaxed);
                p.notify_one();
            }
        }),
    )
    .expect("open store");
    let senders = rt.block_on(async {
        let mut senders = Vec::new();
        for g in 0..APPENDERS / GROUP_SIZE {
            let mut members = Vec::new();
            for m in 0..GROUP_SIZE {
                let user = store
                    .create_user(&format!("u{g}-{m}"), "x")
                    .await
                    .expect("user");
                members.push(user.id);
            }
            let group = store
                .create_group(members[0], &format!("g{g}"), &members)
                .await
                .expect("group");
            senders.extend(members.into_iter().map(|m| (m, group.id)));
        }
        senders
    });
    Setup {
        _dir: dir,
        rt,
        store,
        windows,
        committed,
        progress,
        senders,
        next_local: 0,
    }
}

impl Setup {
    /// Sends `total` appends across the appenders and returns the time until all committed.
    fn run(&mut self, total: u64) -> Duration {
        let start_count = self.committed.load(Ordering::Relaxed);
        let base = self.next_local;
        self.next_local += total;
        let body = "x".repeat(100);
        let start = Instant::now();
        self.rt.block_on(async {
            let mut tasks = Vec::with_capacity(APPENDERS);
            for (i, &(sender, conversation)) in self.senders.iter().enumerate() {
                let n = total / APPENDERS as u64 + u64::from((i as u64) < total % APPENDERS as u64);
                let (store, windows, body) =
                    (self.store.clone(), Arc::clone(&self.windows), body.clone());
                tasks.push(tokio::spawn(async move {
                    for k in 0..n {
                        windows[i].acquire().await.expect("window").forget();
                        let req = AppendRequest {
                            sender,
                            conversation,
                            local_id: format!("{}", base + k * APPENDERS as u64 + i as u64),
                            body: body.clone(),
                            kind: MessageKind::Text,
                            origin: Origin {
                                tag: i as u64,
                                reference: None,
                            },
                        };
                        store.append(req).await.expect("append");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("appender");
            }
            while self.committed.load(Ordering::Relaxed) - start_count < total {
                let notified = self.progress.notified();
                if self.committed.load(Ordering::Relaxed) - start_count >= total {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
            }
        });
        start.elapsed()
    }
}

/// Nanoseconds on CPU so far of this process's threads named `name` (Linux; 0 elsewhere).
/// The machine is shared, so wall-clock throughput moves with other load; CPU time per
/// append does not.
fn cpu_ns(name: Option<&str>) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.is_some_and(|n| comm.trim() != n) {
            continue;
        }
        let sched = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let mut s = setup(durability);
        let ops0 = s.store.stats().ops;
        let (writer0, all0) = (cpu_ns(Some("store-writer")), cpu_ns(None));
        group.bench_function(format!("100x16/{name}"), |b| {
            b.iter_custom(|iters| s.run(iters))
        });
        let stats = s.store.stats();
        let ops = (stats.ops - ops0).max(1) as f64;
        eprintln!(
            "append/{name}: {} appends in {} commits ({:.0} per commit); CPU per append: \
             writer thread {:.2} µs, whole process {:.2} µs",
            stats.ops,
            stats.commits,
            stats.ops as f64 / stats.commits.max(1) as f64,
            (cpu_ns(Some("store-writer")) - writer0) as f64 / ops / 1000.0,
            (cpu_ns(None) - all0) as f64 / ops / 1000.0,
        );
        s.rt.block_on(s.store.close());
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);

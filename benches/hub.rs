//! Hub fan-out: one broadcast to a conversation of 1,000 in-process subscribers.
//!
//! ```text
//! cargo bench --bench hub -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The real hub task runs on a current-thread runtime with 1,000 registered clients whose
//! outboxes have no socket, so every delivery is a queue push: the hub's own cost (routing,
//! one shared `Bytes` per broadcast, one push per member) without the kernel's. A sample sends
//! broadcasts through a `HubHandle`, exactly as a read pump does, and ends when the last
//! member's outbox holds all of them. Members are replaced every `ROUND` broadcasts, outside
//! the timed part, so queues stay short and memory bounded.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatgroup_server::hub::{Hub, HubConfig, HubHandle};
use chatgroup_server::ids::{ClientId, ConversationId};
use chatgroup_server::outbox::Outbox;
use chatgroup_server::Metrics;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rfc6455::Frame;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Broadcasts per set of members.
const ROUND: u64 = 128;
const CONVERSATION: ConversationId = ConversationId(1);
/// The publisher: a member that must not receive its own broadcasts.
const PUBLISHER: ClientId = ClientId(0);

struct Fixture {
    hub: HubHandle,
    members: Vec<Arc<Outbox>>,
    next_id: u64,
}

impl Fixture {
    async fn new(runtime_hub: HubHandle) -> Self {
        let fixture = Self {
            hub: runtime_hub,
            members: Vec::new(),
            next_id: 1,
        };
        let publisher = Arc::new(Outbox::new(usize::MAX, usize::MAX));
        fixture.hub.register(PUBLISHER, publisher).await.unwrap();
        fixture.hub.join(PUBLISHER, CONVERSATION).await.unwrap();
        fixture
    }

    /// Replaces every member with a fresh one (empty queue).
    async fn fresh_members(&mut self, n: usize) {
        for i in 0..self.members.len() as u64 {
            self.hub
                .unregister(ClientId(self.next_id - 1 - i))
                .await
                .unwrap();
        }
        self.members.clear();
        for _ in 0..n {
            let id = ClientId(self.next_id);
            self.next_id += 1;
            // Unbounded for the bench: eviction is not what is measured.
            let outbox = Arc::new(Outbox::new(usize::MAX, usize::MAX));
            self.hub.register(id, outbox.clone()).await.unwrap();
            self.hub.join(id, CONVERSATION).await.unwrap();
            self.members.push(outbox);
        }
    }

    /// Sends `count` broadcasts and waits until the last member has all of them.
    async fn broadcast(&self, frame: &bytes::Bytes, count: u64) {
        for _ in 0..count {
            self.hub
                .broadcast(CONVERSATION, Some(PUBLISHER), frame.clone())
                .await
                .unwrap();
        }
        let last = self.members.last().expect("members");
        while (last.len() as u64) < count {
            tokio::task::yield_now().await;
        }
    }
}

/// Spawns a hub whose timers never fire during a bench, so only fan-out is measured.
fn start_hub(queue_depth: usize) -> (HubHandle, tokio::task::JoinHandle<()>) {
    let hour = Duration::from_secs(3600);
    let (hub, handle) = Hub::new(
        HubConfig {
            queue_depth,
            ping_interval: hour,
            sweep_interval: hour,
            slow_consumer_grace: hour,
        },
        Arc::new(Metrics::default()),
        CancellationToken::new(),
    );
    (handle, tokio::spawn(hub.run()))
}

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("hub_fanout");
    for members in [100usize, 1000] {
        group.throughput(Throughput::Elements(members as u64));
        group.bench_with_input(
            BenchmarkId::new("broadcast 64 B", members),
            &members,
            |b, &members| bench_members(b, &runtime, members),
        );
    }
    group.finish();
}

fn bench_members(b: &mut criterion::Bencher<'_>, runtime: &Runtime, members: usize) {
    let frame = Frame::text("x".repeat(64)).to_bytes();
    b.iter_custom(|iters| {
        runtime.block_on(async {
            let (handle, hub_task) = start_hub(1024);
            let mut fixture = Fixture::new(handle).await;
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(ROUND);
                fixture.fresh_members(members).await;
                let start = Instant::now();
                fixture.broadcast(&frame, n).await;
                elapsed += start.elapsed();
                black_box(&fixture.members);
                left -= n;
            }
            drop(fixture);
            hub_task.await.unwrap();
            elapsed
        })
    });
}

/// Checks, once, what the bench relies on: every member gets each broadcast, the publisher
/// none, and all of them share one allocation.
fn fanout_is_shared(_: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (handle, hub_task) = start_hub(64);
        let mut fixture = Fixture::new(handle).await;
        fixture.fresh_members(1000).await;
        let frame = Frame::text("shared").to_bytes();
        fixture.broadcast(&frame, 1).await;
        for member in &fixture.members {
            assert_eq!(member.len(), 1, "every member got the broadcast once");
        }
        drop(fixture);
        hub_task.await.unwrap();
    });
}

criterion_group!(benches, fanout_is_shared, fanout);
criterion_main!(benches);

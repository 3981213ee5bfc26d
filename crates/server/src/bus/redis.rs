//! The bus's two tasks on Redis: one publishes the queue over a multiplexed connection, one
//! holds the subscription and feeds the hub. Each reconnects on its own with backoff and
//! reports its state to [`super::Health`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::envelope::{Envelope, Event};
use super::{Bus, Inbound, InboundKind, ALIVE_EVERY, SILENCE};
use crate::hub::chat::ChatCommand;
use crate::hub::{Command, HubHandle};

/// The first pause before reconnecting; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A `PUBLISH` or a connection attempt that takes longer has failed.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Doubles `backoff` after a pause of that length, unless shutdown comes first; `false`
/// on shutdown.
async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Drains `outgoing` into `PUBLISH`es, in order, and says `Alive` every [`ALIVE_EVERY`].
pub(super) async fn publish(
    client: redis::Client,
    channel: String,
    bus: Bus,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let health = &bus.inner.health;
    let mut backoff = BACKOFF_MIN;
    let alive = serde_json::to_vec(&Envelope {
        node: bus.node(),
        event: Event::Alive,
    })
    .unwrap_or_default();
    let lost = serde_json::to_vec(&Envelope {
        node: bus.node(),
        event: Event::Lost,
    })
    .unwrap_or_default();
    'connect: loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            c = tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection()) => c,
        };
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                health.set(&health.publishing, false, Some(format!("publisher: {e}")));
                if !pause(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                let reason = "publisher: connecting timed out".to_owned();
                health.set(&health.publishing, false, Some(reason));
                if !pause(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        health.set(&health.publishing, true, None);
        backoff = BACKOFF_MIN;
        let mut tick = tokio::time::interval(ALIVE_EVERY);
        loop {
            let payload = tokio::select! {
                () = shutdown.cancelled() => return,
                item = outgoing.recv() => match item {
                    Some(bytes) => bytes,
                    None => return,
                },
                _ = tick.tick() => alive.clone(),
            };
            // Whatever was dropped is announced before the next event, so the others look
            // for gaps.
            let announce = bus.inner.lost.swap(false, Ordering::Relaxed);
            for bytes in announce.then(|| lost.clone()).into_iter().chain([payload]) {
                let sent = tokio::time::timeout(
                    IO_TIMEOUT,
                    conn.publish::<_, _, i64>(channel.as_str(), bytes),
                )
                .await;
                match sent {
                    Ok(Ok(_)) => {
                        bus.inner.published.fetch_add(1, Ordering::Relaxed);
                    }
                    failed => {
                        let reason = match failed {
                            Ok(Err(e)) => format!("publisher: {e}"),
                            _ => "publisher: PUBLISH timed out".to_owned(),
                        };
                        tracing::warn!(%reason, "bus: publishing failed; reconnecting");
                        health.set(&health.publishing, false, Some(reason));
                        bus.inner.lost.store(true, Ordering::Relaxed);
                        bus.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        if !pause(&mut backoff, &shutdown).await {
                            return;
                        }
                        continue 'connect;
                    }
                }
            }
        }
    }
}

/// Holds the subscription: every other node's message goes to the hub; the hub is told when
/// the subscription is lost and when it is back.
pub(super) async fn subscribe(
    client: redis::Client,
    channel: String,
    bus: Bus,
    hub: HubHandle,
    shutdown: CancellationToken,
) {
    let health = &bus.inner.health;
    let mut backoff = BACKOFF_MIN;
    let mut lost_before = false;
    let hello = Event::Hello;
    let tell = |kind| Command::Chat(Box::new(ChatCommand::Bus(Inbound(kind))));
    loop {
        let subscribed = tokio::select! {
            () = shutdown.cancelled() => return,
            s = tokio::time::timeout(IO_TIMEOUT, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel.as_str()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }) => s,
        };
        let pubsub = match subscribed {
            Ok(Ok(p)) => p,
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => format!("subscriber: {e}"),
                    _ => "subscriber: subscribing timed out".to_owned(),
                };
                health.set(&health.subscribed, false, Some(reason));
                if !pause(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        health.set(&health.subscribed, true, None);
        tracing::info!(node = %bus.node(), recovered = lost_before, "bus: subscribed");
        backoff = BACKOFF_MIN;
        if hub
            .send_command(tell(InboundKind::Up {
                recovered: lost_before,
            }))
            .await
            .is_err()
        {
            return;
        }
        bus.publish(hello.clone());
        let mut stream = pubsub.into_on_message();
        let reason = loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                m = tokio::time::timeout(SILENCE, stream.next()) => m,
            };
            let msg = match next {
                Ok(Some(msg)) => msg,
                Ok(None) => break "subscriber: the connection closed".to_owned(),
                // Silence means a broken subscription only while our own `Alive`s are being
                // published; with the publisher down (and no other node) it means nothing,
                // and resubscribing would needlessly make every client resync.
                Err(_) if !health.publishing.load(Ordering::Relaxed) => continue,
                Err(_) => break format!("subscriber: nothing heard for {SILENCE:?}"),
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) else {
                tracing::debug!("bus: a message that is not ours; ignored");
                continue;
            };
            if envelope.node == bus.node() {
                // Our own `Alive` and events: they prove the subscription works, nothing more.
                continue;
            }
            if hub
                .send_command(tell(InboundKind::Remote(Box::new(envelope))))
                .await
                .is_err()
            {
                return;
            }
        };
        tracing::warn!(%reason, "bus: subscription lost; reconnecting");
        health.set(&health.subscribed, false, Some(reason));
        lost_before = true;
        if hub.send_command(tell(InboundKind::Down)).await.is_err() {
            return;
        }
        if !pause(&mut backoff, &shutdown).await {
            return;
        }
    }
}

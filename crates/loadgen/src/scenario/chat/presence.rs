//! `chat presence`: what one user's presence flap costs the server, in frames.
//!
//! One user U is in G groups; M member connections (of `--users` users, round-robin) are in
//! every one of those groups, so each group has M + 1 connected members. All connections
//! are authenticated, synced and held open, and every member connection keeps reading (and
//! counts the `presence` frames it gets). Then, twice (first with nobody watching, then with
//! `--watchers` member connections each watching one group through `user_list`):
//!
//! | step | what U does | expected, by design |
//! |---|---|---|
//! | reload | closes its socket and opens a new one at once, well within the debounce | no frame |
//! | leave | closes its socket and stays away past the debounce | one frame per connection that is pushed to (small groups, watchers), however many groups it shares with U |
//! | return | connects again | the same |
//!
//! The figure of each step is the change of the server's `chatgroup_presence_frames_total`
//! (`/metrics`) across it, read once the count has stopped moving; the frames the member
//! connections saw are reported next to it as a cross-check. Everything runs on loopback
//! and stops by itself.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use chatgroup_protocol::ConversationId;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{api::Api, read_texts, wire, ChatConn, Kind, Setup};
use crate::cli::ChatPresenceArgs;
use crate::report::{Errors, Report};
use crate::session::{close_all, Session};

/// The server's counter of `presence` frames sent.
const PRESENCE_FRAMES_METRIC: &str = "chatgroup_presence_frames_total";
/// Past the debounce, how long to let the hub's tick (100 ms) and the writes catch up.
const SETTLE: Duration = Duration::from_millis(1500);
/// How often the counter is polled while waiting for it to stop moving.
const POLL: Duration = Duration::from_millis(250);

/// What the member connections share with the driver (one thread, so plain cells).
struct Shared {
    /// `presence` frames every member connection has received so far.
    seen: Cell<u64>,
    /// `user_list` answers received (each means a watch is registered).
    lists: Cell<u64>,
    /// Set to ask the first `watchers` connections to start watching.
    watch: Cell<bool>,
    /// Set when the run is over.
    stop: Cell<bool>,
    /// Woken when `watch` or `stop` is set.
    changed: Notify,
}

/// Runs the mode.
pub(crate) async fn run(
    common: &crate::scenario::Common,
    setup: &Setup,
    args: &ChatPresenceArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let users = args.users.unwrap_or(args.members);
    let params = serde_json::json!({
        "groups": args.groups, "members": args.members, "users": users,
        "watchers": args.watchers, "debounce_s": args.debounce,
    });
    let mut report = Report::new("chat-presence", &common.label, params);
    let setup_start = Instant::now();
    let flapper = setup.register("p", 1).await?.remove(0);
    let accounts = setup.register("w", users).await?;
    let names: Vec<String> = accounts.iter().map(|a| a.username.clone()).collect();
    let mut groups = Vec::with_capacity(args.groups);
    for g in 0..args.groups {
        groups.push(
            setup
                .group(&flapper, &format!("loadgen presence {g}"), &names)
                .await?,
        );
    }
    let tokens: Vec<String> = accounts.iter().map(|a| a.token.clone()).collect();
    let shared = Rc::new(Shared {
        seen: Cell::new(0),
        lists: Cell::new(0),
        watch: Cell::new(false),
        stop: Cell::new(false),
        changed: Notify::new(),
    });
    let tasks = open_members(setup, args, tokens, &groups, &shared, &errors).await;
    let opened = tasks.len();
    let flapping = open(setup, args.members, &flapper.token).await;
    report.metric("setup_s", setup_start.elapsed().as_secs_f64());
    let mut flapping = match flapping {
        Ok(conn) if opened == args.members => Some(conn),
        other => {
            if let Err(e) = other {
                errors.push(format!("user U: {e:#}"));
            }
            shared.stop.set(true);
            shared.changed.notify_waiters();
            let mut sessions = Vec::new();
            for task in tasks {
                sessions.extend(task.await?);
            }
            close_all(sessions, Duration::from_secs(1)).await;
            report.take_errors(&errors);
            return Ok(report);
        }
    };

    let debounce = Duration::from_secs_f64(args.debounce);
    let mut api = setup.api();
    let result: anyhow::Result<()> = async {
        // Everyone's own arrival has been announced (to nobody, in groups this large).
        let mut before = quiet(&mut api).await?;
        for pass in ["", "watched_"] {
            if pass == "watched_" {
                shared.watch.set(true);
                shared.changed.notify_waiters();
                let deadline = Instant::now() + Duration::from_secs(30);
                while shared.lists.get() < args.watchers as u64 {
                    if Instant::now() >= deadline {
                        bail!(
                            "only {} of {} watchers got their user_list",
                            shared.lists.get(),
                            args.watchers
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                before = quiet(&mut api).await?;
            }
            for step in ["reload", "leave", "return"] {
                let seen_before = shared.seen.get();
                if let Some(conn) = flapping.take() {
                    conn.session.close(Duration::from_secs(1)).await;
                }
                if step != "leave" {
                    // A reload reconnects at once; a return after the departure settled.
                    flapping = Some(open(setup, args.members, &flapper.token).await?);
                }
                let wait = if step == "return" {
                    SETTLE
                } else {
                    debounce + SETTLE
                };
                tokio::time::sleep(wait).await;
                let after = quiet(&mut api).await?;
                let frames = after - before;
                let seen = shared.seen.get() - seen_before;
                record(&mut report, pass, step, frames, seen);
                before = after;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        errors.push(format!("{e:#}"));
    }
    // Without fan-out limits and per-connection merging, a flap would cost this much.
    report.metric("naive_frames_per_flap", (args.groups * args.members) as f64);
    shared.stop.set(true);
    shared.changed.notify_waiters();
    let mut sessions: Vec<Session> = flapping.into_iter().map(|c| c.session).collect();
    for task in tasks {
        sessions.extend(task.await?);
    }
    close_all(sessions, Duration::from_secs(1)).await;
    report.take_errors(&errors);
    Ok(report)
}

/// Opens the member connections, `--concurrency` at a time, and starts reading each as
/// soon as it is open: one left unread while the others open (minutes, with many users in
/// many large groups) stops answering pings and is swept by the server.
async fn open_members(
    setup: &Setup,
    args: &ChatPresenceArgs,
    tokens: Vec<String>,
    groups: &[ConversationId],
    shared: &Rc<Shared>,
    errors: &Rc<Errors>,
) -> Vec<JoinHandle<Option<Session>>> {
    let next = Rc::new(Cell::new(0usize));
    let tokens = Rc::new(tokens);
    let groups: Rc<[ConversationId]> = groups.into();
    let tasks = Rc::new(RefCell::new(Vec::with_capacity(args.members)));
    let (count, watchers) = (args.members, args.watchers);
    let mut workers = Vec::new();
    for _ in 0..setup.concurrency.min(count) {
        let (next, tokens, groups, shared, errors, tasks, setup) = (
            next.clone(),
            tokens.clone(),
            groups.clone(),
            shared.clone(),
            errors.clone(),
            tasks.clone(),
            setup.clone(),
        );
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= count {
                    return;
                }
                next.set(i + 1);
                match open(&setup, i, &tokens[i % tokens.len()]).await {
                    Ok(conn) => {
                        let watches = (i < watchers).then(|| groups[i % groups.len()]);
                        let task = tokio::task::spawn_local(member(
                            i,
                            conn.session,
                            watches,
                            shared.clone(),
                            errors.clone(),
                        ));
                        tasks.borrow_mut().push(task);
                    }
                    Err(e) => errors.push(format!("chat connection {i}: {e:#}")),
                }
            }
        }));
    }
    for w in workers {
        if let Err(e) = w.await {
            errors.push(format!("opener task: {e}"));
        }
    }
    tasks.take()
}

/// A connection authenticated and synced from the cursors `ready` gave: nothing to replay
/// (a sync with no cursors would replay every group's latest events), so a reload is as
/// quick as the server allows.
async fn open(setup: &Setup, index: usize, token: &str) -> anyhow::Result<ChatConn> {
    let mut conn = ChatConn::open(&setup.target, index, token).await?;
    let cursors = conn.cursors.clone();
    conn.sync(cursors).await?;
    Ok(conn)
}

/// Reads the presence counter until two readings `POLL` apart agree.
async fn quiet(api: &mut Api) -> anyhow::Result<f64> {
    let mut last = api.metric(PRESENCE_FRAMES_METRIC).await?;
    for _ in 0..40 {
        tokio::time::sleep(POLL).await;
        let now = api.metric(PRESENCE_FRAMES_METRIC).await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    bail!("{PRESENCE_FRAMES_METRIC} kept moving for 10 s")
}

fn record(report: &mut Report, pass: &str, step: &str, frames: f64, seen: u64) {
    // Report names are static: the six combinations spelled out.
    let (f, s) = match (pass, step) {
        ("", "reload") => ("reload_frames", "reload_seen"),
        ("", "leave") => ("leave_frames", "leave_seen"),
        ("", _) => ("return_frames", "return_seen"),
        (_, "reload") => ("watched_reload_frames", "watched_reload_seen"),
        (_, "leave") => ("watched_leave_frames", "watched_leave_seen"),
        _ => ("watched_return_frames", "watched_return_seen"),
    };
    report.metric(f, frames);
    report.metric(s, seen as f64);
}

/// One member connection: reads everything (answering pings), counts `presence` frames
/// and, when asked, starts watching `watches`. Returns the session when still usable.
async fn member(
    index: usize,
    mut session: Session,
    watches: Option<ConversationId>,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
) -> Option<Session> {
    let mut texts: Vec<Bytes> = Vec::new();
    let mut asked = false;
    let result: anyhow::Result<()> = async {
        loop {
            if shared.stop.get() {
                return Ok(());
            }
            if let (Some(conversation), true, false) = (watches, shared.watch.get(), asked) {
                session.queue(&wire::user_list_frame(conversation));
                asked = true;
            }
            session.try_flush()?;
            let interest = if session.wbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let changed = shared.changed.notified();
            tokio::select! {
                () = changed => continue,
                r = session.stream.ready(interest) => {
                    if !r?.is_readable() {
                        continue;
                    }
                }
            }
            read_texts(&mut session, |t| texts.push(t))?;
            for text in texts.drain(..) {
                match wire::kind(&text) {
                    Kind::Presence => shared.seen.set(shared.seen.get() + 1),
                    Kind::UserList => shared.lists.set(shared.lists.get() + 1),
                    Kind::Error => {
                        errors.push(format!("member {index}: {}", wire::excerpt(&text, 200)));
                    }
                    _ => {}
                }
            }
        }
    }
    .await;
    match result {
        Ok(()) => Some(session),
        Err(e) => {
            errors.push(format!("member {index}: {e:#}"));
            None
        }
    }
}

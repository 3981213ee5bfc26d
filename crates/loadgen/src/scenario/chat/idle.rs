//! `chat idle`: C chat connections of U users (round-robin), every user in three groups,
//! each connection authenticated (`ready`) and synced (`synced`), then held idle; the
//! server's resident memory per connection.
//!
//! The baseline RSS is read after the users and groups exist and before the first socket
//! opens. Hashing the users' passwords (argon2id, about 19 MiB each) leaves the server's
//! memory inflated by an amount that shrinks unpredictably later, which would swamp a few
//! KiB per connection: so `--prepare FILE` registers the users, creates the groups and
//! writes the tokens, and a second run with `--accounts FILE`, against the server restarted
//! on the same data directory, opens and measures the connections.
//! After the hold every connection has to answer a ping, so a server that dropped some
//! cannot look cheaper than it is.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};

use super::{Account, Setup};
use crate::cli::ChatIdleArgs;
use crate::procfs::{self, Pid};
use crate::report::{Errors, Report};
use crate::scenario::{Common, Usage};

/// Conversations each user is in.
const LAYERS: usize = 3;

/// The groups of one layer: the users, rotated by `shift`, cut into runs of `size`.
fn layer(users: usize, size: usize, shift: usize) -> Vec<Vec<usize>> {
    let rotated: Vec<usize> = (0..users).map(|i| (i + shift) % users).collect();
    rotated.chunks(size).map(<[usize]>::to_vec).collect()
}

/// Runs the mode.
pub(crate) async fn run(
    common: &Common,
    setup: &Setup,
    args: &ChatIdleArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "conns": args.conns, "users": args.users, "group_size": args.group_size,
        "conversations_per_user": LAYERS, "hold_s": args.hold,
        "per_source": common.target.per_source,
    });
    let mut report = Report::new("chat-idle", &common.label, params);
    let setup_start = Instant::now();
    let accounts = match &args.accounts {
        Some(path) => {
            let accounts = read_accounts(path)?;
            ensure!(
                accounts.len() == args.users,
                "{} holds {} users, not --users {}",
                path.display(),
                accounts.len(),
                args.users
            );
            accounts
        }
        None => {
            let accounts = prepare(setup, args).await?;
            report.metric("setup_s", setup_start.elapsed().as_secs_f64());
            if let Some(path) = &args.prepare {
                let json = serde_json::to_vec(&accounts)?;
                std::fs::write(path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
                report.take_errors(&errors);
                return Ok(report);
            }
            accounts
        }
    };
    let rss = || {
        common
            .server_pid
            .map(|id| procfs::rss_kib(Pid::Id(id)))
            .transpose()
    };
    let baseline = rss()?;
    let usage = Usage::begin(common.server_pid)?;
    let open_start = Instant::now();
    let tokens: Vec<String> = accounts.iter().map(|a| a.token.clone()).collect();
    let conns = setup
        .connect_many(
            args.conns,
            move |i| tokens[i % tokens.len()].clone(),
            &errors,
        )
        .await;
    let open = conns.len();
    report.metric("conns_open", open as f64);
    report.metric("open_s", open_start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let held = rss()?;
    let usage = usage.end()?;
    usage.fill(&mut report);

    let sessions = conns.into_iter().map(|(i, conn)| (i, conn.session));
    crate::scenario::idle::finish(sessions, open, &errors, &mut report, baseline, held).await?;
    Ok(report)
}

/// Registers the users and puts each in three groups.
async fn prepare(setup: &Setup, args: &ChatIdleArgs) -> anyhow::Result<Vec<Account>> {
    let accounts = setup.register("i", args.users).await?;
    for l in 0..LAYERS {
        // Different cuts per layer, so a user's three groups are not the same people
        // (when there are more users than one group holds).
        for (g, members) in layer(args.users, args.group_size, l * args.group_size / LAYERS)
            .into_iter()
            .enumerate()
        {
            let names: Vec<String> = members[1..]
                .iter()
                .map(|&i| accounts[i].username.clone())
                .collect();
            setup
                .group(
                    &accounts[members[0]],
                    &format!("loadgen idle {l}.{g}"),
                    &names,
                )
                .await?;
        }
    }
    Ok(accounts)
}

/// The users a `--prepare` run wrote.
fn read_accounts(path: &Path) -> anyhow::Result<Vec<Account>> {
    let json = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&json).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_is_in_one_group_per_layer() {
        for (users, size) in [(100, 100), (10, 4), (1000, 100), (7, 3)] {
            for l in 0..LAYERS {
                let groups = layer(users, size, l * size / LAYERS);
                let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..users).collect::<Vec<_>>());
                assert!(groups.iter().all(|g| !g.is_empty() && g.len() <= size));
            }
        }
    }
}

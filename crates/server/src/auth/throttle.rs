//! Login throttling: failed attempts counted per username and per client address in a
//! sliding window; past the limit, attempts are refused before any password is checked.
//!
//! Memory is bounded: at most `max_keys` keys are tracked; when full, expired entries are
//! pruned, and if none expired the oldest key is dropped (an attacker rotating addresses
//! gains nothing: the per-username limit still holds for the accounts they target).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per username within the window.
pub(crate) const PER_USER: u32 = 5;
/// Failures allowed per client address within the window (several users behind one NAT).
pub(crate) const PER_ADDR: u32 = 20;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(u64),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
}

/// Tracks failed logins.
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    entries: Mutex<HashMap<Key, Entry>>,
    max_keys: usize,
    window: Duration,
}

impl LoginThrottle {
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(16),
            window: WINDOW,
        }
    }

    #[cfg(test)]
    fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// `Err(retry_after)` when this username or address has failed too often recently.
    pub(crate) fn check(&self, username: &str, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let entries = self.lock();
        let mut wait = None;
        for (key, limit) in [(user_key(username), PER_USER), (Key::Addr(addr), PER_ADDR)] {
            if let Some(e) = entries.get(&key) {
                let age = now.duration_since(e.since);
                if age < self.window && e.failures >= limit {
                    let left = self.window - age;
                    wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&self, username: &str, addr: IpAddr) {
        let now = Instant::now();
        let mut entries = self.lock();
        for key in [user_key(username), Key::Addr(addr)] {
            if !entries.contains_key(&key) && entries.len() >= self.max_keys {
                let window = self.window;
                entries.retain(|_, e| now.duration_since(e.since) < window);
                if entries.len() >= self.max_keys {
                    if let Some(oldest) =
                        entries.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k)
                    {
                        entries.remove(&oldest);
                    }
                }
            }
            let e = entries.entry(key).or_insert(Entry {
                failures: 0,
                since: now,
            });
            if now.duration_since(e.since) >= self.window {
                *e = Entry {
                    failures: 0,
                    since: now,
                };
            }
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// A successful login clears the username's count (not the address's).
    pub(crate) fn succeeded(&self, username: &str) {
        self.lock().remove(&user_key(username));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Usernames are case-insensitive; keep a hash, not the name, so the table's size does not
/// depend on what attackers type.
fn user_key(username: &str) -> Key {
    use std::hash::{BuildHasher, Hasher};
    // A fixed-key hasher: the same name maps to the same key for the life of the process.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(username.to_ascii_lowercase().as_bytes());
    Key::User(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn username_limit_holds_across_addresses_and_case() {
        let t = LoginThrottle::new(1000);
        for i in 0..PER_USER {
            assert!(t.check("alice", if i % 2 == 0 { A } else { B }).is_ok());
            t.failed(
                if i % 2 == 0 { "alice" } else { "ALICE" },
                if i % 2 == 0 { A } else { B },
            );
        }
        assert!(t.check("alice", B).is_err());
        assert!(t.check("Alice", A).is_err());
        assert!(t.check("bob", B).is_ok());
    }

    #[test]
    fn address_limit_covers_many_usernames() {
        let t = LoginThrottle::new(1000);
        for i in 0..PER_ADDR {
            t.failed(&format!("user{i}"), A);
        }
        assert!(t.check("someone", A).is_err());
        assert!(t.check("someone", B).is_ok());
    }

    #[test]
    fn the_window_passes_and_success_clears() {
        let t = LoginThrottle::new(1000).with_window(Duration::from_millis(50));
        for _ in 0..PER_USER {
            t.failed("carol", A);
        }
        assert!(t.check("carol", A).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("carol", A).is_ok());
        for _ in 0..PER_USER {
            t.failed("dave", B);
        }
        t.succeeded("dave");
        assert!(t.check("dave", B).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(64);
        for i in 0..10_000u32 {
            t.failed(&format!("u{i}"), IpAddr::from(i.to_be_bytes()));
        }
        assert!(t.lock().len() <= 64);
    }
}

//! Token buckets: `rate` tokens per second, up to `burst` saved; one per connection and
//! kind of request, and one per user shared by all their connections and the HTTP API.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chatgroup_protocol::UserId;

/// Milliseconds since the first bucket was made. Four bytes where an `Instant` takes
/// sixteen: every chat session holds several buckets, and idle sessions are many. The
/// count wraps after 49.7 days; differences taken with `wrapping_sub` stay right across the
/// wrap, and a bucket untouched for longer than that merely refills less than fully once.
fn clock_ms() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Truncation is the wrap described above.
    start.elapsed().as_millis() as u32
}

/// A rate limit: tokens per second with a burst allowance. Eight bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f32,
    last_ms: u32,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: u32) -> Self {
        Self {
            tokens: burst as f32,
            last_ms: clock_ms(),
        }
    }

    /// How long since the bucket was last used.
    fn idle_for(&self) -> Duration {
        Duration::from_millis(u64::from(clock_ms().wrapping_sub(self.last_ms)))
    }

    /// Takes a token if there is one; otherwise how long until there will be.
    pub(crate) fn take(&mut self, rate: u32, burst: u32) -> Result<(), Duration> {
        let now = clock_ms();
        let rate = rate.max(1) as f32;
        let elapsed = now.wrapping_sub(self.last_ms) as f32 / 1000.0;
        self.last_ms = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst.max(1) as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f32((1.0 - self.tokens) / rate))
        }
    }
}

/// Past this many users tracked, buckets that have refilled completely are dropped (a full
/// bucket is what a new user gets anyway), so the table stays as large as the active users.
const PER_USER_TRIM: usize = 4096;

/// One bucket per user, shared by all of that user's connections and HTTP requests.
#[derive(Debug, Default)]
pub(crate) struct PerUser {
    buckets: Mutex<HashMap<UserId, TokenBucket>>,
}

impl PerUser {
    /// Takes a token from `user`'s bucket; otherwise how long until there will be one.
    pub(crate) fn take(&self, user: UserId, rate: u32, burst: u32) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PER_USER_TRIM {
            let refill = Duration::from_secs_f32(burst.max(1) as f32 / rate.max(1) as f32);
            buckets.retain(|_, b| b.idle_for() < refill);
        }
        buckets
            .entry(user)
            .or_insert_with(|| TokenBucket::new(burst))
            .take(rate, burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(5);
        for _ in 0..5 {
            assert!(b.take(10, 5).is_ok());
        }
        let wait = b.take(10, 5).unwrap_err();
        assert!(wait <= Duration::from_millis(101), "{wait:?}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.take(10, 5).is_ok());
        assert_eq!(std::mem::size_of::<TokenBucket>(), 8);
    }

    #[test]
    fn a_users_bucket_is_shared_and_trimmed() {
        let p = PerUser::default();
        assert!(p.take(UserId(1), 1, 2).is_ok());
        assert!(p.take(UserId(1), 1, 2).is_ok());
        assert!(p.take(UserId(1), 1, 2).is_err());
        assert!(p.take(UserId(2), 1, 2).is_ok());
        for u in 3..(PER_USER_TRIM as u64 + 10) {
            let _ = p.take(UserId(u), 1_000_000, 1);
        }
        // At a million per second every bucket refills at once: all were dropped, user 1's
        // too (a full bucket is what it would have again anyway).
        let len = p.buckets.lock().unwrap().len();
        assert!(len < PER_USER_TRIM, "{len}");
        assert!(p.take(UserId(1), 1, 2).is_ok());
    }
}

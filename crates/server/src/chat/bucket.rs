//! A token bucket: `rate` tokens per second, up to `burst` saved.

use std::time::{Duration, Instant};

/// Messages-per-second limit for one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: u32) -> Self {
        Self {
            tokens: burst as f32,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one; otherwise how long until there will be.
    pub(crate) fn take(&mut self, rate: u32, burst: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = rate.max(1) as f32;
        let elapsed = now.duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst.max(1) as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f32((1.0 - self.tokens) / rate))
        }
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
    }
}

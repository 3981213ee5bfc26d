//! Accounts and tokens: password hashing, login throttling, access tokens (JWT) and refresh
//! tokens. The HTTP handlers in `http::api` and the chat session use this; the store keeps
//! only password hashes and refresh-token hashes.

pub(crate) mod jwt;
pub(crate) mod password;
pub(crate) mod rules;
pub(crate) mod throttle;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chatgroup_protocol::Millis;
use sha2::{Digest as _, Sha256};

pub(crate) use jwt::{Jwt, TokenError};
pub(crate) use password::Passwords;
pub(crate) use throttle::LoginThrottle;

/// Everything authentication needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) jwt: Jwt,
    pub(crate) passwords: Passwords,
    pub(crate) throttle: LoginThrottle,
    /// How long a refresh token lives.
    pub(crate) refresh_ttl: Duration,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A new refresh token: 32 random bytes, URL-safe base64. Returned to the client once;
/// only its hash is stored.
pub(crate) fn new_refresh_token() -> Option<(String, [u8; 32])> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).ok()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_refresh_token(&token);
    Some((token, hash))
}

/// What the store keeps of a refresh token: SHA-256 of its text. The token has 256 bits of
/// entropy, so a plain hash (no salt, no stretching) is enough to make a stolen database
/// useless for logging in.
pub(crate) fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token().unwrap();
        let (b, hb) = new_refresh_token().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_refresh_token(&a), ha);
        assert_eq!(a.len(), 43);
    }
}

//! Password hashing with argon2id, off the async threads, a bounded number at a time.
//!
//! Each hash costs about 19 MiB and tens of milliseconds of one core by design (OWASP's
//! argon2id parameters, the crate's defaults), so the number running at once is capped: a
//! burst of logins queues instead of exhausting memory or starving the chat traffic.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub(crate) struct Passwords {
    slots: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user does not exist, so an
    /// unknown username costs the same time as a wrong password.
    decoy: Arc<str>,
}

/// Hashing failed (out of memory, no randomness); nothing the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed")]
pub(crate) struct HashFailed;

impl Passwords {
    /// At most `concurrent` hashes at a time.
    pub(crate) fn new(concurrent: usize) -> Result<Self, HashFailed> {
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|_| HashFailed)?;
        let decoy = hash_now(&random)?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(concurrent.max(1))),
            decoy: decoy.into(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=…`) for a new password.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, HashFailed> {
        let _slot = self.slots.acquire().await.map_err(|_| HashFailed)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_now(password.as_bytes()))
            .await
            .map_err(|_| HashFailed)?
    }

    /// Whether `password` matches `stored`; with `None` (no such user) it spends the same
    /// time and answers `false`.
    pub(crate) async fn verify(&self, password: &str, stored: Option<String>) -> bool {
        let Ok(_slot) = self.slots.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        let decoy = self.decoy.clone();
        tokio::task::spawn_blocking(move || {
            let exists = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&decoy);
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), hash)
                .is_ok();
            ok && exists
        })
        .await
        .unwrap_or(false)
    }
}

fn hash_now(password: &[u8]) -> Result<String, HashFailed> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|_| HashFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Passwords::new(2).unwrap();
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(p.verify("correct horse", Some(h.clone())).await);
        assert!(!p.verify("wrong horse", Some(h.clone())).await);
        assert!(!p.verify("correct horse", None).await);
        assert!(!p.verify("x", Some("not a hash".into())).await);
        let again = p.hash("correct horse").await.unwrap();
        assert_ne!(h, again, "every hash has its own salt");
    }
}

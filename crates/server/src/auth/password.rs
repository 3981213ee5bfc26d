//! Password hashing with argon2id, on a small pool of dedicated threads.
//!
//! Each hash costs about 19 MiB and tens of milliseconds of one core by design (OWASP's
//! argon2id parameters, the crate's defaults), so only `--password-hashers` run at once: a
//! burst of logins queues instead of exhausting memory or starving the chat traffic. The
//! threads are dedicated (not tokio's blocking pool) because the allocator keeps each
//! thread's freed 19 MiB for reuse: on the blocking pool, whose threads come and go by the
//! hundred, a burst of registrations left hundreds of megabytes resident; here the memory
//! held is bounded by the number of hashers.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{mpsc, oneshot};

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a hashing thread before callers wait too.
const QUEUE: usize = 1024;

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub(crate) struct Passwords {
    jobs: mpsc::Sender<Job>,
    /// A hash of a random password, verified against when the user does not exist, so an
    /// unknown username costs the same time as a wrong password.
    decoy: Arc<str>,
}

/// Hashing failed (out of memory, no randomness); nothing the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed")]
pub(crate) struct HashFailed;

impl Passwords {
    /// Starts `threads` hashing threads; they end when the last clone is dropped.
    pub(crate) fn new(threads: usize) -> Result<Self, HashFailed> {
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || loop {
                    // One thread waits in `recv` holding the lock, the others for the lock.
                    let job = match queue.lock() {
                        Ok(mut q) => q.blocking_recv(),
                        Err(_) => None,
                    };
                    match job {
                        Some(job) => job(),
                        None => break,
                    }
                })
                .map_err(|_| HashFailed)?;
        }
        // The decoy is hashed on a hashing thread too, so no other thread keeps a work area.
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|_| HashFailed)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(hash_now(&random));
        });
        jobs.try_send(job).map_err(|_| HashFailed)?;
        let decoy = rx.recv().map_err(|_| HashFailed)??;
        Ok(Self {
            jobs,
            decoy: decoy.into(),
        })
    }

    /// Runs `work` on a hashing thread.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashFailed> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs.send(job).await.map_err(|_| HashFailed)?;
        rx.await.map_err(|_| HashFailed)
    }

    /// The PHC string (`$argon2id$v=19$m=…`) for a new password.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, HashFailed> {
        let password = password.to_owned();
        self.run(move || hash_now(password.as_bytes())).await?
    }

    /// Whether `password` matches `stored`; with `None` (no such user) it spends the same
    /// time and answers `false`.
    pub(crate) async fn verify(&self, password: &str, stored: Option<String>) -> bool {
        let password = password.to_owned();
        let decoy = self.decoy.clone();
        self.run(move || {
            let exists = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&decoy);
            verify_now(password.as_bytes(), hash) && exists
        })
        .await
        .unwrap_or(false)
    }
}

/// Runs `f` with this thread's argon2 work area, at least `blocks` long. Reused from one
/// hash to the next, so a hashing thread holds one work area for its whole life instead of
/// leaving a freed 19 MiB chunk to the allocator after every hash.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        f(&mut memory[..blocks])
    })
}

/// A new argon2id hash of `password` with the crate's default (OWASP) parameters and a
/// random 16-byte salt, as a PHC string.
fn hash_now(password: &[u8]) -> Result<String, HashFailed> {
    let params = Params::default();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| HashFailed)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_memory(params.block_count(), |blocks| {
        hasher.hash_password_into_with_memory(password, &salt, &mut out, blocks)
    })
    .map_err(|_| HashFailed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| HashFailed)?,
        salt: Some(Salt::new(&salt).map_err(|_| HashFailed)?),
        hash: Some(Output::new(&out).map_err(|_| HashFailed)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (whatever argon2 parameters it was
/// made with). The comparison of outputs is constant-time (`Output`'s equality).
fn verify_now(password: &[u8], stored: &str) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(phc.algorithm.as_str()),
        Params::try_from(&phc),
    ) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let hasher = Argon2::new(algorithm, version, params.clone());
    let computed = with_memory(params.block_count(), |blocks| {
        hasher.hash_password_into_with_memory(password, salt.as_ref(), &mut out, blocks)
    });
    computed.is_ok() && Output::new(&out).is_ok_and(|out| out == *expected)
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
        // Hashes made by the argon2 crate's own PHC API (other parameters) still verify.
        let theirs = {
            use argon2::password_hash::PasswordHasher as _;
            let params = Params::new(8 * 1024, 1, 1, None).unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"correct horse")
                .unwrap()
                .to_string()
        };
        assert!(p.verify("correct horse", Some(theirs.clone())).await);
        assert!(!p.verify("correct horsf", Some(theirs)).await);
        let again = p.hash("correct horse").await.unwrap();
        assert_ne!(h, again, "every hash has its own salt");
    }
}

//! Password hashing with a bounded cost: at most `workers` argon2 computations at once, at
//! most `queue` more waiting, each in memory the pool owns.
//!
//! Why: an argon2id hash with the default parameters fills 19 MiB. Run on tokio's blocking
//! pool (up to 512 threads) a login burst made hundreds of them at once, and glibc kept the
//! freed blocks in per-thread arenas: one UCServer stayed at 1.8 GB resident after 1,000 user
//! creations and 500 logins. Here each worker slot owns one block buffer that is reused for
//! every hash, so the memory for hashing is `workers × 19 MiB`, allocated once, whatever the
//! load; a caller beyond the queue is told to come back (`Busy`) instead of waiting without end.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;

/// How many hashes may run and wait at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordLimits {
    /// Hashes computed at once (each holds one 19 MiB buffer).
    pub workers: usize,
    /// Callers allowed to wait for a worker; one more is refused with `Busy`.
    pub queue: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("too many password checks are under way; try again in {retry_after_ms} ms")]
    Busy { retry_after_ms: u64 },
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<PasswordError> for crate::error::AppError {
    fn from(error: PasswordError) -> Self {
        use shared::api::ErrorCode;
        match error {
            PasswordError::Busy { retry_after_ms } => {
                let mut busy = Self::new(
                    ErrorCode::TooManyAttempts,
                    format!(
                        "too many sign-ins are being checked at once; try again in {retry_after_ms} ms"
                    ),
                );
                busy.0.retry_after_ms = Some(retry_after_ms);
                busy
            }
            PasswordError::Failed(detail) => {
                tracing::error!(%detail, "password hashing failed");
                Self::new(ErrorCode::Internal, "password hashing failed")
            }
        }
    }
}

/// The bounded hashing pool. One per server.
pub struct PasswordPool {
    limits: PasswordLimits,
    /// One permit per worker slot.
    slots: Semaphore,
    /// Callers holding or waiting for a slot (the queue bound is checked against it).
    admitted: AtomicUsize,
    /// The block buffers of idle slots; a slot takes one and gives it back. Filled lazily, so
    /// a server that never checks a password never allocates one.
    buffers: Mutex<Vec<Vec<Block>>>,
    /// Smoothed duration of one hash (µs), to tell a refused caller how long to wait.
    average_us: AtomicU64,
}

/// The hashing parameters of new hashes (argon2id, v0x13, 19 MiB, 2 passes, 1 lane).
fn params() -> Params {
    Params::DEFAULT
}

impl PasswordPool {
    pub fn new(limits: PasswordLimits) -> Self {
        let limits = PasswordLimits {
            workers: limits.workers.max(1),
            queue: limits.queue,
        };
        Self {
            limits,
            slots: Semaphore::new(limits.workers),
            admitted: AtomicUsize::new(0),
            buffers: Mutex::new(Vec::new()),
            average_us: AtomicU64::new(50_000),
        }
    }

    /// A new PHC hash of `password` (argon2id with a random salt).
    /// How many hashes run at once.
    pub fn workers(&self) -> usize {
        self.limits.workers
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |memory| hash_with(&password, memory)).await?
    }

    /// Whether `password` matches `hash`. Without a hash (an unknown user) the same work is
    /// done and the answer is false, so timing does not tell which names exist.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.run(move |memory| match hash {
            Some(hash) => verify_with(&password, &hash, memory),
            None => {
                let _ = hash_with(&password, memory);
                false
            }
        })
        .await
    }

    /// Runs `work` on the blocking pool with a slot's buffer, or refuses when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let admitted = self.admitted.fetch_add(1, Ordering::AcqRel);
        let _admission = Admission(&self.admitted);
        if admitted >= self.limits.workers + self.limits.queue {
            return Err(PasswordError::Busy {
                retry_after_ms: self.retry_after_ms(),
            });
        }
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|_| PasswordError::Failed("the hashing pool is closed".into()))?;
        let mut memory = self.buffers.lock().unwrap().pop().unwrap_or_default();
        let started = Instant::now();
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = work(&mut memory);
            (result, memory)
        })
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()))?;
        self.buffers.lock().unwrap().push(memory);
        let took = started.elapsed().as_micros() as u64;
        let average = self.average_us.load(Ordering::Relaxed);
        self.average_us
            .store((average * 7 + took) / 8, Ordering::Relaxed);
        Ok(result)
    }

    /// About how long until a slot frees up for a caller refused now.
    fn retry_after_ms(&self) -> u64 {
        let waiting = self.limits.workers + self.limits.queue;
        let rounds = waiting.div_ceil(self.limits.workers) as u64;
        (self.average_us.load(Ordering::Relaxed) * rounds / 1000).clamp(100, 10_000)
    }

    /// Callers holding or waiting for a slot now (for tests and metrics).
    pub fn in_use(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }
}

/// Leaves the admitted count when dropped (also on cancellation).
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Grows `memory` to `blocks` blocks (once per buffer: later hashes reuse it).
fn memory_for(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

fn hash_with(password: &str, memory: &mut Vec<Block>) -> Result<String, PasswordError> {
    hash_with_params(password, memory, params())
}

/// The hash of a secret the server made up with at least 128 random bits (the passwords a
/// bulk import makes for its new users): stretching protects guessable passwords and adds
/// nothing against 2^128 guesses, so argon2id runs with its least cost (8 KiB, one pass:
/// ~10 µs in a release build, so 10,000 new users hash in well under a second) instead of
/// 19 MiB. The PHC string carries the parameters, so sign-in checks
/// it like any other; a password the user sets later gets the full cost.
pub fn hash_random_secret(secret: &str) -> Result<String, PasswordError> {
    debug_assert!(secret.len() >= 32, "at least 128 bits as hex");
    let params = Params::new(8, 1, 1, None).map_err(|e| PasswordError::Failed(e.to_string()))?;
    hash_with_params(secret, &mut Vec::new(), params)
}

fn hash_with_params(
    password: &str,
    memory: &mut Vec<Block>,
    params: Params,
) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Failed(e.to_string());
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            memory_for(memory, params.block_count()),
        )
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

/// Largest memory cost accepted from a stored hash (KiB), so a hand-made hash in SQL cannot
/// make a login allocate without bound.
const MAX_STORED_M_COST: u32 = 256 * 1024;

fn verify_with(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = Version::try_from(parsed.version.unwrap_or(Version::V0x13.into())) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_M_COST {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            memory_for(memory, blocks),
        )
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| &computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn hashes_verify_and_interoperate_with_the_plain_argon2_api() {
        let pool = PasswordPool::new(PasswordLimits {
            workers: 1,
            queue: 4,
        });
        let hash = pool.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            pool.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("wrong".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify("x".into(), None).await.unwrap());
        assert!(
            !pool
                .verify("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
        // Hashes stored before this pool existed (auth::hash_password) still verify, and the
        // other way round.
        let old = crate::auth::hash_password("battery staple").unwrap();
        assert!(
            pool.verify("battery staple".into(), Some(old))
                .await
                .unwrap()
        );
        assert!(crate::auth::verify_password("correct horse", &hash));
        assert_eq!(pool.buffers.lock().unwrap().len(), 1, "one buffer, reused");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_callers_are_refused_with_a_wait() {
        let pool = Arc::new(PasswordPool::new(PasswordLimits {
            workers: 1,
            queue: 1,
        }));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                pool.verify(format!("p{i}"), None).await
            }));
        }
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(false) => {}
                Err(PasswordError::Busy { retry_after_ms }) => {
                    assert!(retry_after_ms >= 100);
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            refused >= 1,
            "a burst of 6 on 1 worker + 1 waiting refuses some"
        );
        assert_eq!(pool.in_use(), 0);
        assert!(pool.buffers.lock().unwrap().len() <= 1);
    }
}

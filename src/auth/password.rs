//! Password hashing with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing takes tens of milliseconds of CPU on purpose, so it runs on tokio's
//! blocking pool (`spawn_blocking`), never on the threads that serve requests.

use std::sync::LazyLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A real hash of a random password, verified against when the username does not
/// exist: an unknown user costs the same work as a wrong password, so response
/// times do not tell which usernames exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let secret = crate::token::random();
    hash_blocking(&secret).expect("hashing a random password")
});

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?
        .to_string())
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// How many hashes may run at once: all cores but one, so that a burst of logins
/// queues up instead of taking every core away from page views.
static HASHING_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cores.saturating_sub(1).max(1))
});

/// Runs CPU-heavy work on the blocking pool, inside the caller's tracing span.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let _slot = HASHING_SLOTS.acquire().await?;
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let done = span.in_scope(work);
        crate::memory::return_freed_memory();
        done
    })
    .in_current_span()
    .await
    .map_err(|e| anyhow::anyhow!("password task failed: {e}"))
}

pub async fn hash_password(password: String) -> anyhow::Result<String> {
    blocking(move || hash_blocking(&password)).await?
}

/// Checks a password against a stored hash, or against [`DUMMY_HASH`] when there is
/// no user (and then always answers false).
pub async fn verify_password(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    blocking(move || match stored {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            verify_blocking(&password, &DUMMY_HASH);
            false
        }
    })
    .await
}

/// Computes the dummy hash at start, so the first unknown-user login is not slower.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
    crate::memory::return_freed_memory();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let phc = hash_password("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(phc))
            .await
            .unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }
}

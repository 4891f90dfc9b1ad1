//! Password hashing with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing takes tens of milliseconds of CPU on purpose, so it runs on tokio's
//! blocking pool (`spawn_blocking`), never on the threads that serve requests.

use std::sync::LazyLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tracing::Instrument;

use super::queue::{HashingLine, Lane};

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

/// A password check that could not be done: the line for the hashing slots was
/// full ([`super::queue`]), or the work itself failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Busy(#[from] super::queue::Refused),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A full line is the visitor's 429 page, asking to try again in a moment.
impl From<CheckError> for crate::error::AppError {
    fn from(err: CheckError) -> Self {
        match err {
            CheckError::Busy(refused) => {
                tracing::warn!(%refused, "password check refused");
                crate::error::AppError::TooManyRequests {
                    retry_after: std::time::Duration::from_secs(1),
                    message: "The shop is checking many passwords right now, so yours was not \
                              checked and nothing was changed. Please try again in a moment."
                        .to_owned(),
                }
            }
            CheckError::Failed(cause) => crate::error::AppError::Internal(cause),
        }
    }
}

/// Runs CPU-heavy work on the blocking pool, inside the caller's tracing span,
/// once `lane` has its turn at a hashing slot.
async fn blocking<T: Send + 'static>(
    line: &HashingLine,
    lane: Lane,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CheckError> {
    let _slot = line.slot(lane).await?;
    let span = tracing::Span::current();
    Ok(tokio::task::spawn_blocking(move || {
        let done = span.in_scope(work);
        crate::memory::return_freed_memory();
        done
    })
    .in_current_span()
    .await
    .map_err(|e| anyhow::anyhow!("password task failed: {e}"))?)
}

/// Hashes a new password (registration, password change): never refused.
pub async fn hash_password(line: &HashingLine, password: String) -> anyhow::Result<String> {
    match blocking(line, Lane::NewPassword, move || hash_blocking(&password)).await {
        Ok(hashed) => hashed,
        Err(CheckError::Failed(e)) => Err(e),
        Err(CheckError::Busy(refused)) => Err(anyhow::anyhow!(refused)),
    }
}

/// Checks a password against a stored hash, or against [`DUMMY_HASH`] when there is
/// no user (and then always answers false), in the line of the client's network
/// ([`crate::auth::throttle::client_network`]).
pub async fn verify_password(
    line: &HashingLine,
    password: String,
    stored: Option<String>,
    network: String,
) -> Result<bool, CheckError> {
    blocking(line, Lane::Network(network), move || match stored {
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
        let line = HashingLine::new();
        let phc = hash_password(&line, "correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let net = || "192.0.2.1".to_owned();
        assert!(
            verify_password(&line, "correct horse".into(), Some(phc.clone()), net())
                .await
                .unwrap()
        );
        assert!(
            !verify_password(&line, "wrong horse".into(), Some(phc), net())
                .await
                .unwrap()
        );
        assert!(!verify_password(&line, "anything".into(), None, net())
            .await
            .unwrap());
    }
}

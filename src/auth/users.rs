//! The users table.

use std::fmt;

use sqlx::SqlitePool;

use super::{password, Username};

#[derive(Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

/// Never prints the hash, not even in a debug log.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

pub async fn find_by_username(db: &SqlitePool, username: &Username) -> sqlx::Result<Option<User>> {
    sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username = $1")
        .bind(username.as_str())
        .fetch_optional(db)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("that username is taken")]
    UsernameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hashing(#[from] anyhow::Error),
}

/// Inserts a user; the UNIQUE constraint decides races between two registrations.
/// `submission` is the registration form's one-time id, kept to recognise a retry.
pub async fn create(
    db: &SqlitePool,
    username: &Username,
    password: String,
    submission: Option<&str>,
) -> Result<User, CreateUserError> {
    let password_hash = password::hash_password(password).await?;
    let result = sqlx::query_as(
        "INSERT INTO users (username, password_hash, submission) VALUES ($1, $2, $3) \
         RETURNING id, username, password_hash",
    )
    .bind(username.as_str())
    .bind(&password_hash)
    .bind(submission)
    .fetch_one(db)
    .await;
    match result {
        Ok(user) => Ok(user),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(CreateUserError::UsernameTaken)
        }
        Err(e) => Err(e.into()),
    }
}

/// The account a registration form created, if this submission id created one.
pub async fn created_by_submission(
    db: &SqlitePool,
    submission: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT username FROM users WHERE submission = $1")
        .bind(submission)
        .fetch_optional(db)
        .await
}

pub async fn find_by_id(db: &SqlitePool, id: i64) -> sqlx::Result<Option<User>> {
    sqlx::query_as("SELECT id, username, password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// When the account was created (unix seconds).
pub async fn created_at(db: &SqlitePool, id: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Stores a new password hash; false when the user no longer exists.
pub async fn set_password_hash(db: &SqlitePool, id: i64, hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the account row; false when it was already gone.
pub async fn delete(db: &SqlitePool, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The demo account named in the README, created once; harmless when it exists.
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-pass-123";

pub async fn ensure_demo_user(db: &SqlitePool) -> anyhow::Result<()> {
    let username = Username::parse(DEMO_USERNAME).map_err(|e| anyhow::anyhow!("{e}"))?;
    if find_by_username(db, &username).await?.is_some() {
        return Ok(());
    }
    match create(db, &username, DEMO_PASSWORD.to_owned(), None).await {
        Ok(_) | Err(CreateUserError::UsernameTaken) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

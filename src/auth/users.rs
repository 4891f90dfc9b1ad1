//! The users table.

use std::fmt;

use crate::db::Db;

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

pub async fn find_by_username(db: &Db, username: &Username) -> sqlx::Result<Option<User>> {
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
pub async fn create(
    db: &Db,
    username: &Username,
    password: String,
) -> Result<User, CreateUserError> {
    let password_hash = password::hash_password(password).await?;
    let result = sqlx::query_as("INSERT INTO users (username, password_hash) VALUES ($1, $2) RETURNING id, username, password_hash")
        .bind(username.as_str())
        .bind(&password_hash)
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

/// The demo account named in the README, created once; harmless when it exists.
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-pass-123";

pub async fn ensure_demo_user(db: &Db) -> anyhow::Result<()> {
    let username = Username::parse(DEMO_USERNAME).map_err(|e| anyhow::anyhow!("{e}"))?;
    if find_by_username(db, &username).await?.is_some() {
        return Ok(());
    }
    match create(db, &username, DEMO_PASSWORD.to_owned()).await {
        Ok(_) | Err(CreateUserError::UsernameTaken) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

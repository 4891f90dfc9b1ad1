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
/// `submission` is the registration form's one-time id, kept to recognise a retry.
///
/// In an explicit transaction whose COMMIT is checked: on SQLite an autocommit
/// `INSERT … RETURNING` hands back its row before the statement's implicit commit,
/// and a commit that then fails (`SQLITE_FULL` on a full disk) is reported to
/// nobody — the caller would log in a user whose row was never stored, and the
/// next account would be given the same id. Here the user exists when this
/// returns `Ok`, and not otherwise.
pub async fn create(
    db: &Db,
    line: &super::queue::HashingLine,
    username: &Username,
    password: String,
    submission: Option<&str>,
) -> Result<User, CreateUserError> {
    let password_hash = password::hash_password(line, password).await?;
    let mut connection = db.acquire().await?;
    let result = insert_user(&mut connection, username, &password_hash, submission).await;
    if matches!(result, Err(CreateUserError::Database(_))) {
        crate::db::discard(connection).await;
    }
    result
}

async fn insert_user(
    connection: &mut sqlx::AnyConnection,
    username: &Username,
    password_hash: &str,
    submission: Option<&str>,
) -> Result<User, CreateUserError> {
    use sqlx::Connection;
    let mut tx = connection.begin().await?;
    let result = sqlx::query_as(
        "INSERT INTO users (username, password_hash, submission) VALUES ($1, $2, $3) \
         RETURNING id, username, password_hash",
    )
    .bind(username.as_str())
    .bind(password_hash)
    .bind(submission)
    .fetch_one(&mut *tx)
    .await;
    let user = match result {
        Ok(user) => user,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(CreateUserError::UsernameTaken)
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(user)
}

/// The account a registration form created, if this submission id created one.
pub async fn created_by_submission(db: &Db, submission: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT username FROM users WHERE submission = $1")
        .bind(submission)
        .fetch_optional(db)
        .await
}

pub async fn find_by_id(db: &Db, id: i64) -> sqlx::Result<Option<User>> {
    sqlx::query_as("SELECT id, username, password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// When the account was created (unix seconds).
pub async fn created_at(db: &Db, id: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Stores a new password hash; false when the user no longer exists. Committed
/// explicitly, as every write here (see [`create`]).
pub async fn set_password_hash(db: &Db, id: i64, hash: &str) -> sqlx::Result<bool> {
    let query = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id);
    write_one(db, query).await
}

/// Deletes the account row; false when it was already gone. Its id is never
/// given to another account (AUTOINCREMENT on SQLite, an identity on Postgres).
pub async fn delete(db: &Db, id: i64) -> sqlx::Result<bool> {
    write_one(db, sqlx::query("DELETE FROM users WHERE id = $1").bind(id)).await
}

/// Runs one statement in a transaction whose COMMIT is checked; true when it
/// changed one row. A connection whose transaction failed is closed, not reused.
async fn write_one<'q>(
    db: &Db,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> sqlx::Result<bool> {
    use sqlx::Connection;
    let mut connection = db.acquire().await?;
    let result = async {
        let mut tx = connection.begin().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
    .await;
    if result.is_err() {
        crate::db::discard(connection).await;
    }
    result
}

/// The demo account named in the README, created once; harmless when it exists.
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-pass-123";

pub async fn ensure_demo_user(db: &Db) -> anyhow::Result<()> {
    let username = Username::parse(DEMO_USERNAME).map_err(|e| anyhow::anyhow!("{e}"))?;
    if find_by_username(db, &username).await?.is_some() {
        return Ok(());
    }
    match create(
        db,
        &super::queue::HashingLine::new(),
        &username,
        DEMO_PASSWORD.to_owned(),
        None,
    )
    .await
    {
        Ok(_) | Err(CreateUserError::UsernameTaken) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

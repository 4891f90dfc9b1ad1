//! What a write must reach before the shop tells the shopper it was done.
//!
//! Redis replicates asynchronously: a primary answers "OK" before its replica has
//! the write, and a primary killed in that moment takes the write with it — the
//! replica the sentinels promote never had it. `WAIT n ms` (sent right behind the
//! write, on the same connection, so both travel in one round trip) answers how
//! many replicas hold everything this connection wrote. Only then is the write
//! acknowledged; a write no replica confirmed in time is "could not confirm"
//! ([`StoreError::Unknown`]): it is on the primary, and may or may not survive it.
//!
//! Promised (docs/RELIABILITY.md): with `REDIS_WAIT_REPLICAS=1` (the default for a
//! Sentinel URL) an acknowledged cart or session write is on two servers, and the
//! sentinels promote a replica that has it. `WAIT` does not make Redis strongly
//! consistent — a failover that promotes a replica which had not confirmed can still
//! lose it (the shopper was told "could not confirm" for exactly those writes).

use std::future::Future;
use std::time::Duration;

use fred::error::{Error, ErrorKind};
use fred::interfaces::{ClientLike, LuaInterface};
use fred::prelude::{Client, Pool};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, FromValue, MultipleValues};

use super::{bounded, StoreError};

/// Connections kept for writes that wait for their replicas. Redis holds a
/// connection's next commands while a `WAIT` on it is pending, so confirmed writes
/// get their own connections, several of them, and the reads of every page keep
/// the shared one (docs/PERFORMANCE.md has the cost).
pub const WRITERS: usize = 8;

/// What a write must reach before it is acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Durability {
    confirm: Option<Confirm>,
}

#[derive(Debug, Clone)]
struct Confirm {
    replicas: u32,
    timeout: Duration,
    /// The connections confirmed writes are sent on ([`WRITERS`]).
    writers: Pool,
}

/// How many replicas must confirm: the setting, or one behind Sentinel (where a
/// failover would otherwise lose what the promoted replica had not received yet)
/// and none elsewhere.
pub fn replicas_for(url: &str, setting: Option<u32>) -> u32 {
    let sentinel = super::topology::Mode::of_url(url) == super::topology::Mode::Sentinel;
    setting.unwrap_or(u32::from(sentinel))
}

impl Durability {
    /// The primary's answer is enough (a single server; the default outside Sentinel).
    pub fn primary() -> Self {
        Durability::default()
    }

    /// Writes confirmed by `replicas` replicas within `timeout`, sent on their own
    /// [`WRITERS`] connections to `url`.
    pub async fn replicas(
        url: &str,
        replicas: u32,
        timeout: Duration,
        redis_timeout: Duration,
    ) -> anyhow::Result<Self> {
        if replicas == 0 {
            return Ok(Durability::primary());
        }
        let writers = super::connect_pool(url, redis_timeout, WRITERS).await?;
        Ok(Durability {
            confirm: Some(Confirm {
                replicas,
                timeout,
                writers,
            }),
        })
    }

    /// "the primary's answer" / "1 replica within 100 ms", for logs and `/readyz`.
    pub fn describe(&self) -> String {
        match &self.confirm {
            None => "the primary's answer".to_owned(),
            Some(confirm) => describe(confirm.replicas, confirm.timeout),
        }
    }

    /// Runs a plain write (a `SET`), confirmed by `WAIT` in the same round trip.
    /// `write` is sent on the client it is given: `client`, or one of the writers.
    /// `key` is the key the write touches: in a Cluster, `WAIT` must go to its node.
    pub async fn write<'a, T, F, Fut>(
        &'a self,
        client: &'a Client,
        key: &str,
        write: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let Some(confirm) = &self.confirm else {
            return bounded(write(client)).await.map_err(StoreError::write);
        };
        let writer = confirm.writer()?;
        let both = async {
            let (written, confirmed) = tokio::join!(write(writer), confirm.wait(writer, key));
            Ok((written, confirmed))
        };
        let (written, confirmed) = bounded(both).await.map_err(StoreError::write)?;
        let value = written.map_err(StoreError::write)?;
        confirm.check(confirmed)?;
        Ok(value)
    }

    /// Runs a script that writes (loading it first if Redis does not have it, as
    /// after a failover), confirmed by `WAIT` in the same round trip.
    pub async fn script<R, V>(
        &self,
        script: &Script,
        client: &Client,
        keys: Vec<String>,
        args: V,
    ) -> Result<R, StoreError>
    where
        R: FromValue,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<Error> + Send,
    {
        let Some(confirm) = &self.confirm else {
            return bounded(script.evalsha_with_reload(client, keys, args))
                .await
                .map_err(StoreError::write);
        };
        let writer = confirm.writer()?;
        let args: MultipleValues = args.try_into().map_err(Into::into)?;
        let first_key = keys.first().cloned().unwrap_or_default();
        let mut loaded = false;
        loop {
            // The same connection, in this order: WAIT counts the replicas that hold
            // everything written on it before, this script included.
            let run =
                writer.evalsha::<R, _, _, _>(script.sha1().clone(), keys.clone(), args.clone());
            // On the heap, as `bounded` puts a command: inline, these two commands'
            // futures (~10 KB) would make every caller's future that large.
            let (written, confirmed) =
                Box::pin(async { tokio::join!(run, confirm.wait(writer, &first_key)) }).await;
            match written {
                Err(err) if !loaded && err.details().starts_with("NOSCRIPT") => {
                    // Nothing ran; the WAIT confirmed nothing of ours. Load, run again.
                    bounded(script.load(writer))
                        .await
                        .map_err(StoreError::from)?;
                    loaded = true;
                }
                Err(err) => return Err(StoreError::write(err)),
                Ok(value) => {
                    confirm.check(confirmed)?;
                    return Ok(value);
                }
            }
        }
    }
}

impl Confirm {
    /// The next writer connection, only while it is connected (as [`super::connected`]).
    fn writer(&self) -> Result<&Client, StoreError> {
        super::connected(&self.writers)
    }

    /// `WAIT replicas timeout`, sent as a pipelined command: fred holds back
    /// everything behind a command it knows blocks, and this one must travel
    /// right behind the write. Redis itself keeps the connection's order.
    async fn wait(&self, client: &Client, key: &str) -> Result<i64, Error> {
        let hash = if client.is_clustered() {
            ClusterHash::Custom(fred::util::redis_keyslot(key.as_bytes()))
        } else {
            ClusterHash::Random
        };
        let command = CustomCommand::new_static("WAIT", hash, false);
        client
            .custom(
                command,
                vec![
                    i64::from(self.replicas),
                    self.timeout.as_millis().max(1) as i64,
                ],
            )
            .await
    }

    fn check(&self, confirmed: Result<i64, Error>) -> Result<(), StoreError> {
        match confirmed {
            Ok(n) if n >= i64::from(self.replicas) => Ok(()),
            Ok(n) => Err(StoreError::Unknown(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the write reached {n} replicas, not {}",
                    describe(self.replicas, self.timeout)
                ),
            ))),
            Err(err) => Err(StoreError::Unknown(err)),
        }
    }
}

fn describe(replicas: u32, timeout: Duration) -> String {
    format!(
        "{replicas} replica{} within {} ms",
        if replicas == 1 { "" } else { "s" },
        timeout.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_wait_for_one_replica_unless_told_otherwise() {
        let sentinel = "redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=shop";
        assert_eq!(replicas_for(sentinel, None), 1);
        assert_eq!(replicas_for(sentinel, Some(0)), 0);
        assert_eq!(replicas_for("redis://127.0.0.1:6379", None), 0);
        assert_eq!(replicas_for("redis-cluster://127.0.0.1:7000", Some(1)), 1);
    }

    #[test]
    fn describes_itself_for_the_operator() {
        assert_eq!(Durability::primary().describe(), "the primary's answer");
        assert_eq!(
            describe(1, Duration::from_millis(100)),
            "1 replica within 100 ms"
        );
        assert_eq!(
            describe(2, Duration::from_millis(250)),
            "2 replicas within 250 ms"
        );
    }
}

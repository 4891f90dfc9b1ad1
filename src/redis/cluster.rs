//! Redis Cluster, one connection per primary, chosen here by the key's slot.
//!
//! fred's cluster client routes by slot itself, but it has one task for all
//! nodes: when one primary dies, that task reconnects the whole cluster and every
//! command waits, whichever node its key lives on — one dead primary blacked out
//! every shopper for the whole failover. Here the cluster client only keeps the
//! slot map (it re-reads `CLUSTER SLOTS` while it reconnects, so the promoted
//! replica appears as soon as the cluster names it); commands go through one
//! plain connection per primary. A command whose primary is down fails at once
//! (nothing sent); the others are served as if nothing happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::interfaces::ClusterInterface;
use fred::prelude::{Builder, Client, ClientLike, Pool, ReconnectPolicy, Server, TcpConfig};
use fred::types::config::ServerConfig;

use super::StoreError;

#[derive(Debug)]
pub struct Nodes {
    /// fred's cluster client: the slot map, kept current by its reconnections.
    slots: Pool,
    timeout: Duration,
    /// One connection per primary seen so far.
    clients: Mutex<HashMap<Server, Client>>,
}

impl Nodes {
    /// Connects to every primary the cluster client knows of.
    pub async fn start(slots: Pool, timeout: Duration) -> anyhow::Result<Arc<Nodes>> {
        let nodes = Arc::new(Nodes {
            slots,
            timeout,
            clients: Mutex::default(),
        });
        let primaries: Vec<Server> = nodes
            .slots
            .next()
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        for server in primaries {
            let client = nodes.build(&server)?;
            client.init().await?;
            nodes
                .clients
                .lock()
                .expect("cluster clients lock")
                .insert(server, client);
        }
        Ok(nodes)
    }

    /// The connection to the primary that holds `key`'s slot, only while connected.
    pub fn connected(&self, key: &str) -> Result<Client, StoreError> {
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let server = self
            .slots
            .next()
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned())
            .ok_or_else(|| not_connected("no primary known for this key's slot"))?;
        let client = {
            let mut clients = self.clients.lock().expect("cluster clients lock");
            match clients.get(&server) {
                Some(client) => client.clone(),
                // A primary named since start (a promoted replica): connect, and
                // serve from the next request on.
                None => {
                    let client = self
                        .build(&server)
                        .map_err(|_| not_connected("cannot configure a new primary"))?;
                    client.connect();
                    clients.insert(server, client);
                    return Err(not_connected("connecting to a new primary"));
                }
            }
        };
        if client.is_connected() {
            Ok(client)
        } else {
            Err(not_connected("this key's primary is not connected"))
        }
    }

    /// A connection to one primary, with the cluster client's settings (password,
    /// TLS) and the shop's timeouts.
    fn build(&self, server: &Server) -> anyhow::Result<Client> {
        let mut config = self.slots.next().client_config();
        config.server = ServerConfig::Centralized {
            server: server.clone(),
        };
        let timeout = self.timeout;
        let client = Builder::from_config(config)
            .with_performance_config(|perf| perf.default_command_timeout = timeout)
            .with_connection_config(|conn| {
                conn.connection_timeout = timeout;
                conn.internal_command_timeout = timeout;
                conn.max_command_attempts = 1;
                conn.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            .set_policy(ReconnectPolicy::new_constant(0, 500))
            .build()?;
        Ok(client)
    }
}

fn not_connected(why: &str) -> StoreError {
    StoreError::Unavailable(fred::error::Error::new(
        fred::error::ErrorKind::IO,
        format!("not connected to Redis: {why}"),
    ))
}

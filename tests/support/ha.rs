//! Redis beyond one server, for the tests: a Sentinel set (a primary, a replica and
//! three sentinels) and a Redis Cluster (three primaries made with
//! `redis-cli --cluster create`), all real `redis-server` processes on free
//! loopback ports under one temporary directory, started in parallel, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::impair::LinkProxy;
use super::process::{free_port, wait_until};

/// The sentinels' name for the monitored primary (`sentinelServiceName=` in the URL).
pub const SERVICE: &str = "shop";

/// A redis-server (or sentinel) process, killed (SIGKILL) on drop.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, dir: &Path, args: &[String]) -> Node {
        let log = std::fs::File::create(dir.join(format!("redis-{port}.log"))).unwrap();
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        Node {
            port,
            child: Some(child),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9`: the process dies at once, without saving or saying goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p PORT ARGS…`, its output (raw, one value per line).
pub async fn cli(port: u16, args: &[&str]) -> String {
    let output = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .await
        .expect("redis-cli must be installed (scripts/test installs redis-tools)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the replica of the primary at `port` holds everything written to
/// it so far (`WAIT 1`). A test that kills a primary or holds back its stream
/// calls it first, so that only the writes the test means to lose can be lost:
/// Redis replicates on its own time, and a write acknowledged a moment before the
/// kill may not have left yet (a test run on a loaded machine saw a registration
/// vanish with its primary).
pub async fn replicated(port: u16) {
    let reply = cli(port, &["WAIT", "1", "10000"]).await;
    assert_eq!(
        reply.trim(),
        "1",
        "the replica of 127.0.0.1:{port} did not catch up"
    );
}

async fn wait_for_port(port: u16) {
    wait_until("redis-server", Duration::from_secs(10), || async move {
        cli(port, &["PING"]).await.trim() == "PONG"
    })
    .await;
}

fn server_args(port: u16) -> Vec<String> {
    [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A primary, a replica of it, and three sentinels watching them with a quorum
/// of two and `down-after-milliseconds 2000` (a loaded two-core machine can stall
/// a process for a second: 1000 made the sentinels fail over a healthy primary).
pub struct SentinelSet {
    pub primary: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
    /// The replica's link to the primary, when it goes through a proxy.
    pub link: Option<LinkProxy>,
    pub dir: tempfile::TempDir,
}

impl SentinelSet {
    pub async fn start() -> SentinelSet {
        SentinelSet::start_with(false).await
    }

    /// A set whose replica reaches the primary through a [`LinkProxy`] (`link`):
    /// the test decides when the replication stream stops arriving.
    pub async fn start_linked() -> SentinelSet {
        SentinelSet::start_with(true).await
    }

    async fn start_with(linked: bool) -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let primary_port = free_port();
        let primary = Node::spawn(primary_port, dir.path(), &server_args(primary_port));
        let link = if linked {
            Some(LinkProxy::start(primary_port).await)
        } else {
            None
        };
        // Sentinels point a replica that replicates from another address than the
        // primary's (the proxy) back at the primary once `failover-timeout` has
        // passed: through a proxy, keep that beyond the test.
        let failover_timeout = if linked { 120_000 } else { 5_000 };
        let replica_port = free_port();
        let mut args = server_args(replica_port);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            link.as_ref().map_or(primary_port, |l| l.port).to_string(),
        ]);
        let replica = Node::spawn(replica_port, dir.path(), &args);
        let sentinels: Vec<Node> = (0..3)
            .map(|i| {
                let port = free_port();
                // Sentinels rewrite their configuration file: each has its own.
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "bind 127.0.0.1\nport {port}\n\
                         sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {SERVICE} 2000\n\
                         sentinel failover-timeout {SERVICE} {failover_timeout}\n\
                         sentinel parallel-syncs {SERVICE} 1\n"
                    ),
                )
                .unwrap();
                Node::spawn(
                    port,
                    dir.path(),
                    &[conf.display().to_string(), "--sentinel".into()],
                )
            })
            .collect();
        let set = SentinelSet {
            primary,
            replica,
            sentinels,
            link,
            dir,
        };
        set.wait_until_settled().await;
        set
    }

    /// The replica has synced, and every sentinel knows the replica and the two
    /// other sentinels (they find each other through the primary every 2 s): only
    /// then can a failover be agreed.
    async fn wait_until_settled(&self) {
        let ports: Vec<u16> = [&self.primary, &self.replica]
            .into_iter()
            .chain(&self.sentinels)
            .map(|n| n.port)
            .collect();
        futures::future::join_all(ports.iter().map(|&p| wait_for_port(p))).await;
        let replica = self.replica.port;
        wait_until("replica in sync", Duration::from_secs(15), || async move {
            cli(replica, &["INFO", "replication"])
                .await
                .contains("master_link_status:up")
        })
        .await;
        for sentinel in &self.sentinels {
            let port = sentinel.port;
            wait_until(
                "sentinels know each other",
                Duration::from_secs(20),
                || async move {
                    let master = cli(port, &["SENTINEL", "MASTER", SERVICE]).await;
                    // Raw field/value lines: "num-other-sentinels\n2", "num-slaves\n1".
                    let field = |name: &str| -> Option<u32> {
                        let mut lines = master.lines();
                        lines.find(|l| *l == name)?;
                        lines.next()?.parse().ok()
                    };
                    field("num-other-sentinels") == Some(2) && field("num-slaves") == Some(1)
                },
            )
            .await;
        }
    }

    /// fred's Sentinel URL: the sentinels, and the service to ask them about.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SERVICE}",
            self.sentinels[0].port
        );
        for sentinel in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", sentinel.port));
        }
        url
    }

    /// `kill -9` of the primary; once the sentinels have promoted the replica (the
    /// time this took is returned), the killed server is started again, empty, on
    /// its port as the new primary's replica (as an operator brings a failed server
    /// back; the sentinels would convert it too, at their next 10-second look), and
    /// waited for until it has synced: the set is whole again for the next failover.
    /// `killed` runs right after the kill.
    pub async fn fail_over(&mut self, killed: impl FnOnce()) -> Duration {
        let started = std::time::Instant::now();
        self.primary.kill();
        killed();
        let replica = self.replica.address();
        let this = &*self;
        // Usually 2–4 s; a split vote among the sentinels makes them wait twice
        // `failover-timeout` (5 s) before electing again, so allow a second round.
        wait_until(
            "the sentinels promote the replica",
            Duration::from_secs(30),
            || {
                let replica = replica.clone();
                async move { this.current_primary().await == replica }
            },
        )
        .await;
        let promoted = started.elapsed();
        let port = self.primary.port;
        let mut args = server_args(port);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            self.replica.port.to_string(),
        ]);
        let old = Node::spawn(port, self.dir.path(), &args);
        wait_for_port(port).await;
        wait_until(
            "the old primary rejoins as a replica",
            Duration::from_secs(20),
            || async move {
                cli(port, &["INFO", "replication"])
                    .await
                    .contains("master_link_status:up")
            },
        )
        .await;
        self.primary = std::mem::replace(&mut self.replica, old);
        promoted
    }

    /// Waits up to `bound` for the sentinels to name `replica` the primary; if
    /// their vote split (each then waits twice `failover-timeout` to vote again),
    /// does what an operator would: `SENTINEL FAILOVER`, and waits `bound` again.
    pub async fn promoted(&self, replica: &str, bound: Duration) {
        let deadline = std::time::Instant::now() + bound;
        while self.current_primary().await != replica {
            if std::time::Instant::now() >= deadline {
                cli(self.sentinels[0].port, &["SENTINEL", "FAILOVER", SERVICE]).await;
                wait_until("a forced failover promotes the replica", bound, || async {
                    self.current_primary().await == replica
                })
                .await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the sentinels say the primary is now, `host:port`.
    pub async fn current_primary(&self) -> String {
        let reply = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
        )
        .await;
        let mut lines = reply.lines();
        format!(
            "{}:{}",
            lines.next().unwrap_or_default(),
            lines.next().unwrap_or_default()
        )
    }
}

/// Three primaries, no replicas: `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        RedisCluster::start_with(0).await
    }

    /// Three primaries, each with `replicas` replicas; a primary that stops
    /// answering for two seconds is failed over to its replica.
    pub async fn start_with(replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        // Two seconds: a loaded two-core machine can stall a node for one, and a
        // shorter timeout then fails over a healthy primary (whose last writes,
        // not yet replicated, are lost with it).
        let node_timeout = "2000";
        let nodes: Vec<Node> = (0..3 * (1 + replicas))
            .map(|i| {
                let port = free_port();
                let mut args = server_args(port);
                args.extend([
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{i}.conf"),
                    "--cluster-node-timeout".into(),
                    node_timeout.into(),
                    // A primary down leaves its slots unserved, not every slot
                    // (the default refuses every command until it is replaced).
                    "--cluster-require-full-coverage".into(),
                    "no".into(),
                ]);
                Node::spawn(port, dir.path(), &args)
            })
            .collect();
        futures::future::join_all(nodes.iter().map(|n| wait_for_port(n.port))).await;
        let addresses: Vec<String> = nodes.iter().map(Node::address).collect();
        let output = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes, dir };
        for node in &cluster.nodes {
            let port = node.port;
            wait_until("cluster state ok", Duration::from_secs(15), || async move {
                let info = cli(port, &["CLUSTER", "INFO"]).await;
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", 3 * (1 + replicas)))
            })
            .await;
        }
        for node in &cluster.nodes {
            let port = node.port;
            wait_until("replicas in sync", Duration::from_secs(15), || async move {
                let role = cli(port, &["INFO", "replication"]).await;
                role.contains("role:master") || role.contains("master_link_status:up")
            })
            .await;
        }
        cluster
    }

    /// The nodes that are primaries now, by index.
    pub async fn primaries(&self) -> Vec<usize> {
        let mut primaries = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_some() && cli(node.port, &["ROLE"]).await.starts_with("master") {
                primaries.push(i);
            }
        }
        primaries
    }

    /// fred's cluster URL: one node, the others as `node=` (any one would do).
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://{}", self.nodes[0].address());
        for (i, node) in self.nodes[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("node={}", node.address()));
        }
        url
    }

    /// The keys each primary holds (KEYS * on each node).
    pub async fn keys_per_node(&self) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            let mut keys: Vec<String> = cli(node.port, &["KEYS", "*"])
                .await
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            keys.sort();
            all.push(keys);
        }
        all
    }
}

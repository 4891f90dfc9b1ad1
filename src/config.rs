//! One typed configuration, read from flags or the environment in one place
//! (`storefront serve --help` lists every setting) and passed down from there.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Everything `storefront serve` can be told. Each flag also reads an environment variable.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address to bind: 127.0.0.1 locally, 0.0.0.0 inside a container.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Users and products: `sqlite://PATH` (one host) or `postgres://…` (several);
    /// created and migrated at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/storefront.db"
    )]
    pub database_url: String,

    /// Redis for sessions, carts and login throttling. Unset: in-memory dev mode.
    /// Pick the database index in the path (`redis://host:6379/2`) to isolate apps.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Name shown in the footer and the `X-Served-By` header (default: host name).
    #[arg(long, env = "REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// Mark the session cookie `Secure` (set it when the site is served over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// Log a session out after this much inactivity when "remember me" is off.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_positive_duration)]
    pub session_idle_timeout: Duration,

    /// With "remember me": how long the session survives inactivity.
    #[arg(long, env = "REMEMBER_ME_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub remember_me_days: u32,

    /// Absolute lifetime of a login without "remember me", however active the user is.
    #[arg(long, env = "SESSION_MAX_LIFETIME", default_value = "7d", value_parser = parse_positive_duration)]
    pub session_max_lifetime: Duration,

    /// Absolute lifetime of a login with "remember me".
    #[arg(long, env = "REMEMBER_ME_MAX_LIFETIME", default_value = "30d", value_parser = parse_positive_duration)]
    pub remember_me_max_lifetime: Duration,

    /// How long a logged-in user's cart is kept after its last change.
    #[arg(long, env = "CART_TTL", default_value = "30d", value_parser = parse_positive_duration)]
    pub cart_ttl: Duration,

    /// How long an anonymous visitor's cart (and the session pointing at it) is kept.
    #[arg(long, env = "ANON_CART_TTL", default_value = "7d", value_parser = parse_positive_duration)]
    pub anon_cart_ttl: Duration,

    /// How long the session and cart a cookie-less visitor's first add creates are
    /// kept until the visitor comes back with its cookie (a browser does at once,
    /// following the add's redirect); then `ANON_CART_TTL`. At most `ANON_CART_TTL`.
    #[arg(long, env = "ANON_TRIAL_TTL", default_value = "1h", value_parser = parse_positive_duration)]
    pub anon_trial_ttl: Duration,

    /// Failed logins allowed per username from one client address within the throttle window.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_USER", default_value_t = 5)]
    pub login_max_failures_per_user: u32,

    /// Failed logins allowed per client address (any username) within the throttle window.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_CLIENT", default_value_t = 20)]
    pub login_max_failures_per_client: u32,

    /// Failed logins allowed per username from all addresses together within the window.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_USER_TOTAL", default_value_t = 100)]
    pub login_max_failures_per_user_total: u32,

    /// Registration attempts allowed per client address within the registration window.
    #[arg(long, env = "REGISTER_MAX_PER_CLIENT", default_value_t = 20)]
    pub register_max_per_client: u32,

    /// The registration throttle window.
    #[arg(long, env = "REGISTER_THROTTLE_WINDOW", default_value = "1h", value_parser = parse_positive_duration)]
    pub register_throttle_window: Duration,

    /// New anonymous carts (each with its session) allowed per client network
    /// (an IPv4 address, an IPv6 /64) within the anonymous cart window.
    #[arg(long, env = "ANON_CARTS_PER_CLIENT", default_value_t = 300)]
    pub anon_carts_per_client: u32,

    /// The anonymous cart budget's window.
    #[arg(long, env = "ANON_CART_WINDOW", default_value = "10m", value_parser = parse_positive_duration)]
    pub anon_cart_window: Duration,

    /// The login throttle window.
    #[arg(long, env = "LOGIN_THROTTLE_WINDOW", default_value = "15m", value_parser = parse_positive_duration)]
    pub login_throttle_window: Duration,

    /// Peers whose `X-Forwarded-For` is believed (comma-separated IPs or CIDRs, e.g. 127.0.0.1,10.0.0.0/8).
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// How long a Redis command may take before the request gets a 503 page.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "1s", value_parser = parse_positive_duration)]
    pub redis_timeout: Duration,

    /// Replicas that must confirm each cart write, login and logout (`WAIT`) before it is
    /// acknowledged, so that a Sentinel failover cannot lose it. Default: 1 with a
    /// Sentinel `REDIS_URL`, 0 (the primary's answer) otherwise.
    #[arg(long, env = "REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,

    /// How long a write waits for its replicas before the shopper is told
    /// "could not confirm".
    #[arg(long, env = "REDIS_WAIT_TIMEOUT", default_value = "250ms", value_parser = parse_positive_duration)]
    pub redis_wait_timeout: Duration,

    /// Start even if Redis's `maxmemory-policy` evicts keys (it would silently log
    /// users out and empty carts when Redis is full). Logged as a warning.
    #[arg(long, env = "ALLOW_EVICTING_REDIS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_evicting_redis: bool,

    /// Show `/readyz`'s detail (Redis host, memory, database kind) to every client,
    /// not only to requests made on this host directly.
    #[arg(long, env = "HEALTH_DETAIL", default_value_t = false, action = clap::ArgAction::Set)]
    pub health_detail: bool,

    /// A client must send a request's headers within this time once it has started
    /// (slow clients are disconnected).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    /// An idle keep-alive connection is closed after this long without a request.
    /// Keep it above the load balancer's own upstream keep-alive timeout.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM, keep serving this long while failing `/readyz` and closing each
    /// connection after its response, so the load balancer retires its connections
    /// before the listener closes (longer than its upstream keep-alive timeout).
    #[arg(long, env = "SHUTDOWN_DRAIN", default_value = "3s", value_parser = parse_duration)]
    pub shutdown_drain: Duration,

    /// Request threads (tokio's workers; unset: one per core). Replicas sharing a
    /// host should split its cores between them. The variable is tokio's own name.
    #[arg(long, env = "TOKIO_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    /// Longest time a request may take; also bounds draining at shutdown.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// Serve Prometheus metrics at `http://METRICS_ADDR/metrics` (e.g. 127.0.0.1:9100,
    /// or 0.0.0.0:9100 inside a container): an address of its own, never the
    /// shop's port, kept off the internet. Unset: no metrics.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Create the demo account (`demo` / `demo-pass-123`) if it does not exist.
    #[arg(long, env = "DEMO_USER", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_user: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// The defaults, as `storefront serve` with no flags and an empty environment would get them.
    /// Tests start from here and change what they need.
    pub fn defaults() -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let matches = <Wrapper as clap::CommandFactory>::command()
            .no_binary_name(true)
            .try_get_matches_from(std::iter::empty::<String>())
            .expect("defaults parse");
        Wrapper::from_arg_matches(&matches)
            .expect("defaults parse")
            .config
    }

    pub fn replica(&self) -> String {
        self.replica_name.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "storefront".to_owned())
        })
    }

    pub fn remember_me(&self) -> Duration {
        Duration::from_secs(u64::from(self.remember_me_days) * 86_400)
    }

    /// A new visitor's trial lifetime (`session::trial`): `ANON_TRIAL_TTL`, never
    /// longer than `ANON_CART_TTL`. The one place that caps it.
    pub fn anon_trial(&self) -> Duration {
        self.anon_trial_ttl.min(self.anon_cart_ttl)
    }

    /// The longest a login can live, with or without "remember me": the per-user
    /// session index and credential epoch outlive it.
    pub fn longest_login(&self) -> Duration {
        self.session_max_lifetime.max(self.remember_me_max_lifetime)
    }
}

/// The longest any duration setting may be: ten years. A TTL or a lifetime beyond
/// that is a typo, and the bound keeps every deadline computed from one (now +
/// lifetime, Redis `EXPIRE` seconds) far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(3_650 * 86_400);

/// Accepts `90`, `90s`, `15m`, `2h`, `7d`, `250ms`; `0` too (see [`parse_positive_duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 15m, 2h or 7d"))?;
    let per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit in `{s}`: use ms, s, m, h or d")),
    };
    n.checked_mul(per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| {
            let days = MAX_DURATION.as_secs() / 86_400;
            format!("`{s}` is too long: at most {days}d")
        })
}

/// A duration that cannot sensibly be zero: a TTL, a timeout, a lifetime, a window.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("`{s}` must be longer than zero")),
        d => Ok(d),
    }
}

/// An IP network (`10.0.0.0/8`) or a single address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:127.0.0.1` is 127.0.0.1.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

fn parse_ip_net(s: &str) -> Result<IpNet, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        assert!(parse_duration("3651d").is_err());
        assert!(
            parse_duration("106751991167301d").is_err(),
            "would overflow"
        );
        assert!(
            parse_duration("18446744073709551615").is_err(),
            "would overflow"
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn networks_match_addresses() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn the_trial_lifetime_is_never_longer_than_the_anonymous_one() {
        let mut config = Config::defaults();
        assert_eq!(config.anon_trial(), Duration::from_secs(3600));
        config.anon_trial_ttl = Duration::from_secs(30 * 86_400);
        assert_eq!(config.anon_trial(), config.anon_cart_ttl);
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::defaults();
        let days = |n: u64| Duration::from_secs(n * 86_400);
        // The README's settings table, row by row.
        assert_eq!(config.port, 3000);
        assert_eq!(config.bind, IpAddr::from([127, 0, 0, 1]));
        assert!(config.redis_url.is_none());
        assert!(!config.cookie_secure);
        assert_eq!(config.session_idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.remember_me_days, 30);
        assert_eq!(config.session_max_lifetime, days(7));
        assert_eq!(config.remember_me_max_lifetime, days(30));
        assert_eq!(config.cart_ttl, days(30));
        assert_eq!(config.anon_cart_ttl, days(7));
        assert_eq!(config.anon_trial_ttl, Duration::from_secs(3600));
        assert_eq!(config.login_max_failures_per_user, 5);
        assert_eq!(config.login_max_failures_per_client, 20);
        assert_eq!(config.login_max_failures_per_user_total, 100);
        assert_eq!(config.login_throttle_window, Duration::from_secs(900));
        assert_eq!(config.register_max_per_client, 20);
        assert_eq!(config.register_throttle_window, Duration::from_secs(3600));
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.redis_timeout, Duration::from_secs(1));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.shutdown_drain, Duration::from_secs(3));
        assert!(!config.allow_evicting_redis);
        assert!(config.demo_user);
        assert!(config.redis_wait_replicas.is_none());
        assert_eq!(config.redis_wait_timeout, Duration::from_millis(250));
        assert!(config.metrics_addr.is_none());
    }
}

//! Operating the cluster: each replica's metrics, scraped by a real Prometheus
//! (Debian's package) while real nginx spreads the traffic over three replicas;
//! the alert rules checked and unit-tested with promtool.

mod support {
    #[allow(dead_code)]
    pub mod api;
    #[allow(dead_code)]
    pub mod browser;
    #[allow(dead_code)]
    pub mod cluster;
    pub mod process;
    pub mod prometheus;
    #[allow(dead_code)]
    pub mod redis;
}

use std::collections::HashSet;
use std::process::Command;

use reqwest::{Method, StatusCode};

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::cluster::{fetch, plain_client, Cluster};
use support::prometheus::{alert_rules, Prometheus};

/// The replica label of each series in a query's result.
fn replicas(result: &[(serde_json::Value, f64)]) -> HashSet<String> {
    result
        .iter()
        .filter_map(|(labels, _)| labels["replica"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_every_replica_share_the_load_and_redis_go_and_come_back() {
    let cluster = Cluster::start().await;
    let targets: Vec<String> = cluster
        .replicas
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.metrics_port))
        .collect();
    let prometheus = Prometheus::start(&targets).await;
    let names: HashSet<String> = cluster.replica_names().into_iter().collect();

    // Every replica is scraped, and names itself in its build info.
    prometheus
        .wait_for("all three scraped", r#"up{job="storefront"} == 1"#, |r| {
            r.len() == 3
        })
        .await;
    let built = prometheus.query("storefront_build_info").await;
    assert_eq!(replicas(&built), names, "{built:?}");

    // Traffic through nginx: a logged-in shopper browsing.
    let user = cluster.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "1").await.assert_redirect("/cart");
    for _ in 0..12 {
        assert_eq!(
            user.get("/products/blue-teapot").await.status,
            StatusCode::OK
        );
    }

    // Round robin: every replica answered some of them, counted by route template.
    let spread = prometheus
        .wait_for(
            "requests on every replica",
            r#"sum by (replica) (storefront_http_requests_total{route="/products/{slug}",status="200"})"#,
            |r| replicas(r) == names && r.iter().map(|(_, v)| v).sum::<f64>() >= 12.0,
        )
        .await;
    assert!(spread.iter().all(|(_, v)| *v >= 1.0), "{spread:?}");
    prometheus
        .wait_for(
            "the login and the cart write counted",
            r#"sum(storefront_logins_total{outcome="ok"}) + sum(storefront_cart_writes_total{kind="add"})"#,
            |r| r.first().is_some_and(|(_, v)| *v == 2.0),
        )
        .await;

    // The metrics are never served through nginx, nor on the shop's own port.
    let client = plain_client();
    for base in [cluster.url.clone(), cluster.replicas[0].url()] {
        let page = fetch(client.request(Method::GET, format!("{base}/metrics")))
            .await
            .unwrap();
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{base}/metrics");
        assert!(!page.body.contains("storefront_"), "{base}/metrics");
    }

    // Redis stops: every replica reports itself degraded, and the failed Redis
    // calls of the pages still browsed show in the error counter.
    cluster.redis.stop();
    for _ in 0..6 {
        let page = user.get("/products/blue-teapot").await;
        assert_eq!(page.status, StatusCode::OK, "read-only pages still load");
    }
    prometheus
        .wait_for("every replica degraded", "storefront_degraded == 1", |r| {
            replicas(r) == names
        })
        .await;
    prometheus
        .wait_for(
            "Redis errors counted",
            r#"sum(storefront_redis_errors_total{kind="session"})"#,
            |r| r.first().is_some_and(|(_, v)| *v >= 1.0),
        )
        .await;

    // Redis is back: every replica reconnects and says so.
    cluster.redis.restart().await; // already stopped: starts it again
    cluster.wait_until_every_replica_is_ready(3).await;
    prometheus
        .wait_for("every replica recovered", "storefront_degraded == 0", |r| {
            replicas(r) == names
        })
        .await;
    assert_eq!(
        user.get("/cart").await.cart_badge(),
        0,
        "Redis came back empty"
    );
}

/// promtool, from the same package: the rules parse, and fire when they should.
#[test]
fn the_alert_rules_pass_promtool() {
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(alert_rules())
        .output()
        .expect("promtool must be installed (scripts/test installs it)");
    assert!(check.status.success(), "{check:?}");
    let test = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(alert_rules().parent().unwrap())
        .output()
        .unwrap();
    assert!(test.status.success(), "{test:?}");
    assert!(String::from_utf8_lossy(&test.stdout).contains("SUCCESS"));
}

/// The compose stack's Prometheus configuration is valid, and every storefront
/// metric the Grafana dashboard and the alert rules ask for is one the shop
/// records (a renamed metric would leave an empty panel or a silent alert).
#[test]
fn the_dashboard_and_the_alerts_ask_for_metrics_the_shop_records() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(root.join("deploy/prometheus/prometheus.yml"))
        .output()
        .expect("promtool must be installed (scripts/test installs it)");
    assert!(check.status.success(), "{check:?}");

    let recorded = std::fs::read_to_string(root.join("src/telemetry/metrics.rs")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/dashboards/storefront.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().clone())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries.push(std::fs::read_to_string(alert_rules()).unwrap());
    let mut asked = HashSet::new();
    for query in &queries {
        let mut rest = query.as_str();
        while let Some(start) = rest.find("storefront_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            asked.insert(base);
        }
    }
    assert!(asked.len() >= 10, "{asked:?}");
    for name in &asked {
        assert!(
            recorded.contains(&format!("\"{name}\"")),
            "{name} is asked for but never recorded"
        );
    }
}

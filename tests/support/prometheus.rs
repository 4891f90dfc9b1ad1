//! A real Prometheus of the test's own (Debian's `prometheus` package), on a free
//! loopback port, scraping the replicas' metrics listeners every 250 ms with the
//! project's alert rules loaded. Killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{free_port, wait_until};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The alert rules, as scripts/cluster and docker-compose load them.
pub fn alert_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml")
}

impl Prometheus {
    /// Scrapes `targets` (`127.0.0.1:PORT`, each a replica's `METRICS_ADDR`) as
    /// the job `storefront`.
    pub async fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n  evaluation_interval: 250ms\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: storefront\n    static_configs:\n      - targets: [{targets}]\n",
            rules = alert_rules().display(),
            targets = targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus must be installed (scripts/test installs it)");
        let prometheus = Prometheus { child, port, dir };
        let client = reqwest::Client::new();
        let url = &format!("{}/-/ready", prometheus.url());
        let client = &client;
        wait_until(
            "prometheus ready",
            Duration::from_secs(30),
            move || async move {
                matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
            },
        )
        .await;
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API: each result's labels and value.
    pub async fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let response: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|body| serde_json::from_str(&body).unwrap())
            .unwrap();
        assert_eq!(response["status"], "success", "{query}: {response}");
        response["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `query` until `accept` takes its result (Prometheus scrapes every
    /// 250 ms), or panics with the last result and the log.
    pub async fn wait_for(
        &self,
        what: &str,
        query: &str,
        accept: impl Fn(&[(serde_json::Value, f64)]) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        let start = std::time::Instant::now();
        loop {
            let result = self.query(query).await;
            if accept(&result) {
                return result;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: `{query}` gave {result:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

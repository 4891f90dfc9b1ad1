//! The Kubernetes package (deploy/k8s/), offline: scripts/check-k8s renders it
//! with kustomize, validates every object against the API schemas and runs
//! checkov; the test below then holds the rendered objects to the shop's policy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// Runs scripts/check-k8s once for this test binary; the rendered objects.
fn rendered() -> &'static Vec<Value> {
    static RENDERED: OnceLock<Vec<Value>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = tempfile::tempdir().unwrap().keep();
        let run = Command::new(root.join("scripts/check-k8s"))
            .arg(&out)
            .output()
            .expect("scripts/check-k8s runs");
        assert!(
            run.status.success(),
            "scripts/check-k8s failed:\n{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let json = std::fs::read_to_string(out.join("rendered.json")).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        serde_json::from_str(&json).unwrap()
    })
}

fn object<'a>(kind: &str, name: &str) -> &'a Value {
    rendered()
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The project's duration settings as written in the manifests: `3s`, `10s`.
fn seconds(value: &str) -> u64 {
    let digits = value.strip_suffix('s').unwrap_or(value);
    digits.parse().unwrap_or_else(|_| panic!("{value:?}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// nginx's upstream keep-alive timeout, from the shared template.
fn nginx_upstream_keepalive() -> Duration {
    let template = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/storefront.conf.template"),
    )
    .unwrap();
    let upstream = &template[template.find("upstream storefront {").unwrap()..];
    let upstream = &upstream[..upstream.find("\n    }").unwrap()];
    let line = upstream
        .lines()
        .find(|l| l.trim_start().starts_with("keepalive_timeout"))
        .expect("the upstream's keepalive_timeout");
    let value = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(';');
    Duration::from_secs(seconds(value))
}

#[test]
fn the_package_renders_validates_and_passes_checkov() {
    let kinds: Vec<&str> = rendered()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Deployment",
        "StatefulSet",
        "Job",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Secret",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn the_shop_is_probed_drained_and_spread_as_the_policy_says() {
    let shop = object("Deployment", "shop");
    assert_eq!(shop["spec"]["replicas"], 3);
    let pod = pod_spec(shop);
    let container = &pod["containers"][0];

    // Readiness must not pull every pod out when Redis is down (degraded mode
    // keeps serving): never /readyz. Liveness touches no dependency.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/readyz");

    // Drain: the pre-stop wait outlasts nginx's idle upstream connections, the
    // shop's own drain does too, and the grace period covers wait + drain + the
    // longest request (+1 s, as the binary allows itself).
    let keepalive = nginx_upstream_keepalive();
    let pre_stop = Duration::from_secs(
        container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .expect("a preStop sleep"),
    );
    let drain = Duration::from_secs(seconds(env(container, "SHUTDOWN_DRAIN")));
    let request = Duration::from_secs(seconds(env(container, "REQUEST_TIMEOUT")));
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        pre_stop > keepalive,
        "{pre_stop:?} vs nginx's {keepalive:?}"
    );
    assert!(
        drain > keepalive,
        "SHUTDOWN_DRAIN {drain:?} vs nginx's {keepalive:?}"
    );
    let needed = pre_stop + drain + request + Duration::from_secs(1);
    assert!(grace > needed, "grace {grace:?} < {needed:?}");
    // And the shop's idle timeout stays above nginx's, as in the README.
    assert!(Duration::from_secs(seconds(env(container, "IDLE_TIMEOUT"))) > keepalive);

    // A voluntary disruption leaves most replicas up, and they are spread.
    let pdb = object("PodDisruptionBudget", "shop");
    let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!((1..3).contains(&min), "minAvailable {min}");
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    assert!(spread
        .iter()
        .any(|c| c["topologyKey"] == "kubernetes.io/hostname"));

    // The database password comes from the Secret, never a literal.
    let url = env(container, "DATABASE_URL");
    assert!(url.contains("$(POSTGRES_PASSWORD)"), "{url}");
    let from_secret = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POSTGRES_PASSWORD")
        .unwrap();
    assert!(from_secret["valueFrom"]["secretKeyRef"]["name"].is_string());
    // Metrics are on, on their own port, and that port is not in nginx's path.
    assert_eq!(env(container, "METRICS_ADDR"), "0.0.0.0:9100");
}

#[test]
fn every_workload_pins_its_image_sets_resources_and_runs_unprivileged() {
    let workloads: Vec<&Value> = rendered()
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "Job")
            )
        })
        .collect();
    assert!(workloads.len() >= 5, "{}", workloads.len());
    for workload in workloads {
        let name = workload["metadata"]["name"].as_str().unwrap();
        let pod = pod_spec(workload);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for container in pod["containers"].as_array().unwrap() {
            let image = container["image"].as_str().unwrap();
            let tag = image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|t| !t.is_empty() && t != "latest" && !t.contains('/')),
                "{name}: image {image} must name a release, not latest"
            );
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][kind][resource].is_string(),
                        "{name}: no {kind}.{resource}"
                    );
                }
            }
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
            if workload["kind"] != "Job" {
                assert!(container["livenessProbe"].is_object(), "{name}: liveness");
                assert!(container["readinessProbe"].is_object(), "{name}: readiness");
            }
        }
    }
}

#[test]
fn only_nginx_reaches_the_shop_and_only_the_shop_reaches_the_stores() {
    let deny = object("NetworkPolicy", "default-deny-ingress");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    let from = |policy: &str| -> Vec<String> {
        object("NetworkPolicy", policy)["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["from"].as_array().cloned().unwrap_or_default())
            .map(|peer| {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    .as_str()
                    .map(|app| format!("pod {app}"))
                    .or_else(|| {
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            .as_str()
                            .map(|ns| format!("namespace {ns}"))
                    })
                    .unwrap_or_else(|| panic!("{policy}: an unexpected peer {peer}"))
            })
            .collect()
    };
    assert_eq!(
        from("shop-from-nginx"),
        ["pod nginx", "namespace monitoring"]
    );
    assert_eq!(from("redis-from-shop"), ["pod shop", "pod redis"]);
    assert_eq!(from("postgres-from-shop"), ["pod shop", "pod migrate"]);
    // The monitoring namespace reaches only the metrics port.
    let shop_rules = object("NetworkPolicy", "shop-from-nginx")["spec"]["ingress"]
        .as_array()
        .unwrap();
    assert_eq!(shop_rules[0]["ports"][0]["port"], 3000);
    assert_eq!(shop_rules[1]["ports"][0]["port"], 9100);
}

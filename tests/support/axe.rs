//! axe-core (from the npm registry, installed under tools/axe/ by scripts/test),
//! injected into the page through WebDriver and run there.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use super::chrome::Chrome;

/// One rule that failed, with a few of the elements it failed on.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    pub id: String,
    /// "minor", "moderate", "serious" or "critical".
    pub impact: Option<String>,
    pub help: String,
    pub nodes: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.impact.as_deref().unwrap_or("?"),
            self.id,
            self.help
        )?;
        for node in &self.nodes {
            write!(f, "\n      {node}")?;
        }
        Ok(())
    }
}

fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tools/axe/node_modules/axe-core/axe.min.js"
        );
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e}. Install it with `(cd tools/axe && npm ci)` (scripts/test does).")
        })
    })
}

/// Every axe-core violation on the page as it is now (all WCAG 2.x A/AA rules
/// and axe's best practices).
pub async fn violations(chrome: &Chrome) -> Vec<Violation> {
    // A WebDriver script is evaluated by the browser itself, not loaded by the
    // page, so the page's `script-src 'self'` does not apply to it.
    let injected = chrome
        .execute(&format!("{}\n;return typeof window.axe;", axe_source()))
        .await
        .expect("injecting axe-core");
    assert_eq!(injected, Value::from("object"), "axe-core did not load");
    let result = chrome
        .client
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then(r => done({ violations: r.violations.map(v => ({
                  id: v.id,
                  impact: v.impact,
                  help: v.help,
                  nodes: v.nodes.slice(0, 5).map(n =>
                    n.target.join(' ') + ' :: ' + (n.failureSummary || '').replace(/\s+/g, ' ')),
                })) }))
              .catch(e => done({ error: String(e) }));
            "#,
            vec![],
        )
        .await
        .expect("running axe-core");
    if let Some(error) = result.get("error") {
        panic!("axe-core failed: {error}");
    }
    serde_json::from_value(result["violations"].clone()).expect("axe-core's answer")
}

//! Static files with their content in their name: `/static/style.3f9a0c1d2b4e5f60.css`.
//!
//! At start-up every file under `static/` is read once and hashed; pages link to
//! the hashed name ([`url`]), which is served with `Cache-Control: immutable`, so
//! a browser never asks again, and a changed file gets a new name (no stale CSS
//! after a deploy). The plain names keep working, with a shorter cache lifetime.
//!
//! The table is built once per process from the files themselves (not from
//! configuration), so it is a process-wide value that templates can reach.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// The fingerprinted names of the static files.
#[derive(Debug, Default)]
pub struct Assets {
    dir: PathBuf,
    /// `products/blue-teapot.svg` → `products/blue-teapot.0123456789abcdef.svg`
    hashed: HashMap<String, String>,
    /// The other way round.
    original: HashMap<String, String>,
}

static ASSETS: OnceLock<Assets> = OnceLock::new();

/// `static/` next to the working directory (the container's WORKDIR), or the
/// source tree's when run from elsewhere with `cargo run`.
pub fn static_dir() -> PathBuf {
    let local = PathBuf::from("static");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
    }
}

/// Hashes every static file; called once at start (later calls reuse the table).
pub fn init() -> &'static Assets {
    ASSETS.get_or_init(|| Assets::load(&static_dir()))
}

/// The URL of a static file: its fingerprinted name when the file exists.
pub fn url(name: &str) -> String {
    match init().hashed.get(name) {
        Some(hashed) => format!("/static/{hashed}"),
        None => format!("/static/{name}"),
    }
}

impl Assets {
    pub fn load(dir: &Path) -> Assets {
        let mut assets = Assets {
            dir: dir.to_owned(),
            ..Assets::default()
        };
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&current) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let (Ok(bytes), Ok(relative)) = (std::fs::read(&path), path.strip_prefix(dir))
                else {
                    continue;
                };
                let Some(name) = relative.to_str().map(|s| s.replace('\\', "/")) else {
                    continue;
                };
                let hashed = hashed_name(&name, fnv1a(&bytes));
                assets.original.insert(hashed.clone(), name.clone());
                assets.hashed.insert(name, hashed);
            }
        }
        tracing::debug!(files = assets.hashed.len(), dir = %assets.dir.display(), "static files fingerprinted");
        assets
    }
}

/// `dir/name.ext` → `dir/name.<hash>.ext`
fn hashed_name(name: &str, hash: u64) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if !name[dot..].contains('/') => name.split_at(dot),
        _ => (name, ""),
    };
    format!("{stem}.{hash:016x}{ext}")
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart (not a security hash).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Middleware in front of the static file service (nested under `/static`, so it
/// sees `/style.<hash>.css`): a fingerprinted name is served as its file, marked
/// immutable for a year.
pub async fn serve_fingerprinted(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let original = path
        .strip_prefix('/')
        .and_then(|name| init().original.get(name));
    let Some(original) = original else {
        return next.run(request).await;
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = format!("/{original}").parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    let mut response = next.run(request).await;
    if response.status() == StatusCode::OK {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_keep_the_directory_and_extension() {
        assert_eq!(hashed_name("style.css", 0xab), "style.00000000000000ab.css");
        assert_eq!(
            hashed_name("products/blue-teapot.svg", 1),
            "products/blue-teapot.0000000000000001.svg"
        );
        assert_eq!(hashed_name("LICENSE", 2), "LICENSE.0000000000000002");
        assert_ne!(fnv1a(b"a{}"), fnv1a(b"a{ }"));
    }

    #[test]
    fn every_static_file_gets_a_fingerprinted_url() {
        let assets = Assets::load(&static_dir());
        let css = assets.hashed.get("style.css").expect("style.css");
        assert!(css.starts_with("style.") && css.ends_with(".css"), "{css}");
        assert_eq!(
            assets.original.get(css).map(String::as_str),
            Some("style.css")
        );
        assert!(assets.hashed.contains_key("products/blue-teapot.svg"));
    }
}

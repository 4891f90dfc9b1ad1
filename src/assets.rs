//! Static files with their content in their name: `/static/style.3f9a0c1d2b4e5f60.css`.
//!
//! At start-up every file under `static/` is read once and hashed; pages link to
//! the hashed name ([`url`]), which is served with `Cache-Control: immutable`, so
//! a browser never asks again, and a changed file gets a new name (no stale CSS
//! after a deploy). The plain names keep working, with a shorter cache lifetime.
//!
//! The table is built once per process from the files themselves (not from
//! configuration), so it is a process-wide value that templates can reach.
//!
//! The files are served from memory ([`serve`]): each is read once at start, and
//! the text ones (CSS, SVG, …) are compressed once, with brotli and gzip at their
//! best settings, so a request costs a lookup and a copy of a reference-counted
//! buffer — never a disk read or a compression. Each answer carries an `ETag` (the
//! content hash), and `If-None-Match` gets a 304.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The fingerprinted names of the static files.
#[derive(Debug, Default)]
pub struct Assets {
    dir: PathBuf,
    /// `products/blue-teapot.svg` → `/static/products/blue-teapot.0123456789abcdef.svg`:
    /// what pages link to, made once rather than on every page.
    urls: HashMap<String, String>,
    /// `products/blue-teapot.0123456789abcdef.svg` → `products/blue-teapot.svg`.
    original: HashMap<String, String>,
    /// Every file, by its plain name, ready to send.
    files: HashMap<String, StaticFile>,
}

/// One static file as it is sent: its bytes in every encoding worth having.
#[derive(Debug)]
struct StaticFile {
    content_type: &'static str,
    /// The content hash, as the `ETag` of every encoding (with a suffix).
    hash: u64,
    identity: Bytes,
    /// Present when compressing made it smaller (text, not already packed images).
    brotli: Option<Bytes>,
    gzip: Option<Bytes>,
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
pub fn url(name: &str) -> Cow<'static, str> {
    match init().urls.get(name) {
        Some(url) => Cow::Borrowed(url),
        None => Cow::Owned(format!("/static/{name}")),
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
                let hash = fnv1a(&bytes);
                let hashed = hashed_name(&name, hash);
                assets
                    .urls
                    .insert(name.clone(), format!("/static/{hashed}"));
                assets.original.insert(hashed, name.clone());
                assets
                    .files
                    .insert(name.clone(), StaticFile::new(&name, hash, bytes));
            }
        }
        tracing::debug!(files = assets.files.len(), dir = %assets.dir.display(), "static files fingerprinted");
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

impl StaticFile {
    fn new(name: &str, hash: u64, bytes: Vec<u8>) -> StaticFile {
        let content_type = content_type(name);
        let text = content_type.starts_with("text/")
            || content_type.contains("svg")
            || content_type.contains("json")
            || content_type.contains("javascript");
        let smaller = |packed: Vec<u8>| (packed.len() < bytes.len()).then(|| Bytes::from(packed));
        let (brotli, gzip) = if text {
            (smaller(brotli_best(&bytes)), smaller(gzip_best(&bytes)))
        } else {
            (None, None)
        };
        StaticFile {
            content_type,
            hash,
            identity: Bytes::from(bytes),
            brotli,
            gzip,
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "css" => "text/css",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "js" => "text/javascript",
        "json" | "webmanifest" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn brotli_best(bytes: &[u8]) -> Vec<u8> {
    let mut packed = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut packed, 4096, 11, 22);
        // Writing into a Vec cannot fail.
        let _ = writer.write_all(bytes);
    }
    packed
}

fn gzip_best(bytes: &[u8]) -> Vec<u8> {
    let mut writer = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = writer.write_all(bytes);
    writer.finish().unwrap_or_default()
}

/// The encodings a request accepts, best first: brotli, then gzip (a `q=0`
/// refuses one).
pub(crate) fn accepted(headers: &HeaderMap) -> (bool, bool) {
    let mut brotli = false;
    let mut gzip = false;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or_default().split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match coding {
                "br" => brotli = !refused,
                "gzip" => gzip = !refused,
                "*" => {
                    brotli |= !refused;
                    gzip |= !refused;
                }
                _ => {}
            }
        }
    }
    (brotli, gzip)
}

/// The static files, from memory (nested under `/static`, so the path is
/// `/style.css` or `/style.<hash>.css`). A fingerprinted name is immutable for a
/// year, a plain one cached for a week; an unknown one is the site's 404 page,
/// which is not cached.
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let assets = init();
    let requested = uri.path().trim_start_matches('/');
    let (name, cache) = match assets.original.get(requested) {
        Some(original) => (original.as_str(), "public, max-age=31536000, immutable"),
        None => (requested, "public, max-age=604800"),
    };
    let Some(file) = assets.files.get(name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (brotli, gzip) = accepted(&headers);
    let (body, encoding) = match (&file.brotli, &file.gzip) {
        (Some(packed), _) if brotli => (packed.clone(), Some("br")),
        (_, Some(packed)) if gzip => (packed.clone(), Some("gzip")),
        _ => (file.identity.clone(), None),
    };
    let etag = format!(
        "\"{:016x}{}\"",
        file.hash,
        encoding.map_or("", |e| if e == "br" { "-br" } else { "-gz" })
    );
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
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
        let url = assets.urls.get("style.css").expect("style.css");
        let css = url.strip_prefix("/static/").expect("under /static/");
        assert!(css.starts_with("style.") && css.ends_with(".css"), "{css}");
        assert_eq!(
            assets.original.get(css).map(String::as_str),
            Some("style.css")
        );
        assert!(assets.urls.contains_key("products/blue-teapot.svg"));
        let file = &assets.files["style.css"];
        assert_eq!(file.content_type, "text/css");
        assert!(file.brotli.as_ref().unwrap().len() < file.identity.len());
        assert!(file.gzip.as_ref().unwrap().len() < file.identity.len());
    }

    #[test]
    fn accepted_encodings_honour_refusals() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            h
        };
        assert_eq!(accepted(&headers("gzip, deflate, br")), (true, true));
        assert_eq!(accepted(&headers("gzip")), (false, true));
        assert_eq!(accepted(&headers("br;q=0, gzip;q=0.5")), (false, true));
        assert_eq!(accepted(&headers("*")), (true, true));
        assert_eq!(accepted(&HeaderMap::new()), (false, false));
    }
}

//! Compressed pages that cost next to nothing: most of a page is the same for
//! every visitor, so it is compressed once and its compressed bytes reused.
//!
//! A page is cut at the strings that change on every request (the one-time form
//! ids) or every session (the logout form's handle). Each piece between them is
//! compressed on its first appearance into self-contained deflate blocks that end
//! on a byte boundary (a sync flush), kept in a small cache, and the pieces are
//! joined into one gzip stream per answer, with the varying strings as stored
//! (uncompressed) blocks between them. Only the checksum is computed per answer.
//!
//! A piece may refer back to the piece before it (one product card to the last),
//! which is what makes a page of similar cards small: it is compressed with that
//! piece as its dictionary, and the varying strings between them as a run of
//! bytes no page contains (so nothing refers into them; a page that does contain
//! that byte is compressed whole, uncached). Its cache entry is therefore keyed
//! by the entry of the piece before it as well as by its own bytes.
//!
//! gzip rather than brotli: brotli streams cannot be joined like this, and
//! compressing a whole 12 KB page from scratch (brotli level 4, tower-http's
//! default) cost several times the page itself (docs/PERFORMANCE.md). Browsers
//! accept either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use flate2::{Compress, Compression, Crc, FlushCompress};

/// Bodies smaller than this are sent as they are: gzip's frame would eat most of
/// the saving.
const SMALLEST: usize = 512;

/// The most the cache holds (original and compressed bytes together) before it
/// starts again from empty: a site's pages are a few hundred pieces.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Stands for the varying strings in a piece's dictionary. HTML text never holds
/// it (a page that does is compressed whole).
const UNSEEN: u8 = 0x01;

/// Deflate looks back at most this far.
const WINDOW: usize = 32 * 1024;

/// The compressed pieces of pages, shared by every request of this replica.
#[derive(Debug, Default, Clone)]
pub struct Pieces(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    cache: RwLock<Cache>,
    /// Names cache entries; 0 is "no piece before".
    last_id: AtomicU64,
}

/// A piece is found by the entry of the piece before it, the length of the
/// varying strings between them, and its own checksum and length; its bytes are
/// kept to compare, so a checksum collision is a miss, never someone else's bytes.
type Key = (u64, usize, u32, usize);

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    original: Box<[u8]>,
    deflated: Box<[u8]>,
}

/// A piece compressed during this answer, for the cache once the answer is made.
struct Made {
    key: Key,
    entry: Entry,
}

/// Whether this request's answer may be gzipped.
pub fn wants_gzip(method: &Method, headers: &HeaderMap) -> bool {
    *method != Method::HEAD && crate::assets::accepted(headers).1
}

impl Pieces {
    /// The response gzipped, if it is an HTML page worth it; `varying` are the
    /// strings in it that change from one request to the next.
    pub async fn gzip_page(&self, response: Response<Body>, varying: &[&str]) -> Response<Body> {
        let compressible = response.status() != StatusCode::NO_CONTENT
            && !response.headers().contains_key(header::CONTENT_ENCODING)
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
        if !compressible {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        // Pages are rendered into one buffer: collecting it takes no waiting.
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(error = %err, "a page body could not be read for compression");
                return Response::from_parts(parts, Body::empty());
            }
        };
        parts
            .headers
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        if bytes.len() < SMALLEST {
            return Response::from_parts(parts, Body::from(bytes));
        }
        let packed = self.gzip(&bytes, varying);
        parts
            .headers
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(packed))
    }

    /// One gzip stream of `page`: cached deflate blocks for the pieces between the
    /// `varying` strings, stored blocks for those strings.
    pub fn gzip(&self, page: &[u8], varying: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(page.len() / 4 + 256);
        // Header: magic, deflate, no flags, no time, no extra flags, unknown OS.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        if page.contains(&UNSEEN) {
            out.extend_from_slice(&deflate(page, &[]));
        } else {
            self.join(&mut out, page, varying);
        }
        // The last block: an empty final block of fixed Huffman codes.
        out.extend_from_slice(&[0x03, 0x00]);
        let mut crc = Crc::new();
        crc.update(page);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(page.len() as u32).to_le_bytes());
        out
    }

    /// The deflate blocks of `page`, piece by piece.
    fn join(&self, out: &mut Vec<u8>, page: &[u8], varying: &[&str]) {
        let mut made: Vec<Made> = Vec::new();
        // The piece before (its entry and its bytes) and the varying bytes since.
        let mut before: (u64, &[u8]) = (0, &[]);
        let mut gap = 0;
        let mut at = 0;
        let end = std::iter::once((page.len(), page.len()));
        for (start, stop) in cuts(page, varying).into_iter().chain(end) {
            let piece = &page[at..start];
            if !piece.is_empty() {
                let key = (before.0, gap, checksum(piece), piece.len());
                let found = {
                    let cache = self.0.cache.read().unwrap_or_else(|e| e.into_inner());
                    cache.get(&key, piece).map(|(id, deflated)| {
                        out.extend_from_slice(deflated);
                        id
                    })
                };
                let id = match found {
                    Some(id) => id,
                    None => {
                        let deflated = deflate(piece, &dictionary(before.1, gap));
                        out.extend_from_slice(&deflated);
                        let id = self.0.last_id.fetch_add(1, Ordering::Relaxed) + 1;
                        let entry = Entry {
                            id,
                            original: piece.into(),
                            deflated: deflated.into(),
                        };
                        made.push(Made { key, entry });
                        id
                    }
                };
                before = (id, piece);
                gap = 0;
            }
            stored(out, &page[start..stop]);
            gap += stop - start;
            at = stop;
        }
        if !made.is_empty() {
            let mut cache = self.0.cache.write().unwrap_or_else(|e| e.into_inner());
            for Made { key, entry } in made {
                cache.insert(key, entry);
            }
        }
    }
}

impl Cache {
    fn get(&self, key: &Key, piece: &[u8]) -> Option<(u64, &[u8])> {
        let entry = self.entries.get(key)?;
        (*entry.original == *piece).then_some((entry.id, &*entry.deflated))
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        let size = entry.original.len() + entry.deflated.len();
        if self.bytes + size > CACHE_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.original.len() + old.deflated.len();
        }
        self.bytes += size;
    }
}

fn checksum(bytes: &[u8]) -> u32 {
    let mut crc = Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// What a piece may refer back to: the piece before it, then as many bytes as
/// the varying strings between them take, of a value no page holds.
fn dictionary(before: &[u8], gap: usize) -> Vec<u8> {
    if before.is_empty() || gap >= WINDOW {
        return Vec::new();
    }
    let keep = before.len().min(WINDOW - gap);
    let mut dictionary = Vec::with_capacity(keep + gap);
    dictionary.extend_from_slice(&before[before.len() - keep..]);
    dictionary.resize(keep + gap, UNSEEN);
    dictionary
}

/// Where the varying strings are in `page`, in order, as (start, end); empty
/// strings and overlaps are ignored.
fn cuts(page: &[u8], varying: &[&str]) -> Vec<(usize, usize)> {
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for needle in varying.iter().filter(|v| !v.is_empty()) {
        cuts.extend(
            memchr::memmem::find_iter(page, needle.as_bytes())
                .map(|start| (start, start + needle.len())),
        );
    }
    cuts.sort_unstable();
    let mut end = 0;
    cuts.retain(|&(start, stop)| {
        let keep = start >= end;
        if keep {
            end = stop;
        }
        keep
    });
    cuts
}

/// `bytes` as stored deflate blocks (at most 65,535 bytes each), not final.
fn stored(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(u16::MAX as usize) {
        let len = chunk.len() as u16;
        // BFINAL 0, BTYPE 00, padded to the byte boundary we are on.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// `piece` as raw deflate blocks ending on a byte boundary (a sync flush), so
/// that anything may follow it, referring back into `dictionary` (the bytes the
/// stream holds just before it): compressed once per piece, at the default level.
fn deflate(piece: &[u8], dictionary: &[u8]) -> Vec<u8> {
    let plain = || {
        let mut plain = Vec::with_capacity(piece.len() + 16);
        stored(&mut plain, piece);
        plain
    };
    let mut compressor = Compress::new(Compression::default(), false);
    if !dictionary.is_empty() && compressor.set_dictionary(dictionary).is_err() {
        return plain();
    }
    let mut out = Vec::with_capacity(piece.len() + piece.len() / 8 + 64);
    loop {
        let consumed = compressor.total_in() as usize;
        let status = compressor.compress_vec(&piece[consumed..], &mut out, FlushCompress::Sync);
        let done = compressor.total_in() as usize == piece.len() && out.len() < out.capacity();
        match status {
            Ok(_) if done => return out,
            Ok(_) => out.reserve(out.capacity().max(64)),
            // Compressing into memory does not fail; should it, the piece goes stored.
            Err(_) => return plain(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("a valid gzip stream");
        out
    }

    fn page(token: &str) -> String {
        let card = |i: usize| {
            format!(
                "<li class=\"product-card\"><h2>Teapot {i}</h2><form method=\"post\" \
                 action=\"/cart/add\"><input type=\"hidden\" name=\"submission\" \
                 value=\"{token}-a{i}\"><button>Add to cart</button></form></li>\n"
            )
        };
        let cards: String = (1..=12).map(card).collect();
        format!("<!doctype html><html><body><ul>{cards}</ul></body></html>")
    }

    #[test]
    fn a_page_joined_from_cached_pieces_is_the_page() {
        let pieces = Pieces::default();
        for token in [
            "0123456789abcdef0123456789abcdef",
            "ffeeddccbbaa99887766554433221100",
        ] {
            let page = page(token);
            let packed = pieces.gzip(page.as_bytes(), &[token]);
            assert_eq!(gunzip(&packed), page.as_bytes());
            // The ids travel as they are, each in a stored block of its own:
            // nothing compressed alongside them can tell anything about them.
            let verbatim = packed
                .windows(token.len())
                .filter(|w| *w == token.as_bytes())
                .count();
            assert_eq!(verbatim, 12);
            // Each card refers back to the one before: hardly bigger than the whole
            // page compressed at once, plus the ids sent as they are.
            let whole = deflate(page.as_bytes(), &[]).len();
            assert!(
                packed.len() <= whole + 12 * 48,
                "{} against {whole}",
                packed.len()
            );
        }
        // The second page reused the first one's 13 pieces: the head, the 11
        // stretches between two cards' ids (each after the one before), the tail.
        let cache = pieces.0.cache.read().unwrap();
        assert_eq!(cache.entries.len(), 13);
    }

    #[test]
    fn pages_with_nothing_varying_or_everything_varying_are_valid() {
        let pieces = Pieces::default();
        let page = page("x");
        assert_eq!(gunzip(&pieces.gzip(page.as_bytes(), &[])), page.as_bytes());
        assert_eq!(
            gunzip(&pieces.gzip(page.as_bytes(), &[&page])),
            page.as_bytes()
        );
        assert_eq!(gunzip(&pieces.gzip(b"", &[])), b"");
        let long = "é".repeat(70_000);
        assert_eq!(
            gunzip(&pieces.gzip(long.as_bytes(), &[&long])),
            long.as_bytes()
        );
    }

    #[test]
    fn a_checksum_collision_is_a_miss() {
        let mut cache = Cache::default();
        let first = b"first piece of a page";
        let entry = Entry {
            id: 1,
            original: first.as_slice().into(),
            deflated: deflate(first, &[]).into(),
        };
        let other = b"other piece of a page";
        let key = (0, 0, checksum(other), other.len());
        cache.insert(key, entry);
        assert_eq!(cache.get(&key, other), None);
        assert!(cache.get(&key, first).is_some());
    }

    #[test]
    fn varying_strings_side_by_side_and_a_page_holding_the_unseen_byte_are_valid() {
        let pieces = Pieces::default();
        let page = "<p>aaaa</p>TOKENhandle<p>aaaa</p>TOKEN<p>aaaa</p>handle";
        for _ in 0..2 {
            let packed = pieces.gzip(page.as_bytes(), &["TOKEN", "handle"]);
            assert_eq!(gunzip(&packed), page.as_bytes());
        }
        let odd = format!("{}\u{1}{}", page, page);
        let packed = pieces.gzip(odd.as_bytes(), &["TOKEN"]);
        assert_eq!(gunzip(&packed), odd.as_bytes());
    }

    #[test]
    fn the_cache_starts_again_when_full() {
        let pieces = Pieces::default();
        for i in 0..2_000 {
            let page = format!("{i:08} {}", "a unique page body ".repeat(60));
            let packed = pieces.gzip(page.as_bytes(), &[]);
            assert_eq!(gunzip(&packed), page.as_bytes());
        }
        assert!(pieces.0.cache.read().unwrap().bytes <= CACHE_BYTES);
    }
}

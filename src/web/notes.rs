//! What one request's layers tell each other, beside what handlers return: the
//! layout as the page found it (so an error page drawn later keeps the header),
//! and whether a write was applied (so a failure after it is not called "nothing
//! changed").

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::layout::Layout;

/// What one request's layers tell each other: put in the request's extensions by
/// the outermost page middleware (`site_answers`), filled in on the way.
#[derive(Debug, Default)]
pub struct RequestNotes {
    /// The layout data as the page extractor found it, so an error page drawn
    /// later keeps the whole header.
    pub layout: Mutex<Option<Layout>>,
    /// Set when a write was applied: where its success redirect goes. If saving the
    /// session fails afterwards, the visitor is still sent there, not told to retry.
    pub applied: Mutex<Option<String>>,
    /// Set when the page showed the `notice` cookie's message: the response removes it.
    pub notice_shown: Mutex<bool>,
    /// The strings in the page that change on every request or session (one-time
    /// form ids, the logout handle): where its compression cuts it (`web::compress`).
    pub varying: Mutex<Vec<String>>,
}

impl RequestNotes {
    pub fn of(parts: &Parts) -> Option<Arc<RequestNotes>> {
        parts.extensions.get::<Arc<RequestNotes>>().cloned()
    }

    pub fn layout(&self) -> Option<Layout> {
        self.layout.lock().expect("notes lock").clone()
    }

    pub fn is_degraded(&self) -> bool {
        self.layout().is_some_and(|c| c.degraded)
    }

    pub fn notice_shown(&self) -> bool {
        *self.notice_shown.lock().expect("notes lock")
    }

    pub fn varying(&self) -> Vec<String> {
        std::mem::take(&mut *self.varying.lock().expect("notes lock"))
    }

    pub fn applied(&self) -> Option<String> {
        self.applied.lock().expect("notes lock").clone()
    }
}

/// Records, for the error layer, that a write was applied and where its success
/// redirect goes (see [`RequestNotes::applied`]).
#[derive(Debug, Clone, Default)]
pub struct WriteNotes(Option<Arc<RequestNotes>>);

impl<S: Send + Sync> FromRequestParts<S> for WriteNotes {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(WriteNotes(RequestNotes::of(parts)))
    }
}

impl WriteNotes {
    pub fn applied(&self, location: &str) {
        if let Some(notes) = &self.0 {
            *notes.applied.lock().expect("notes lock") = Some(location.to_owned());
        }
    }
}

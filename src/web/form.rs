//! Reading forms. Every field arrives as an optional string and is parsed by the
//! domain types (`Quantity`, `Username`, …), so each mistake gets its own sentence
//! instead of a serde error. Here only the envelope is checked: content type and size.

use axum::extract::{FromRequest, RawForm, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// `axum::Form`, with rejections turned into the site's error pages.
///
/// Read as axum's `RawForm` (the same content type check and body) and decoded
/// by `serde_urlencoded` directly: `axum::Form` also records the path to a field
/// that fails, an allocation per field, for an error message never shown here.
pub struct FormData<T>(pub T);

impl<T, S> FromRequest<S> for FormData<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let bytes = match RawForm::from_request(req, state).await {
            Ok(RawForm(bytes)) => bytes,
            Err(rejection) => {
                return Err(match rejection.status() {
                    // Body too large (413) and wrong content type (415) keep their
                    // status; the error page explains them.
                    status @ (StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::UNSUPPORTED_MEDIA_TYPE) => status.into_response(),
                    _ => form_error(&rejection).into_response(),
                });
            }
        };
        serde_urlencoded::from_bytes(&bytes)
            .map(FormData)
            .map_err(|err| form_error(&err).into_response())
    }
}

fn form_error(cause: &dyn std::fmt::Display) -> AppError {
    tracing::debug!(%cause, "unreadable form");
    AppError::bad_request("The form could not be read. Please go back and try again.")
}

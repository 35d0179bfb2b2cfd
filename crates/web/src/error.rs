//! Failures of a request and the answer each gets: the API answers JSON `{"error": …}`, pages a
//! short HTML page; the status code is the same for both.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_archive::ArchiveError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in first")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Also for another tenant's ids and messages outside one's visibility: they do not exist for
    /// the asker.
    #[error("not found")]
    NotFound,
    /// A message that was deleted under a retention rule or an approval: what is left of it.
    #[error("{0}")]
    Gone(String),
    /// An upload over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Too much of one kind of work waits already (429): try again when some has finished.
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Gone(_) => StatusCode::GONE,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn public_message(&self) -> String {
        match self {
            // Details of internal failures go to the log, not to the browser.
            WebError::Internal(_) => "internal error; the server log has the details".into(),
            // They name internal hosts, paths and OS errors: for the log, not for any visitor.
            WebError::Unavailable(_) => {
                "temporarily unavailable; try again later (the server log has the details)".into()
            }
            other => other.to_string(),
        }
    }

    fn log(&self) {
        match self {
            WebError::Internal(e) => tracing::error!(error = %e, "request failed"),
            WebError::Unavailable(e) => tracing::warn!(error = %e, "request failed for now"),
            _ => {}
        }
    }
}

/// The one mapping from the archive's failures to HTTP: by class, so the same failure gets the
/// same status through every route.
impl From<ArchiveError> for WebError {
    fn from(e: ArchiveError) -> Self {
        use coffer_archive::Class;
        match (e.class(), e) {
            (_, ArchiveError::NotFound) => WebError::NotFound,
            (_, ArchiveError::Deleted(m)) => WebError::Gone(m),
            (_, ArchiveError::Forbidden(m)) => WebError::Forbidden(m),
            (_, ArchiveError::Catalog(coffer_archive::CatalogError::Invalid(m))) => WebError::BadRequest(m),
            (Class::Refused | Class::PermanentForMessage, e) => WebError::BadRequest(e.to_string()),
            (Class::Transient, e) => WebError::Unavailable(e.to_string()),
            (Class::Fatal, e) => WebError::Internal(e.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for WebError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        WebError::BadRequest(format!("the request body is not the JSON this operation takes: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for WebError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        // An id that cannot exist is simply not found.
        WebError::NotFound
    }
}

impl From<axum::extract::rejection::QueryRejection> for WebError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        WebError::BadRequest(format!("query parameters: {}", e.body_text()))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.log();
        (self.status(), axum::Json(serde_json::json!({ "error": self.public_message() }))).into_response()
    }
}

/// A page's failure: the same status, as HTML.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let body = format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>{code} · Coffer</title>\
             <link rel=stylesheet href=/static/coffer.css></head><body class=error-page><main>\
             <h1>{code} {reason}</h1><p class=error>{message}</p><p><a href=/search>Back to search</a></p>\
             </main></body></html>",
            code = status.as_u16(),
            reason = status.canonical_reason().unwrap_or(""),
            message = crate::render::escape(&self.0.public_message()),
        );
        (status, axum::response::Html(body)).into_response()
    }
}

//! Imports of uploaded files: `/api/v1/imports` (the request body is the file) and
//! Configuration → Volumes → Import (a multipart form). The upload streams into the archive's
//! spool within `max_upload_bytes`; the archive then checks it and queues the import
//! (`coffer_archive::imports`), so both routes refuse and report alike.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::ArchiveError;
use coffer_archive::imports::{ImportJob, Staged, UploadOptions};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiError, Path, Query};
use crate::auth::Principal;
use crate::error::PageError;
use crate::{Console, WebError};

/// Most bytes of a short form field (mailbox, folder, tenant, a checkbox).
const FIELD_BYTES: usize = 1024;

pub fn api_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/imports", get(list_api).post(start_api).layer(DefaultBodyLimit::disable()))
        .route("/imports/{id}", get(get_api))
}

pub fn page_routes() -> Router<Arc<Console>> {
    Router::new().route("/config/volumes/import", post(start_page).layer(DefaultBodyLimit::disable()))
}

/// An import of an uploaded file.
#[derive(Serialize, ToSchema)]
pub struct ApiImport {
    pub id: u64,
    /// The uploaded file's name.
    pub file: String,
    pub bytes: u64,
    /// What the import reads (the upload, or what its zip unpacked to), and how much of it was
    /// read so far.
    pub to_read: u64,
    pub read: u64,
    /// Who started it.
    pub by: String,
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    /// `waiting`, `running`, `done` (messages may still have failed: see `failed`) or `failed`.
    pub state: String,
    /// RFC 3339.
    pub started: String,
    pub finished: Option<String>,
    pub imported: u64,
    pub duplicates: u64,
    /// Archived, but unparseable or malformed.
    pub flagged: u64,
    pub failed: u64,
    /// The first failed messages, each as `origin: why`.
    pub failures: Vec<String>,
    /// Why the whole import failed or stopped early.
    pub error: Option<String>,
}

impl From<ImportJob> for ApiImport {
    fn from(j: ImportJob) -> Self {
        use coffer_archive::service::rfc3339;
        ApiImport {
            id: j.id,
            file: j.file,
            bytes: j.bytes,
            to_read: j.to_read,
            read: j.summary.bytes,
            by: j.by,
            mailbox: j.mailbox,
            folder: j.folder,
            state: j.state,
            started: rfc3339(j.started),
            finished: j.finished.map(rfc3339),
            imported: j.summary.imported,
            duplicates: j.summary.duplicates,
            flagged: j.summary.flagged,
            failed: j.summary.failed,
            failures: j.failures,
            error: j.error,
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct ImportParams {
    /// The file's name (an mbox's name becomes its folder).
    name: Option<String>,
    /// The tenant to import into (administrators of the default tenant); default: the caller's.
    tenant: Option<String>,
    /// The mailbox the messages belong to, e.g. `alice@contoso.com`.
    mailbox: Option<String>,
    /// A folder to put everything under.
    folder: Option<String>,
    /// Archive files that are not mail (a PST, a PDF) as single messages instead of refusing.
    #[serde(default)]
    as_eml: bool,
}

/// Imports the request body: an mbox, one message, or a zip of EML files or of a Maildir.
/// Checked before anything is stored; the import then runs in the background (two at once, the
/// rest wait): poll `/imports/{id}`.
#[utoipa::path(post, path = "/imports", params(ImportParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = ApiImport), (status = 400, body = ApiError), (status = 413, body = ApiError),
        (status = 429, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn start_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(p): Query<ImportParams>,
    body: axum::body::Body,
) -> Result<Response, WebError> {
    who.require(crate::auth::Role::Administrator)?;
    let staged = receive(&console, p.name.as_deref().unwrap_or("upload"), body.into_data_stream()).await?;
    let options = UploadOptions { tenant: p.tenant, mailbox: p.mailbox, folder: p.folder, as_eml: p.as_eml };
    let job = start(&console, &who, staged, options).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(ApiImport::from(job))).into_response())
}

/// Imports of uploaded files, newest first: the caller's tenant's (every tenant's for
/// administrators of the default tenant). Kept while the server runs.
#[utoipa::path(get, path = "/imports",
    responses((status = 200, body = Vec<ApiImport>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn list_api(
    State(console): State<Arc<Console>>,
    who: Principal,
) -> Result<axum::Json<Vec<ApiImport>>, WebError> {
    let list = console.archive.imports().list(&who.actor())?;
    Ok(axum::Json(list.into_iter().map(ApiImport::from).collect()))
}

/// One import: its state, counts so far, first failures.
#[utoipa::path(get, path = "/imports/{id}", params(("id" = u64, Path)),
    responses((status = 200, body = ApiImport), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn get_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<u64>,
) -> Result<axum::Json<ApiImport>, WebError> {
    Ok(axum::Json(console.archive.imports().get(&who.actor(), id)?.into()))
}

/// Configuration → Volumes → Import: the form's file and settings; a refusal shows the Volumes
/// page again with the reason beside the form.
async fn start_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    mut form: Multipart,
) -> Result<Response, PageError> {
    who.require_system_admin()?;
    let mut options = UploadOptions::default();
    let mut staged = None;
    let outcome: Result<ImportJob, WebError> = async {
        while let Some(field) = form.next_field().await.map_err(bad_form)? {
            match field.name().unwrap_or("") {
                "file" => {
                    let name = field.file_name().unwrap_or("upload").to_owned();
                    staged = Some(receive(&console, &name, field).await?);
                }
                "tenant" => options.tenant = Some(small(field).await?),
                "mailbox" => options.mailbox = Some(small(field).await?),
                "folder" => options.folder = Some(small(field).await?),
                "as_eml" => options.as_eml = !small(field).await?.is_empty(),
                _ => {
                    small(field).await?;
                }
            }
        }
        let staged = staged.take().ok_or_else(|| WebError::BadRequest("choose a file to import".into()))?;
        start(&console, &who, staged, options.clone()).await
    }
    .await;
    match outcome {
        Ok(_) => Ok(Redirect::to("/config/volumes#imports").into_response()),
        Err(e @ (WebError::BadRequest(_) | WebError::TooLarge(_) | WebError::TooMany(_))) => {
            let status = e.status();
            let page = crate::pages::render_volumes(&console, &who, Some(e.to_string()), &options).await?;
            Ok((status, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn bad_form(e: axum::extract::multipart::MultipartError) -> WebError {
    WebError::BadRequest(format!("the form could not be read: {}", e.body_text()))
}

/// A short form field, read no further than [`FIELD_BYTES`].
pub(crate) async fn small(mut field: axum::extract::multipart::Field<'_>) -> Result<String, WebError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        if bytes.len() + chunk.len() > FIELD_BYTES {
            return Err(WebError::BadRequest(format!("a form field is longer than {FIELD_BYTES} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| WebError::BadRequest("a form field is not UTF-8".into()))
}

/// Streams an upload into the spool, refusing it past `max_upload_bytes`; nothing of a refused
/// upload stays.
async fn receive<E: std::fmt::Display>(
    console: &Console,
    name: &str,
    mut body: impl Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
) -> Result<Staged, WebError> {
    let limit = console.config.max_upload_bytes;
    let staged = console.archive.imports().stage(&console.archive, name)?;
    let path = staged.path();
    let io = |e: std::io::Error| WebError::from(ArchiveError::Io("the import spool".into(), e));
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| WebError::BadRequest(format!("the upload was cut: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(WebError::TooLarge(format!(
                "the upload is larger than {} (http.max_upload_mib); import larger files with `coffer import` on the server",
                crate::render::human_bytes(limit as i64)
            )));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    if total == 0 {
        return Err(WebError::BadRequest("the upload is empty".into()));
    }
    Ok(staged)
}

async fn start(
    console: &Console,
    who: &Principal,
    staged: Staged,
    options: UploadOptions,
) -> Result<ImportJob, WebError> {
    match coffer_archive::imports::start(&console.archive, &who.actor(), staged, options).await {
        Err(ArchiveError::Saturated(why)) => Err(WebError::TooMany(why)),
        other => Ok(other?),
    }
}

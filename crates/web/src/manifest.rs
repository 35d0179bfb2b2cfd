//! Update Manifest, as the guide does it in the console: the administrator uploads the app
//! manifest downloaded from the Azure portal and enters the certificate's subject; Coffer makes
//! the Microsoft 365 connection's RSA certificate (when its alias has none yet), adds it to the
//! manifest's `keyCredentials` and hands the manifest back to upload in the portal. A connection
//! that could not start for want of that certificate then starts.
//! `POST /api/v1/connections/{name}/manifest` (the manifest as the body, the subject in the
//! query) and Configuration → Connections → Update Manifest (a multipart form).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use coffer_archive::certs::Subject;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::{ApiError, Path, Query};
use crate::auth::Principal;
use crate::error::PageError;
use crate::{Console, WebError};

/// A manifest is a small JSON document; more is not one.
const MAX_MANIFEST: usize = 1 << 20;

pub fn api_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/connections/{name}/manifest", post(manifest_api).layer(DefaultBodyLimit::max(MAX_MANIFEST + 1024)))
}

pub fn page_routes() -> Router<Arc<Console>> {
    Router::new().route(
        "/config/connections/{name}/manifest",
        post(manifest_page).layer(DefaultBodyLimit::max(MAX_MANIFEST + 64 * 1024)),
    )
}

/// The certificate's subject, as the guide asks for it.
#[derive(Deserialize, IntoParams, Default, Clone)]
#[serde(default)]
pub struct SubjectParams {
    /// Common name, e.g. `archive.contoso.com`.
    common_name: String,
    unit: String,
    organization: String,
    city: String,
    state: String,
    /// ISO 3166 code, e.g. `CH`.
    country: String,
}

impl SubjectParams {
    fn subject(&self) -> Subject {
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Subject {
            common_name: self.common_name.trim().to_owned(),
            organization: opt(&self.organization),
            unit: opt(&self.unit),
            city: opt(&self.city),
            state: opt(&self.state),
            country: opt(&self.country),
        }
    }
}

/// Adds the connection's certificate to the manifest; the updated manifest, and what became of
/// the connection.
async fn update(
    console: &Console,
    who: &Principal,
    name: &str,
    manifest: &[u8],
    subject: &SubjectParams,
) -> Result<(serde_json::Value, Option<String>), WebError> {
    who.require_system_admin()?;
    let connection = console.sources.connection(name).ok_or(WebError::NotFound)?;
    if connection.kind != "Microsoft 365" {
        return Err(WebError::BadRequest(format!("{name} is not a Microsoft 365 connection")));
    }
    let alias =
        connection.settings.iter().find(|(k, _)| k == "certificate").map(|(_, v)| v.clone()).unwrap_or_default();
    if manifest.len() > MAX_MANIFEST {
        return Err(WebError::BadRequest("a manifest is at most 1 MiB".into()));
    }
    let admin = console.archive.admin();
    let (updated, made) = admin.update_app_manifest(&who.actor(), &alias, &subject.subject(), manifest).await?;
    let started = match made {
        Some(_) => console
            .sources
            .retry(name)
            .await
            .map(|r| r.unwrap_or_else(|why| format!("{name} still cannot start: {why}"))),
        None => None,
    };
    Ok((updated, started))
}

/// Updates an Entra ID app manifest with the connection's certificate (made, RSA 2048, from the
/// subject when the connection's alias has none): upload the answer in the Azure portal
/// (App registrations → the app → Manifest). Audited.
#[utoipa::path(post, path = "/connections/{name}/manifest", params(("name" = String, Path), SubjectParams),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn manifest_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Query(subject): Query<SubjectParams>,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, WebError> {
    Ok(axum::Json(update(&console, &who, &name, &body, &subject).await?.0))
}

/// The form's manifest file and subject; the answer is the updated manifest as a download
/// (`<name>-manifest.json`), or the Connections page with the reason.
async fn manifest_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    mut form: Multipart,
) -> Result<Response, PageError> {
    let mut subject = SubjectParams::default();
    let mut manifest = None;
    let read: Result<(), WebError> = async {
        while let Some(mut field) = form.next_field().await.map_err(crate::imports::bad_form)? {
            let field_name = field.name().unwrap_or("").to_owned();
            if field_name == "manifest" {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(crate::imports::bad_form)? {
                    if bytes.len() + chunk.len() > MAX_MANIFEST {
                        return Err(WebError::BadRequest("a manifest is at most 1 MiB".into()));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                manifest = Some(bytes);
                continue;
            }
            let value = crate::imports::small(field).await?;
            match field_name.as_str() {
                "common_name" => subject.common_name = value,
                "unit" => subject.unit = value,
                "organization" => subject.organization = value,
                "city" => subject.city = value,
                "state" => subject.state = value,
                "country" => subject.country = value,
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    let outcome = match (read, manifest) {
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(WebError::BadRequest("choose the manifest downloaded from the Azure portal".into())),
        (Ok(()), Some(bytes)) => update(&console, &who, &name, &bytes, &subject).await,
    };
    match outcome {
        Ok((updated, _)) => {
            let body = serde_json::to_vec_pretty(&updated).map_err(|e| WebError::Internal(e.to_string()))?;
            let file = format!(
                "attachment; filename=\"{}-manifest.json\"",
                name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            );
            Ok(([(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, file)], body)
                .into_response())
        }
        Err(WebError::BadRequest(why)) => {
            let shown = crate::connections::Shown::outcome(&name, false, why);
            let mut page = crate::connections::render(&console, &who, shown).await?;
            *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(page)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_keeps_only_what_was_entered() {
        let s =
            SubjectParams { common_name: " archive.contoso.com ".into(), country: "CH".into(), ..Default::default() };
        let subject = s.subject();
        assert_eq!(subject.common_name, "archive.contoso.com");
        assert_eq!((subject.country.as_deref(), subject.city), (Some("CH"), None));
    }
}

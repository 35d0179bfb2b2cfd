//! Lookup for role assignments: `GET /api/v1/directory/lookup?user=` and Configuration → Login →
//! New role assignment ask Entra ID (Microsoft Graph, through the Microsoft 365 connection of the
//! sign-in's directory) for a person's groups and directory roles, and offer each as the
//! attribute and value an ID token carries (`groups`, `wids`); `POST
//! /api/v1/config/login/assignments` (and the page's Assign) puts one first in the list.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::catalog::RoleAssignment;
use coffer_archive::sources::DirectoryEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiError, Body, Query};
use crate::auth::Principal;
use crate::error::PageError;
use crate::settings::LoginSettings;
use crate::{Console, WebError};

pub fn api_routes() -> Router<Arc<Console>> {
    Router::new().route("/directory/lookup", get(lookup_api)).route("/config/login/assignments", post(assign_api))
}

pub fn page_routes() -> Router<Arc<Console>> {
    Router::new().route("/config/login/assignments", post(assign_page))
}

/// A person in the directory and the role assignments that would match them.
#[derive(Serialize, ToSchema)]
pub struct ApiDirectoryEntry {
    /// The object id (the ID token's `oid`).
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    /// What a role assignment can match, directory roles first.
    pub suggestions: Vec<Suggestion>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct Suggestion {
    /// The ID token claim: `wids` (directory role template ids) or `groups` (group object ids).
    pub attribute: String,
    pub value: String,
    /// What it is, in words.
    pub label: String,
}

fn suggestions(e: &DirectoryEntry) -> Vec<Suggestion> {
    let roles = e.roles.iter().map(|(template, name)| Suggestion {
        attribute: "wids".into(),
        value: template.clone(),
        label: format!("directory role {name}"),
    });
    let groups = e.groups.iter().map(|(id, name)| Suggestion {
        attribute: "groups".into(),
        value: id.clone(),
        label: format!("group {name}"),
    });
    roles.chain(groups).filter(|s| !s.value.is_empty()).collect()
}

/// Looks a person up in the Entra ID directory the console's sign-in uses.
pub(crate) async fn lookup(console: &Console, who: &Principal, user: &str) -> Result<ApiDirectoryEntry, WebError> {
    who.require_system_admin()?;
    let settings = LoginSettings::load(&console.archive).await?;
    if settings.oidc.provider != "entra" || settings.oidc.entra_tenant_id.is_empty() {
        return Err(WebError::BadRequest(
            "Lookup asks Entra ID: choose Microsoft Entra ID as the provider and save its directory id first".into(),
        ));
    }
    let admin = console.archive.admin();
    let entry =
        admin.directory_lookup(&who.actor(), console.sources.as_ref(), &settings.oidc.entra_tenant_id, user).await?;
    Ok(ApiDirectoryEntry {
        suggestions: suggestions(&entry),
        id: entry.id,
        user_principal_name: entry.user_principal_name,
        display_name: entry.display_name,
    })
}

#[derive(Deserialize, IntoParams)]
pub struct LookupParams {
    /// Sign-in name or mail address.
    user: String,
}

/// A person's directory roles and groups as role assignments would match them (Entra ID sign-in;
/// administrators of the default tenant; audited).
#[utoipa::path(get, path = "/directory/lookup", params(LookupParams),
    responses((status = 200, body = ApiDirectoryEntry), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn lookup_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(p): Query<LookupParams>,
) -> Result<axum::Json<ApiDirectoryEntry>, WebError> {
    Ok(axum::Json(lookup(&console, &who, &p.user).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct NewAssignment {
    pub attribute: String,
    pub value: String,
    /// `administrator`, `auditor` or `user`.
    pub role: String,
}

async fn assign(console: &Console, who: &Principal, a: NewAssignment) -> Result<(), WebError> {
    let settings = LoginSettings::load(&console.archive).await?;
    let assignment = RoleAssignment { attribute: a.attribute, value: a.value, role: a.role };
    Ok(console.archive.admin().add_role_assignment(&who.actor(), &settings.oidc.tenant, assignment).await?)
}

/// Puts a role assignment first in the sign-in's list, so it wins over the others (audited).
#[utoipa::path(post, path = "/config/login/assignments", request_body = NewAssignment,
    responses((status = 204), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn assign_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(a): Body<NewAssignment>,
) -> Result<Response, WebError> {
    assign(&console, &who, a).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn assign_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(a): Form<NewAssignment>,
) -> Result<Response, PageError> {
    assign(&console, &who, a).await?;
    Ok(Redirect::to("/config/login#new-role-assignment").into_response())
}

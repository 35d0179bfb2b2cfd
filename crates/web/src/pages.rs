//! The console's pages: sign-on, search with the folder tree, message view, status charts, audit
//! log, the user's API keys and the administrators' configuration pages. Every page reads through
//! the archive service with the signed-in user's actor; every change is validated and audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::Sort;
use coffer_archive::catalog::RoleAssignment;
use coffer_archive::export::ExportFormat;
use coffer_archive::service::now_secs;
use minijinja::context;
use serde::Deserialize;

use crate::auth::{Principal, Role, SIGNON_COOKIE};
use crate::charts::{Series, line_chart};
use crate::error::PageError;
use crate::render::page;
use crate::settings::{CLIENT_SECRET, LoginSettings};
use crate::{ClientAddr, Console, WebError};
use coffer_archive::identity::SignIn;

type PageResult = Result<Response, PageError>;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(home))
        .route("/signon", get(signon_form).post(signon))
        .route("/signonform.do", get(signon_form))
        .route("/setup", get(setup_form).post(setup))
        .route("/logout", post(logout))
        .route("/search", get(search))
        .route("/export", post(export))
        .route("/messages/{id}", get(message))
        .route("/messages/{id}/body", get(body))
        .route("/messages/{id}/raw", get(raw))
        .route("/messages/{id}/attachments/{n}", get(attachment))
        .route("/status", get(status))
        .route("/audit", get(audit))
        .route("/account", get(account))
        .route("/account/keys", post(add_key))
        .route("/account/keys/{id}/revoke", post(revoke_key))
        .route("/config", get(|| async { Redirect::to("/config/listeners") }))
        .route("/config/tenants/{id}/networks", post(allow_network))
        .route("/config/login", get(login_settings).post(save_login_settings))
        .route("/config/volumes", get(volumes))
        .route("/config/volumes/{id}/close", post(close_volume))
        .route("/config/certificates", get(certificates).post(generate_certificate))
        .route("/config/certificates/import", post(import_certificate))
        .route("/config/certificates/{alias}", get(download_certificate))
        .route("/config/users", get(users).post(add_user))
        .route("/config/users/{id}", post(update_user))
        .route("/config/tenants", get(tenants).post(add_tenant))
        .route("/config/tenants/{id}", post(edit_tenant))
        .route("/config/tenants/{id}/work", post(work_in_tenant))
        .route("/config/tenants/leave", post(leave_tenant))
        .route("/config/tenants/all", post(search_all_tenants))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/o365", get(webhook_get).post(webhook))
        .route("/static/{file}", get(asset))
        .fallback(fallback)
}

async fn fallback(
    State(console): State<Arc<Console>>,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<axum::Extension<ClientAddr>>,
) -> Response {
    if crate::oidc::is_callback(&console, &uri).await {
        return crate::oidc::callback(console, uri, headers, peer.map(|p| p.0)).await;
    }
    PageError(WebError::NotFound).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "coffer.css" => (include_str!("../static/coffer.css"), "text/css; charset=utf-8"),
        "coffer.js" => (include_str!("../static/coffer.js"), "text/javascript; charset=utf-8"),
        _ => return PageError(WebError::NotFound).into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

async fn home(State(console): State<Arc<Console>>, who: Option<Principal>) -> PageResult {
    if who.is_none() && LoginSettings::load(&console.archive).await?.sso_default {
        return Ok(Redirect::to("/login/oidc").into_response());
    }
    Ok(Redirect::to("/search").into_response())
}

#[derive(Deserialize, Default)]
struct SignonQuery {
    next: Option<String>,
}

async fn signon_form(State(console): State<Arc<Console>>, Query(q): Query<SignonQuery>) -> PageResult {
    render_signon(&console, q.next.as_deref(), None, "").await
}

/// The sign-on form. Its error is one of ours, never text from the address (a link could make the
/// page say anything); after a refusal the login typed stays in the form.
async fn render_signon(console: &Console, next: Option<&str>, error: Option<&str>, login: &str) -> PageResult {
    let settings = LoginSettings::load(&console.archive).await?;
    let token = crate::auth::random_token(16);
    let no_users = console.archive.identity().count_users().await? == 0;
    let html = page(
        console,
        None,
        "signon.html",
        context! { signon_token => token, next, error, login, sso => settings.oidc.enabled, no_users },
    )?;
    let cookie = crate::auth::set_cookie(console, SIGNON_COOKIE, &token, Some(3600));
    let status = if error.is_some() { axum::http::StatusCode::UNAUTHORIZED } else { axum::http::StatusCode::OK };
    Ok((status, [(header::SET_COOKIE, cookie)], html).into_response())
}

#[derive(Deserialize)]
struct SignonForm {
    login: String,
    password: String,
    signon_token: String,
    next: Option<String>,
}

async fn signon(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<ClientAddr>>,
    Form(f): Form<SignonForm>,
) -> PageResult {
    // Double submit: a page on another site cannot read our cookie to put it in the form.
    if crate::auth::cookie(&headers, SIGNON_COOKIE).as_deref() != Some(f.signon_token.as_str()) {
        return Err(WebError::Forbidden("the sign-on form expired; reload it and sign in again".into()).into());
    }
    let ip = peer.map(|p| p.0.0.ip().to_string()).unwrap_or_else(|| "unknown".into());
    match crate::auth::sign_in_locally(&console, &f.login, &f.password, &ip).await? {
        SignIn::Ok(account) => {
            let session = crate::auth::start_session(&console, &account, &ip).await?;
            let clear = crate::auth::set_cookie(&console, SIGNON_COOKIE, "", Some(0));
            Ok(crate::auth::redirect_with_cookies(&crate::auth::safe_next(f.next.as_deref()), &[session, clear]))
        }
        // One answer for both, so it does not tell which logins exist; the audit log tells
        // administrators which it was.
        SignIn::Refused | SignIn::Locked => render_signon(&console, f.next.as_deref(), Some(REFUSED), &f.login).await,
    }
}

#[derive(Deserialize, Default)]
struct SetupQuery {
    #[serde(default)]
    token: String,
}

/// The first administrator, through the one-time link `coffer serve` prints while no account
/// exists. Once one exists, the link leads to the sign-on form.
async fn setup_form(State(console): State<Arc<Console>>, Query(q): Query<SetupQuery>) -> PageResult {
    render_setup(&console, &q.token, None, &NewAccountForm::default()).await
}

#[derive(Deserialize, Default)]
struct NewAccountForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

async fn render_setup(console: &Console, token: &str, error: Option<String>, f: &NewAccountForm) -> PageResult {
    let identity = console.archive.identity();
    if identity.count_users().await? > 0 {
        return Ok(Redirect::to("/signon").into_response());
    }
    let valid = identity.setup_token_is_valid(token).await?;
    let status =
        if valid && error.is_none() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    let html = page(
        console,
        None,
        "setup.html",
        context! { valid, token, error, login => f.login, display_name => f.display_name, min => coffer_archive::admin::MIN_PASSWORD },
    )?;
    Ok((status, html).into_response())
}

async fn setup(
    State(console): State<Arc<Console>>,
    peer: Option<axum::Extension<ClientAddr>>,
    Form(f): Form<NewAccountForm>,
) -> PageResult {
    if f.password != f.repeat {
        return render_setup(&console, &f.token, Some("The two passwords differ.".into()), &f).await;
    }
    let ip = peer.map(|p| p.0.0.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let new = coffer_archive::admin::NewAccount {
        login: f.login.clone(),
        display_name: f.display_name.clone(),
        role: "administrator".into(),
        password: f.password.clone(),
        addresses: Vec::new(),
    };
    match console.archive.identity().create_first_administrator(&f.token, &new, &ip).await {
        Ok(account) => {
            let session = crate::auth::start_session(&console, &account, &ip).await?;
            Ok(crate::auth::redirect_with_cookies("/search", &[session]))
        }
        Err(e) => match WebError::from(e) {
            WebError::BadRequest(m) | WebError::Forbidden(m) => render_setup(&console, &f.token, Some(m), &f).await,
            other => Err(other.into()),
        },
    }
}

const REFUSED: &str = "Wrong login or password, or the account is locked after repeated failures (for a while; an administrator unlocks it by setting a new password).";

async fn logout(State(console): State<Arc<Console>>, who: Principal, headers: HeaderMap) -> PageResult {
    crate::auth::end_session(&console, &headers).await?;
    console.audit(&who.actor(), "sign-out", "").await?;
    let clear = crate::auth::set_cookie(&console, crate::auth::SESSION_COOKIE, "", Some(0));
    Ok(crate::auth::redirect_with_cookies("/signon", &[clear]))
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: usize,
    sort: Option<String>,
}

const PAGE_SIZE: usize = 50;

/// A folder in the tree on the search page: its messages and its subfolders'.
#[derive(serde::Serialize, Default)]
struct FolderNode {
    name: String,
    query: String,
    /// Messages here and in every subfolder.
    count: i64,
    /// The query shown is this folder's.
    selected: bool,
    /// The selection is here or below: the branch stays open.
    open: bool,
    children: Vec<FolderNode>,
}

/// Mailboxes with their folders as trees (`Inbox/Projects/2024` under `Inbox` under `Projects`).
fn folder_tree(folders: &[coffer_archive::catalog::FolderRow], query: &str) -> Vec<FolderNode> {
    let mut mailboxes: BTreeMap<&str, FolderNode> = BTreeMap::new();
    for f in folders {
        let mailbox = mailboxes.entry(&f.mailbox).or_insert_with(|| FolderNode {
            name: f.mailbox.clone(),
            query: format!("mailbox:\"{}\"", f.mailbox),
            ..Default::default()
        });
        mailbox.count += f.messages;
        let mut node = mailbox;
        let mut path = String::new();
        for part in f.folder.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            let at = match node.children.iter().position(|c| c.name == part) {
                Some(i) => i,
                None => {
                    node.children.push(FolderNode {
                        name: part.to_owned(),
                        query: format!("mailbox:\"{}\" folder:\"{}\"", f.mailbox, path),
                        ..Default::default()
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at];
            node.count += f.messages;
        }
    }
    fn mark(node: &mut FolderNode, query: &str) -> bool {
        node.children.sort_by(|a, b| a.name.cmp(&b.name));
        node.selected = node.query == query;
        let below = node.children.iter_mut().fold(false, |any, c| mark(c, query) || any);
        node.open = node.selected || below;
        node.open
    }
    fn open_all(node: &mut FolderNode) {
        node.open = true;
        node.children.iter_mut().for_each(open_all);
    }
    let mut out: Vec<FolderNode> = mailboxes.into_values().collect();
    // A small tree is shown whole; a large one only along the selection.
    let small = folders.len() <= 50;
    for m in &mut out {
        mark(m, query.trim());
        if small {
            open_all(m);
        }
        m.open = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_keep_data_urls_in_a_cleaned_body() {
        let html = "<img src=\"data:image/png;base64,AAAA\"><img src=\"data:image/svg+xml,<svg onload=alert(1)>\">\
<a href=\"data:text/html,<script>alert(1)</script>\">x</a><img src=\"https://remote.example/p.png\">";
        let clean = clean_html(html);
        assert!(clean.contains("<img src=\"data:image/png;base64,AAAA\">"), "{clean}");
        assert!(!clean.contains("svg") && !clean.contains("text/html"), "{clean}");
        assert!(
            clean.contains("https://remote.example/p.png"),
            "remote images stay for the frame's CSP to block: {clean}"
        );
    }

    #[test]
    fn folders_become_a_tree_with_the_selection_marked_and_its_branch_open() {
        let row = |folder: &str, messages| coffer_archive::catalog::FolderRow {
            mailbox: "alice@contoso.com".into(),
            folder: folder.into(),
            messages,
        };
        let mut rows = vec![row("Inbox", 3), row("Inbox/Projects", 2), row("Inbox/Projects/2024", 1), row("Sent", 4)];
        // Enough folders that only the selection's branch is open.
        rows.extend((0..60).map(|i| row(&format!("Archive/{i}"), 1)));
        let tree = folder_tree(&rows, "mailbox:\"alice@contoso.com\" folder:\"Inbox/Projects\"");
        assert_eq!(tree.len(), 1);
        let mailbox = &tree[0];
        assert_eq!(mailbox.count, 70);
        let names: Vec<&str> = mailbox.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Archive", "Inbox", "Sent"]);
        assert!(!mailbox.children[0].open, "Archive stays closed");
        assert_eq!(neighbours(&page_ids("5,9,12"), 9), (Some(5), Some(12)));
        assert_eq!(neighbours(&page_ids("5,9,12"), 5), (None, Some(9)));
        assert_eq!(neighbours(&page_ids("5,x,12"), 12), (None, None), "a list that does not read gives no neighbours");
        let inbox = &mailbox.children[1];
        assert_eq!((inbox.count, inbox.open, inbox.selected), (6, true, false));
        let projects = &inbox.children[0];
        assert_eq!((projects.name.as_str(), projects.count, projects.selected), ("Projects", 3, true));
        assert_eq!(projects.children[0].name, "2024");
        assert_eq!(
            folder_tree(&rows[..4], "").iter().flat_map(|m| &m.children).filter(|c| c.open).count(),
            2,
            "a small tree is open"
        );
    }
}

async fn search(State(console): State<Arc<Console>>, who: Principal, Query(q): Query<SearchQuery>) -> PageResult {
    let actor = who.actor();
    let sort = q.sort.as_deref().and_then(Sort::parse).unwrap_or_default();
    let folders = console.archive.folders(&actor).await?;
    let tree = folder_tree(&folders, &q.q);
    let (result, error) =
        match console.archive.search(&actor, &q.q, PAGE_SIZE, q.page.saturating_mul(PAGE_SIZE), sort, true).await {
            Ok(r) => (Some(r), None),
            Err(e) => match WebError::from(e) {
                WebError::BadRequest(m) => (None, Some(m)),
                other => return Err(other.into()),
            },
        };
    let pages = result.as_ref().map(|r| r.total.div_ceil(PAGE_SIZE)).unwrap_or(0);
    // An empty archive, seen by an administrator: the first steps, with the journal address.
    let getting_started =
        (q.q.is_empty() && who.role >= Role::Administrator && result.as_ref().is_some_and(|r| r.total == 0))
            .then(|| who.tenant.journal_address(&console.archive.config.journal_domain));
    let html = page(
        &console,
        Some(&who),
        "search.html",
        context! {
            back => format!(
                "/search?q={}&sort={}&page={}",
                url::form_urlencoded::byte_serialize(q.q.as_bytes()).collect::<String>(),
                sort.name(),
                q.page
            ),
            q => q.q, page => q.page, pages, sort => sort.name(), result, error, tree, getting_started,
            first => q.page.saturating_mul(PAGE_SIZE).saturating_add(1),
        },
    )?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    q: String,
    format: String,
}

async fn export(State(console): State<Arc<Console>>, who: Principal, Form(f): Form<ExportForm>) -> PageResult {
    Ok(export_response(&console, &who, &f.q, &f.format).await?)
}

/// Exports a result set to a temporary file and streams it back (zip of .eml with SHA-256
/// manifest, or mbox). Only auditors and administrators export.
pub async fn export_response(
    console: &Console,
    who: &Principal,
    query: &str,
    format: &str,
) -> Result<Response, WebError> {
    who.require(Role::Auditor)?;
    let (format, name, kind) = match format {
        "mbox" => (ExportFormat::Mbox, "export.mbox", "application/mbox"),
        "zip" | "eml" => (ExportFormat::EmlZip, "export.zip", "application/zip"),
        other => return Err(WebError::BadRequest(format!("export format {other:?}: use zip or mbox"))),
    };
    let dir = console.archive.data_dir().join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| WebError::Internal(e.to_string()))?;
    let temp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| WebError::Internal(e.to_string()))?;
    let shown = match format {
        ExportFormat::Mbox => "a download (mbox)",
        ExportFormat::EmlZip => "a download (zip)",
    };
    let summary = console.archive.export_as(&who.actor(), query, format, temp.path(), false, shown).await?;
    // The open file outlives its name: nothing is left behind, whatever happens to the download.
    let file = tokio::fs::File::open(temp.path()).await.map_err(|e| WebError::Internal(e.to_string()))?;
    drop(temp);
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::HeaderName::from_static("x-coffer-messages"), summary.messages.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn message_id(id: &str) -> Result<i64, WebError> {
    id.parse().map_err(|_| WebError::NotFound)
}

#[derive(Deserialize, Default)]
struct MessageQuery {
    /// The search the reader came from, to go back to it (only a /search address is taken).
    #[serde(default)]
    back: String,
    /// The ids of that search's page, in order: for previous and next.
    #[serde(default)]
    ids: String,
}

/// A results page's ids as the message link carries them (at most a page; up to the first that
/// is not a number).
fn page_ids(text: &str) -> Vec<i64> {
    text.split(',').take(PAGE_SIZE).map_while(|i| i.trim().parse().ok()).collect()
}

/// The message before and after `id` among a results page's ids.
fn neighbours(ids: &[i64], id: i64) -> (Option<i64>, Option<i64>) {
    match ids.iter().position(|&i| i == id) {
        Some(at) => (at.checked_sub(1).map(|p| ids[p]), ids.get(at + 1).copied()),
        None => (None, None),
    }
}

async fn message(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<String>,
    Query(mq): Query<MessageQuery>,
) -> PageResult {
    let id = message_id(&id)?;
    let back = if mq.back.starts_with("/search?") && !mq.back.contains(['\\', '\r', '\n']) {
        mq.back
    } else {
        "/search".to_owned()
    };
    let list = page_ids(&mq.ids);
    let (previous, next) = neighbours(&list, id);
    // Only numbers go back into the links.
    let ids = list.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let (summary, view) = console.archive.view(&who.actor(), id).await?;
    let headers: Vec<(String, String)> = view.headers;
    // Auditors and administrators see what governs the message: its rule and its holds.
    let governing = match who.require(Role::Auditor) {
        Ok(()) => {
            let g = console.archive.admin().governing(&who.actor(), id).await?;
            Some(context! {
                rule => g.rule, keep => g.keep, deletable_from => g.deletable_from.map(coffer_archive::service::rfc3339),
                protected_until => g.protected_until.map(coffer_archive::service::rfc3339), holds => g.holds,
            })
        }
        Err(_) => None,
    };
    let html = page(
        &console,
        Some(&who),
        "message.html",
        context! { m => summary, headers, text => view.text, has_html => view.html.is_some(), attachments => view.attachments, governing, back, previous, next, ids },
    )?;
    Ok(html.into_response())
}

#[derive(Deserialize, Default)]
struct BodyQuery {
    #[serde(default)]
    remote: bool,
}

/// The HTML body, sanitised (no scripts, no event handlers, no javascript: links), shown in a
/// sandboxed frame whose policy blocks remote images until the reader asks for them.
async fn body(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<BodyQuery>,
) -> PageResult {
    let id = message_id(&id)?;
    let (_, view) = console.archive.view(&who.actor(), id).await?;
    let clean = clean_html(&view.html_with_inline_images().unwrap_or_default());
    let images = if q.remote { "img-src data: https: http:" } else { "img-src data:" };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; {images}; sandbox; base-uri 'none'; form-action 'none'"
    );
    let doc = format!(
        "<!doctype html><html><head><meta charset=utf-8><base target=_blank></head><body>{clean}</body></html>"
    );
    Ok(([(header::CONTENT_SECURITY_POLICY, csp)], Html(doc)).into_response())
}

/// A message's HTML made inert: no script, no event handlers, no links that run; `data:` URLs
/// only as raster images in `<img src>` (the inline images put there from the message's parts).
fn clean_html(html: &str) -> String {
    const RASTER: [&str; 6] = [
        "data:image/png;",
        "data:image/jpeg;",
        "data:image/jpg;",
        "data:image/gif;",
        "data:image/webp;",
        "data:image/bmp;",
    ];
    ammonia::Builder::default()
        .add_generic_attributes(["style"])
        .add_url_schemes(["data"])
        .attribute_filter(|element, attribute, value| {
            let lower = value.trim_start().to_ascii_lowercase();
            if !lower.starts_with("data:") {
                return Some(value.into());
            }
            let image = element == "img" && attribute == "src" && RASTER.iter().any(|r| lower.starts_with(r));
            image.then(|| value.into())
        })
        .clean(html)
        .to_string()
}

async fn raw(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<String>) -> PageResult {
    let id = message_id(&id)?;
    Ok(raw_response(&console, &who, id).await?)
}

pub async fn raw_response(console: &Console, who: &Principal, id: i64) -> Result<Response, WebError> {
    let bytes = console.archive.raw(&who.actor(), id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"message-{id}.eml\"")),
        ],
        bytes,
    )
        .into_response())
}

async fn attachment(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path((id, n)): Path<(String, usize)>,
) -> PageResult {
    Ok(attachment_response(&console, &who, message_id(&id)?, n).await?)
}

pub async fn attachment_response(console: &Console, who: &Principal, id: i64, n: usize) -> Result<Response, WebError> {
    let (info, bytes) = console.archive.attachment(&who.actor(), id, n).await?;
    let safe_name: String = info.name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    Ok((
        [
            // Never rendered inline: an attached HTML file must not run as the console.
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{safe_name}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Traffic by hour (last 48 hours) and by day (last 30 days), by source and by tenant; listener
/// figures; ingest and index lag; volumes; each tenant's journal address.
async fn status(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    let now = now_secs();
    let status = console.archive.admin().status(&who.actor(), now - 31 * 86400).await?;
    let traffic = &status.traffic;
    let tenant_name = |id: i64| status.tenant_name(id).map(str::to_owned).unwrap_or_else(|| id.to_string());
    let mut charts = Vec::new();
    for (title, bucket, count) in [("per hour, last 48 hours", 3600, 48), ("per day, last 30 days", 86400, 30)] {
        let start = (now / bucket - (count - 1)) * bucket;
        let labels: Vec<String> = (0..count)
            .map(|i| {
                let t = time::OffsetDateTime::from_unix_timestamp(start + i * bucket)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                if bucket == 3600 {
                    format!("{:02}:00", t.hour())
                } else {
                    format!("{:02}-{:02}", t.month() as u8, t.day())
                }
            })
            .collect();
        let mut by: BTreeMap<(&str, String), Vec<f64>> = BTreeMap::new();
        for r in traffic.iter().filter(|r| r.bucket >= start) {
            let i = ((r.bucket - start) / bucket) as usize;
            let mut add = |measure: &'static str, series: String, v: i64| {
                by.entry((measure, series)).or_insert_with(|| vec![0.0; count as usize])[i] += v as f64;
            };
            add("messages", r.source.clone(), r.messages);
            add("bytes", r.source.clone(), r.bytes);
            add("tenants", tenant_name(r.tenant_id), r.messages);
            add("problems", format!("{} rejected", r.source), r.rejected);
            add("problems", format!("{} errors", r.source), r.errors);
        }
        // SMTP refusals are counted as listener figures (the table below): the chart shows them too.
        for f in status.listener_figures.iter().filter(|f| f.bucket >= start && f.figure.starts_with("reject:")) {
            let i = ((f.bucket - start) / bucket) as usize;
            let name = format!("{} {}", f.listener, f.figure.replace(':', " "));
            by.entry(("problems", name)).or_insert_with(|| vec![0.0; count as usize])[i] += f.value as f64;
        }
        for &(hour, tenant, n) in status.deletions.iter().filter(|d| d.0 >= start) {
            let i = ((hour - start) / bucket) as usize;
            by.entry(("deleted", tenant_name(tenant))).or_insert_with(|| vec![0.0; count as usize])[i] += n as f64;
        }
        for (measure, heading, unit) in [
            ("messages", "Archived messages by source", "messages"),
            ("bytes", "Archived bytes by source", "bytes"),
            ("tenants", "Archived messages by tenant", "messages"),
            ("problems", "Rejects and errors", "messages"),
            ("deleted", "Deleted by retention rules and approvals, by tenant", "messages"),
        ] {
            let series: Vec<Series> = by
                .iter()
                .filter(|((m, _), _)| *m == measure)
                .map(|((_, name), values)| Series { name: name.clone(), values: values.clone() })
                .collect();
            let id = format!("{measure}-{}", if bucket == 3600 { "hourly" } else { "daily" });
            charts.push(context! {
                title => format!("{heading}, {title}"),
                svg => minijinja::Value::from_safe_string(line_chart(&id, &labels, &series, unit)),
            });
        }
    }
    let mut listener_totals: BTreeMap<(String, String), i64> = BTreeMap::new();
    for f in &status.listener_figures {
        *listener_totals.entry((f.listener.clone(), f.figure.clone())).or_default() += f.value;
    }
    let listener_totals: Vec<_> =
        listener_totals.into_iter().map(|((l, f), v)| context! { listener => l, figure => f, value => v }).collect();
    let journal: Vec<_> =
        status.tenants.iter().map(|t| context! { name => t.tenant.name, address => t.journal_address }).collect();
    let (volumes, lag, oldest) = (status.volumes, status.index_lag, status.index_lag_seconds);
    let html =
        page(&console, Some(&who), "status.html", context! { charts, journal, volumes, lag, oldest, listener_totals })?;
    Ok(html.into_response())
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    q: String,
}

async fn audit(State(console): State<Arc<Console>>, who: Principal, Query(q): Query<AuditQuery>) -> PageResult {
    let actor = who.actor();
    let entries = console.archive.admin().audit_log(&actor, &q.q, 500).await?;
    let problems = console.archive.admin().verify_audit(&actor).await?.len();
    let html = page(&console, Some(&who), "audit.html", context! { entries, q => q.q, problems })?;
    Ok(html.into_response())
}

async fn account(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(q): Query<BTreeMap<String, String>>,
) -> PageResult {
    let keys = console.archive.admin().api_keys(&who.actor()).await?;
    let html = page(
        &console,
        Some(&who),
        "account.html",
        context! { keys, new_key => q.get("new_key"), addresses => who.user.addresses, roles => roles_up_to(who.role) },
    )?;
    Ok(html.into_response())
}

fn roles_up_to(role: Role) -> Vec<&'static str> {
    [Role::User, Role::Auditor, Role::Administrator].into_iter().filter(|r| *r <= role).map(Role::as_str).collect()
}

#[derive(Deserialize)]
struct KeyForm {
    name: String,
    role: String,
}

async fn add_key(State(console): State<Arc<Console>>, who: Principal, Form(f): Form<KeyForm>) -> PageResult {
    let (_, key) = crate::api::create_api_key(&console, &who, &f.name, &f.role).await?;
    // Shown once, on the next page; only its hash is kept.
    let html = page(
        &console,
        Some(&who),
        "account.html",
        context! {
            keys => console.archive.admin().api_keys(&who.actor()).await?, new_key => key,
            addresses => who.user.addresses, roles => roles_up_to(who.role),
        },
    )?;
    Ok(html.into_response())
}

async fn revoke_key(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> PageResult {
    crate::api::revoke_api_key(&console, &who, id).await?;
    Ok(Redirect::to("/account").into_response())
}

#[derive(Deserialize)]
struct NetworkForm {
    cidr: String,
}

async fn allow_network(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Form(f): Form<NetworkForm>,
) -> PageResult {
    crate::api::allow_network(&console, &who, id, &f.cidr).await?;
    Ok(Redirect::to("/config/listeners").into_response())
}

async fn login_settings(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(q): Query<BTreeMap<String, String>>,
) -> PageResult {
    who.require_system_admin()?;
    let lookup = match q.get("lookup").filter(|u| !u.trim().is_empty()) {
        None => None,
        Some(user) => match crate::directory::lookup(&console, &who, user).await {
            Ok(found) => Some((user.clone(), Ok(found))),
            Err(WebError::BadRequest(why)) => Some((user.clone(), Err(why))),
            Err(e) => return Err(e.into()),
        },
    };
    render_login(&console, &who, None, q.contains_key("consent"), lookup).await
}

/// A Lookup: the name asked for, and whom the directory found or why not.
type Lookup = Option<(String, Result<crate::directory::ApiDirectoryEntry, String>)>;

/// The login settings as saved, or, after a refusal (`typed`), as typed with the reason.
async fn render_login(
    console: &Console,
    who: &Principal,
    typed: Option<(String, LoginSettings, String)>,
    consent: bool,
    lookup: Lookup,
) -> PageResult {
    let (error, settings, assignments) = match typed {
        Some((error, settings, assignments)) => (Some(error), settings, assignments),
        None => {
            let settings = LoginSettings::load(&console.archive).await?;
            let assignments = console.archive.admin().role_assignments(&settings.oidc.tenant).await?;
            let lines: Vec<String> =
                assignments.iter().map(|a| format!("{} {} {}", a.attribute, a.value, a.role)).collect();
            (None, settings, lines.join("\n"))
        }
    };
    let certificates: Vec<String> = console.archive.certs().list()?.into_iter().map(|c| c.alias).collect();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (looked_up, found, lookup_error) = match lookup {
        None => (None, None, None),
        Some((user, Ok(found))) => (Some(user), Some(found), None),
        Some((user, Err(why))) => (Some(user), None, Some(why)),
    };
    let html = page(
        console,
        Some(who),
        "config_login.html",
        context! {
            s => settings, assignments, error, consent, certificates, looked_up, found, lookup_error,
            issuer => settings.oidc.issuer(),
            redirect_uri => crate::oidc::redirect_uri(console, &settings.oidc),
            consent_url => crate::oidc::admin_consent_url(console, &settings.oidc),
            has_secret => console.archive.secrets().get(CLIENT_SECRET)?.is_some(),
        },
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    sso_default: Option<String>,
    #[serde(default)]
    enabled: Option<String>,
    provider: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    entra_tenant_id: String,
    #[serde(default)]
    login_host: String,
    client_id: String,
    client_auth: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    certificate_alias: String,
    callback_path: String,
    scopes: String,
    tenant: String,
    #[serde(default)]
    addresses_from: String,
    #[serde(default)]
    assignments: String,
}

async fn save_login_settings(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let settings = LoginSettings {
        sso_default: f.sso_default.is_some(),
        oidc: crate::settings::OidcSettings {
            enabled: f.enabled.is_some(),
            provider: f.provider,
            issuer: f.issuer.trim().into(),
            entra_tenant_id: f.entra_tenant_id.trim().into(),
            login_host: if f.login_host.trim().is_empty() {
                "https://login.microsoftonline.com".into()
            } else {
                f.login_host.trim().into()
            },
            client_id: f.client_id.trim().into(),
            client_auth: f.client_auth,
            certificate_alias: f.certificate_alias.trim().into(),
            callback_path: f.callback_path.trim().into(),
            scopes: f.scopes.trim().into(),
            tenant: f.tenant.trim().into(),
            addresses_from: if f.addresses_from.is_empty() {
                crate::settings::VERIFIED_EMAIL.into()
            } else {
                f.addresses_from
            },
        },
    };
    let secret = (!f.client_secret.is_empty()).then_some(f.client_secret.as_str());
    let saved = match parse_assignments(&f.assignments) {
        Ok(assignments) => crate::api::save_login(&console, &who, &settings, secret, &assignments).await,
        Err(e) => Err(WebError::BadRequest(e)),
    };
    match saved {
        Ok(()) => Ok(Redirect::to("/config/login").into_response()),
        // Everything typed stays but the secret, which is never sent back.
        Err(WebError::BadRequest(e)) => {
            render_login(&console, &who, Some((e, settings, f.assignments)), false, None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// One assignment per line: `attribute value role` (the value may be quoted when it has spaces).
pub fn parse_assignments(text: &str) -> Result<Vec<RoleAssignment>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#')) {
        let line = line.trim();
        let (attribute, rest) =
            line.split_once(char::is_whitespace).ok_or(format!("line {}: write `attribute value role`", n + 1))?;
        let rest = rest.trim();
        let (value, role) =
            rest.rsplit_once(char::is_whitespace).ok_or(format!("line {}: write `attribute value role`", n + 1))?;
        let value = value.trim().trim_matches('"');
        if Role::parse(role).is_none() {
            return Err(format!("line {}: role {role:?} is not administrator, auditor or user", n + 1));
        }
        out.push(RoleAssignment {
            attribute: attribute.into(),
            value: value.into(),
            role: Role::parse(role).unwrap().as_str().into(),
        });
    }
    Ok(out)
}

async fn volumes(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    let html = render_volumes(&console, &who, None, &Default::default()).await?;
    Ok(html.into_response())
}

/// Volumes with their imports; `error` and `typed` put a refused import's reason and values back
/// beside its form.
pub(crate) async fn render_volumes(
    console: &Console,
    who: &Principal,
    error: Option<String>,
    typed: &coffer_archive::imports::UploadOptions,
) -> Result<axum::response::Html<String>, WebError> {
    who.require_system_admin()?;
    let tenants: Vec<(i64, String)> = console
        .archive
        .admin()
        .tenants(&who.actor())
        .await?
        .into_iter()
        .map(|t| (t.tenant.id, t.tenant.name))
        .collect();
    let volumes: Vec<minijinja::Value> = console
        .archive
        .volumes()
        .await?
        .into_iter()
        .map(|v| {
            let owner = tenants.iter().find(|(id, _)| *id == v.owner as i64).map(|(_, n)| n.clone());
            context! { owner => owner.unwrap_or_else(|| v.owner.to_string()), ..minijinja::Value::from_serialize(&v) }
        })
        .collect();
    let tenants: Vec<String> = tenants.into_iter().map(|(_, name)| name).collect();
    let imports: Vec<crate::imports::ApiImport> =
        console.archive.imports().list(&who.actor())?.into_iter().map(Into::into).collect();
    let busy = imports.iter().any(|i| i.state == "waiting" || i.state == "running");
    let connections: Vec<String> =
        console.sources.connections().into_iter().filter(|c| c.kind == "Microsoft 365").map(|c| c.name).collect();
    let form = context! {
        tenant => typed.tenant.clone().unwrap_or_else(|| who.tenant.name.clone()),
        mailbox => typed.mailbox, folder => typed.folder, as_eml => typed.as_eml,
    };
    let limit = crate::render::human_bytes(console.config.max_upload_bytes as i64);
    page(
        console,
        Some(who),
        "config_volumes.html",
        context! { volumes, imports, busy, tenants, connections, form, error, limit },
    )
}

async fn close_volume(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<String>) -> PageResult {
    crate::api::close_volume(&console, &who, &id).await?;
    Ok(Redirect::to("/config/volumes").into_response())
}

async fn certificates(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    who.require_system_admin()?;
    render_certificates(&console, &who, None).await
}

async fn render_certificates(console: &Console, who: &Principal, error: Option<String>) -> PageResult {
    let certificates = console.archive.certs().list()?;
    Ok(page(console, Some(who), "config_certificates.html", context! { certificates, error })?.into_response())
}

async fn generate_certificate(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(f): Form<crate::api::CertificateRequest>,
) -> PageResult {
    match crate::api::generate_certificate(&console, &who, &f).await {
        Ok(_) => Ok(Redirect::to("/config/certificates").into_response()),
        Err(WebError::BadRequest(e)) => render_certificates(&console, &who, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

async fn import_certificate(State(console): State<Arc<Console>>, who: Principal, mut form: Multipart) -> PageResult {
    who.require_system_admin()?;
    let (mut alias, mut password, mut file) = (String::new(), String::new(), Vec::new());
    while let Some(field) = form.next_field().await.map_err(|e| WebError::BadRequest(e.to_string()))? {
        match field.name() {
            Some("alias") => alias = field.text().await.map_err(|e| WebError::BadRequest(e.to_string()))?,
            Some("password") => password = field.text().await.map_err(|e| WebError::BadRequest(e.to_string()))?,
            Some("file") => file = field.bytes().await.map_err(|e| WebError::BadRequest(e.to_string()))?.to_vec(),
            _ => {}
        }
    }
    let certs = console.archive.certs();
    let result = if file.starts_with(b"-----") {
        certs.import_pem(alias.trim(), &file)
    } else {
        certs.import_pkcs12(alias.trim(), &file, &password)
    };
    match result {
        Ok(info) => {
            console
                .audit(
                    &who.actor(),
                    "configuration",
                    &format!("certificate {} imported (SHA-1 {})", info.alias, info.sha1),
                )
                .await?;
            Ok(Redirect::to("/config/certificates").into_response())
        }
        Err(e) => render_certificates(&console, &who, Some(e.to_string())).await,
    }
}

async fn download_certificate(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(alias): Path<String>,
) -> PageResult {
    Ok(crate::api::certificate_pem(&console, &who, &alias).await?)
}

async fn users(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(q): Query<BTreeMap<String, String>>,
) -> PageResult {
    who.require(Role::Administrator)?;
    render_users(&console, &who, None, q.get("lookup").and_then(|v| v.parse().ok())).await
}

async fn render_users(console: &Console, who: &Principal, error: Option<String>, lookup: Option<i64>) -> PageResult {
    let users = console.archive.admin().users(&who.actor(), Some(who.tenant.id)).await?;
    let claims = lookup.and_then(|id| users.iter().find(|u| u.id == id)).map(|u| {
        let pretty = u
            .last_claims
            .as_deref()
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default());
        context! { login => u.login, claims => pretty }
    });
    Ok(page(console, Some(who), "config_users.html", context! { users, error, claims })?.into_response())
}

async fn add_user(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(f): Form<crate::api::NewUserRequest>,
) -> PageResult {
    match crate::api::add_user(&console, &who, &f).await {
        Ok(_) => Ok(Redirect::to("/config/users").into_response()),
        Err(WebError::BadRequest(e)) => render_users(&console, &who, Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct UserForm {
    display_name: String,
    role: String,
    addresses: String,
    #[serde(default)]
    disabled: Option<String>,
    #[serde(default)]
    password: String,
}

async fn update_user(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Form(f): Form<UserForm>,
) -> PageResult {
    let change = crate::api::UserChange {
        display_name: f.display_name,
        role: f.role,
        addresses: f
            .addresses
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        disabled: f.disabled.is_some(),
        password: (!f.password.is_empty()).then_some(f.password),
    };
    match crate::api::update_user(&console, &who, id, &change).await {
        Ok(_) => Ok(Redirect::to("/config/users").into_response()),
        Err(WebError::BadRequest(e)) => render_users(&console, &who, Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

async fn tenants(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    who.require_system_admin()?;
    render_tenants(&console, &who, None, None).await
}

/// The tenants; `edit_error` is a refused edit (the tenant's id, why and what was typed).
async fn render_tenants(
    console: &Console,
    who: &Principal,
    error: Option<String>,
    edit_error: Option<(i64, String, TenantForm)>,
) -> PageResult {
    let tenants: Vec<_> = console
        .archive
        .admin()
        .tenants(&who.actor())
        .await?
        .into_iter()
        .map(|t| {
            let (edit_error, form) = match &edit_error {
                Some((id, why, typed)) if *id == t.tenant.id => (Some(why.clone()), typed.clone()),
                _ => (None, TenantForm { domains: t.tenant.domains.join(", "), networks: t.networks.join(", ") }),
            };
            context! { id => t.tenant.id, name => t.tenant.name, domains => t.tenant.domains, networks => t.networks,
            address => t.journal_address, messages => t.messages, edit_error, form }
        })
        .collect();
    let status = if error.is_some() || edit_error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let html = page(console, Some(who), "config_tenants.html", context! { tenants, error })?;
    Ok((status, html).into_response())
}

#[derive(Deserialize, serde::Serialize, Clone, Default)]
#[serde(default)]
struct TenantForm {
    domains: String,
    networks: String,
}

/// Works in another tenant (administrators of the default tenant): a cookie the session honours,
/// audited in both tenants' logs.
async fn work_in_tenant(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> PageResult {
    let home = who.home_actor();
    home.require_system_admin().map_err(WebError::from)?;
    let tenant = console.archive.tenant_by_id(id).await?.ok_or(WebError::NotFound)?;
    let there = home.clone().working_in(tenant.clone())?;
    console.archive.audit(&home, "configuration", &format!("working in tenant {}", tenant.name)).await?;
    console
        .archive
        .audit(&there, "configuration", &format!("administrator of {} working here", home.tenant.name))
        .await?;
    let cookie = crate::auth::set_cookie(&console, crate::auth::TENANT_COOKIE, &tenant.id.to_string(), None);
    Ok(crate::auth::redirect_with_cookies("/search", &[cookie]))
}

/// Reads every tenant's mail (administrators of the default tenant): a cookie the session
/// honours; audited.
async fn search_all_tenants(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    let home = who.home_actor();
    let across = home.clone().across_tenants()?;
    console.archive.audit(&across, "configuration", "reading all tenants").await?;
    let cookie = crate::auth::set_cookie(&console, crate::auth::TENANT_COOKIE, "all", None);
    Ok(crate::auth::redirect_with_cookies("/search", &[cookie]))
}

async fn leave_tenant(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    if let Some(t) = &who.working {
        console.archive.audit(&who.home_actor(), "configuration", &format!("back from tenant {}", t.name)).await?;
    }
    if who.all_tenants {
        console.archive.audit(&who.home_actor(), "configuration", "back from reading all tenants").await?;
    }
    let cookie = crate::auth::set_cookie(&console, crate::auth::TENANT_COOKIE, "", Some(0));
    Ok(crate::auth::redirect_with_cookies("/search", &[cookie]))
}

async fn edit_tenant(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Form(f): Form<TenantForm>,
) -> PageResult {
    let done = console
        .archive
        .admin()
        .update_tenant(&who.actor(), id, std::slice::from_ref(&f.domains), std::slice::from_ref(&f.networks))
        .await;
    match done.map_err(WebError::from) {
        Ok(_) => Ok(Redirect::to("/config/tenants").into_response()),
        Err(WebError::BadRequest(e)) => render_tenants(&console, &who, None, Some((id, e, f))).await,
        Err(e) => Err(e.into()),
    }
}

async fn add_tenant(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(f): Form<crate::api::NewTenantRequest>,
) -> PageResult {
    match crate::api::add_tenant(&console, &who, &f).await {
        Ok(_) => Ok(Redirect::to("/config/tenants").into_response()),
        Err(WebError::BadRequest(e)) => render_tenants(&console, &who, Some(e), None).await,
        Err(e) => Err(e.into()),
    }
}

/// Microsoft Graph's webhook: a GET is not Graph (405); a POST with `validationToken` is the
/// subscription handshake, answered with the token as plain text; otherwise a batch of change
/// notifications, accepted (202) only when each carries our client state.
async fn webhook_get() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "Microsoft Graph notifications are POSTed here\n",
    )
        .into_response()
}

async fn webhook(
    State(console): State<Arc<Console>>,
    Query(q): Query<BTreeMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = q.get("validationToken") {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token.clone()).into_response();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return WebError::BadRequest("the notification is not JSON".into()).into_response();
    };
    match console.sources.webhook(&json) {
        None => WebError::NotFound.into_response(),
        Some(Ok(_)) => axum::http::StatusCode::ACCEPTED.into_response(),
        Some(Err(why)) => WebError::Forbidden(why).into_response(),
    }
}

/// Prometheus text format: totals by source and tenant, index lag, volumes, listener figures.
async fn metrics(
    State(console): State<Arc<Console>>,
    who: Option<Principal>,
    scraper: Option<axum::Extension<crate::auth::MetricsScraper>>,
) -> Result<Response, WebError> {
    use std::fmt::Write;
    if scraper.is_none() {
        match &who {
            Some(p) => p.require_system_admin()?,
            None => return Err(WebError::Unauthorized),
        }
    }
    let status = console.archive.admin().status_for_scraper().await?;
    let name = |id: i64| status.tenant_name(id).map(str::to_owned).unwrap_or_else(|| id.to_string());
    let mut totals: BTreeMap<(String, String), [i64; 5]> = BTreeMap::new();
    for r in &status.traffic {
        let e = totals.entry((r.source.clone(), name(r.tenant_id))).or_default();
        for (slot, v) in e.iter_mut().zip([r.messages, r.bytes, r.duplicates, r.rejected, r.errors]) {
            *slot += v;
        }
    }
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    for (i, (metric, help)) in [
        ("coffer_archived_messages_total", "Messages archived (new to the archive)."),
        ("coffer_archived_bytes_total", "Bytes of messages archived."),
        ("coffer_duplicate_messages_total", "Messages that were already archived."),
        ("coffer_rejected_messages_total", "Messages refused."),
        ("coffer_errors_total", "Messages that failed."),
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for ((source, tenant), v) in &totals {
            let _ = writeln!(out, "{metric}{{source=\"{}\",tenant=\"{}\"}} {}", label(source), label(tenant), v[i]);
        }
    }
    let _ = writeln!(
        out,
        "# HELP coffer_index_lag_messages Messages archived but not yet searchable.\n# TYPE coffer_index_lag_messages gauge"
    );
    let _ = writeln!(out, "coffer_index_lag_messages {}", status.index_lag);
    let _ = writeln!(out, "# HELP coffer_volume_bytes Size of each volume.\n# TYPE coffer_volume_bytes gauge");
    for v in &status.volumes {
        let _ = writeln!(out, "coffer_volume_bytes{{volume=\"{}\",state=\"{:?}\"}} {}", label(&v.id), v.state, v.bytes);
    }
    let _ = writeln!(
        out,
        "# HELP coffer_listener_events_total Listener and connection figures.\n# TYPE coffer_listener_events_total counter"
    );
    let mut figures: BTreeMap<(String, String), i64> = BTreeMap::new();
    for f in status.listener_figures {
        *figures.entry((f.listener, f.figure)).or_default() += f.value;
    }
    for ((listener, figure), v) in figures {
        let _ = writeln!(
            out,
            "coffer_listener_events_total{{listener=\"{}\",figure=\"{}\"}} {v}",
            label(&listener),
            label(&figure)
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

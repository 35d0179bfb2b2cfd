//! What sources (SMTP, IMAP, Microsoft 365) keep besides the mail, and the seam through which
//! the console drives them. The source supervisor (crate `coffer-sources`) implements
//! [`SourceControl`]; the web front end knows only this trait.

use std::future::Future;
use std::pin::Pin;

use coffer_catalog::Catalog;
use serde::Serialize;

use crate::service::Archive;
use crate::{ArchiveError, Tenant};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A source connection as the console lists it, with its job's state.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub name: String,
    /// `IMAP` or `Microsoft 365`.
    pub kind: String,
    /// Setting → value, secrets left out.
    pub settings: Vec<(String, String)>,
    pub job: JobState,
}

/// One source job as the supervisor keeps it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobState {
    /// `running`, `waiting` (for its next run), `backing off` (after failures), `stopped`,
    /// `on demand` (runs only when started, as a Microsoft 365 import), `not started` (with why)
    /// or `disabled`.
    pub state: String,
    pub runs: u64,
    /// Failed runs since the last success.
    pub failures: u32,
    /// Unix seconds.
    pub last_run: Option<i64>,
    pub last_success: Option<i64>,
    pub next_run: Option<i64>,
    /// The last failure, with advice, until a run succeeds.
    pub last_error: Option<String>,
    /// What the current (or last) run did so far, in words.
    pub progress: String,
    /// While a run reads: what still waits at the source, in words (e.g. `3,800 messages
    /// waiting in INBOX`).
    pub backlog: Option<String>,
}

/// One mailbox of a Microsoft 365 connection.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub mailbox: String,
    /// `importing`, `synced`, `no mailbox` (the user has no Exchange Online mailbox) or `failed`.
    pub state: String,
    pub folders: usize,
    pub archived: usize,
    pub duplicates: usize,
    pub events: usize,
    pub contacts: usize,
    /// RFC 3339.
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
}

/// The sources a server runs, as the console shows and drives them. Rights and audit are the
/// admin service's ([`crate::admin::Admin::start_source`] and the like); this only acts.
pub trait SourceControl: Send + Sync {
    fn connections(&self) -> Vec<ConnectionInfo>;

    fn connection(&self, name: &str) -> Option<ConnectionInfo> {
        self.connections().into_iter().find(|c| c.name == name)
    }

    /// Signs in and looks at the mailbox; what it found, or what went wrong and how to fix it.
    fn test(&self, name: &str) -> BoxFuture<Result<String, String>>;

    /// Runs the source now (and on its schedule again after a stop); says what it started.
    fn start(&self, name: &str) -> Result<String, ArchiveError>;

    /// Cuts the run in progress where it is (what it archived is kept) and runs no more until
    /// started.
    fn stop(&self, name: &str) -> Result<String, ArchiveError>;

    /// Each mailbox's state (Microsoft 365 connections; empty for others).
    fn mailboxes(&self, name: &str) -> Vec<MailboxStatus>;

    /// A Microsoft Graph change notification POSTed to the webhook: Some(Ok(items queued)), or
    /// Some(Err(why)) when no connection accepts its `clientState`; None when no connection
    /// syncs by webhook.
    fn webhook(&self, notification: &serde_json::Value) -> Option<Result<usize, String>>;

    /// The mail addresses a directory (Entra ID, through a Microsoft 365 connection of that
    /// directory) lists for an object id; None when no connection serves that directory.
    fn directory_addresses(&self, directory: &str, object_id: &str) -> Option<BoxFuture<Result<Vec<String>, String>>>;

    /// A person as the directory knows them (by principal name or address), with the groups and
    /// directory roles a role assignment can match; Ok(None) when the directory has no such
    /// person, None when no connection serves that directory.
    fn directory_lookup(
        &self,
        directory: &str,
        user: &str,
    ) -> Option<BoxFuture<Result<Option<DirectoryEntry>, String>>>;

    /// Builds a connection that could not start again (after Update Manifest made its
    /// certificate) and starts it: Some(what happened) when it had not started.
    fn retry<'a>(&'a self, name: &'a str) -> crate::listeners::Pending<'a, Option<Result<String, String>>>;

    /// Runs the connection as now configured, in place of the one of that name (whose run in
    /// progress is cut; what it archived is kept). `all` is every connection now configured (an
    /// IMAP connection may take its token from a Microsoft 365 one). What happened, in words: a
    /// connection that cannot start is listed with why.
    fn apply(
        &self,
        connection: crate::connections::Connection,
        all: crate::connections::Definitions,
    ) -> crate::listeners::Pending<'_, String>;

    /// Stops and forgets the connection.
    fn remove<'a>(&'a self, name: &'a str) -> crate::listeners::Pending<'a, ()>;
}

/// A person in the directory, as the console's Lookup shows them.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryEntry {
    /// The object id (the ID token's `oid`).
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    /// Directory roles as (role template id, name): the ID token's `wids` claim carries the
    /// template ids (Global Administrator, once "Company Administrator", is
    /// 62e90394-69f5-4237-9190-012177145e10).
    pub roles: Vec<(String, String)>,
    /// Groups as (object id, name): the ID token's `groups` claim carries the object ids.
    pub groups: Vec<(String, String)>,
}

/// No sources (a console without a supervisor, as in tests of the web front end alone).
pub struct NoSources;

impl SourceControl for NoSources {
    fn connections(&self) -> Vec<ConnectionInfo> {
        Vec::new()
    }
    fn test(&self, _: &str) -> BoxFuture<Result<String, String>> {
        Box::pin(async { Err("no such connection".to_owned()) })
    }
    fn start(&self, _: &str) -> Result<String, ArchiveError> {
        Err(ArchiveError::NotFound)
    }
    fn stop(&self, _: &str) -> Result<String, ArchiveError> {
        Err(ArchiveError::NotFound)
    }
    fn mailboxes(&self, _: &str) -> Vec<MailboxStatus> {
        Vec::new()
    }
    fn webhook(&self, _: &serde_json::Value) -> Option<Result<usize, String>> {
        None
    }
    fn directory_addresses(&self, _: &str, _: &str) -> Option<BoxFuture<Result<Vec<String>, String>>> {
        None
    }
    fn directory_lookup(&self, _: &str, _: &str) -> Option<BoxFuture<Result<Option<DirectoryEntry>, String>>> {
        None
    }
    fn retry<'a>(&'a self, _: &'a str) -> crate::listeners::Pending<'a, Option<Result<String, String>>> {
        Box::pin(async { None })
    }
    fn apply(
        &self,
        _: crate::connections::Connection,
        _: crate::connections::Definitions,
    ) -> crate::listeners::Pending<'_, String> {
        Box::pin(async { "saved; it runs with the next `coffer serve`".to_owned() })
    }
    fn remove<'a>(&'a self, _: &'a str) -> crate::listeners::Pending<'a, ()> {
        Box::pin(async {})
    }
}

/// What sources keep in the catalog: cursors (how far a folder was read), which message a source
/// item became (recorded by the pipeline from each arrival's evidence), listener figures, and the
/// journal addresses SMTP accepts. `archive.source_state()`.
#[derive(Clone)]
pub struct SourceState {
    catalog: Catalog,
}

impl Archive {
    pub fn source_state(&self) -> SourceState {
        SourceState { catalog: self.catalog.clone() }
    }
}

impl SourceState {
    pub async fn cursor(&self, connection: &str, scope: &str) -> Result<Option<String>, ArchiveError> {
        Ok(self.catalog.sync_cursor(connection, scope).await?)
    }

    pub async fn set_cursor(&self, connection: &str, scope: &str, cursor: &str) -> Result<(), ArchiveError> {
        Ok(self.catalog.set_sync_cursor(connection, scope, cursor).await?)
    }

    pub async fn item(&self, connection: &str, item: &str) -> Result<Option<i64>, ArchiveError> {
        Ok(self.catalog.source_item(connection, item).await?)
    }

    pub async fn add_listener_figure(
        &self,
        at: i64,
        listener: &str,
        tenant: i64,
        figure: &str,
        value: i64,
    ) -> Result<(), ArchiveError> {
        Ok(self.catalog.add_listener_figure(at, listener, tenant, figure, value).await?)
    }

    /// Every tenant with the sending networks its journal reports are accepted from (empty: any).
    pub async fn journal_tenants(&self) -> Result<Vec<(Tenant, Vec<String>)>, ArchiveError> {
        let mut networks = self.catalog.tenant_networks().await?;
        Ok(self
            .catalog
            .tenants()
            .await?
            .into_iter()
            .map(|t| {
                let n = networks.remove(&t.id).unwrap_or_default();
                (t, n)
            })
            .collect())
    }
}

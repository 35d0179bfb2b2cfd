//! Coffer's Microsoft 365 source, MailArchiva's Office 365 integration as the model: an Entra ID
//! app registration authenticated by a certificate Coffer makes (its manifest updated with
//! `coffer_archive::manifest`), tokens by client assertion ([`graph::Graph`]), and the
//! historical import of every mailbox through Microsoft Graph ([`import::Importer`]): users →
//! mail folders (recursively, with their paths) → per-folder `messages/delta` → each message's MIME
//! into the ingest pipeline with its placement. A folder's delta link advances only after its
//! messages are durable, so an interrupted import continues where it stopped.

pub mod graph;
pub mod import;
pub mod items;
pub mod sync;

use serde::{Deserialize, Serialize};

/// A `[[m365]]` connection in coffer.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct M365Config {
    pub name: String,
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The certificate-store alias of the app's certificate (RSA).
    pub certificate: String,
    /// Login and Graph hosts: national clouds have their own (US Government:
    /// https://login.microsoftonline.us and https://graph.microsoft.us; China:
    /// https://login.chinacloudapi.cn and https://microsoftgraph.chinacloudapi.cn).
    #[serde(default = "default_login_host")]
    pub login_host: String,
    #[serde(default = "default_graph_host")]
    pub graph_host: String,
    /// The mailboxes to archive (user principal names or addresses); empty: every user (or the
    /// members of `group`).
    #[serde(default)]
    pub mailboxes: Vec<String>,
    /// Archive the members of this Entra ID group (its object id) instead of every user.
    pub group: Option<String>,
    /// Mailboxes imported at the same time (each with at most four requests in flight, as
    /// Microsoft asks per mailbox).
    #[serde(default = "default_parallel_mailboxes")]
    pub parallel_mailboxes: usize,
    #[serde(default = "yes")]
    pub skip_junk: bool,
    #[serde(default = "yes")]
    pub skip_deleted: bool,
    #[serde(default = "yes")]
    pub skip_drafts: bool,
    /// Archive calendar events (as iCalendar items) and contacts (as vCard items).
    #[serde(default = "yes")]
    pub calendar: bool,
    #[serde(default = "yes")]
    pub contacts: bool,
    /// `ps256` (default, with `x5t#S256`) or `rs256` (with `x5t`).
    #[serde(default = "default_assertion")]
    pub assertion: String,
    /// The Coffer tenant the mail belongs to (default: the default tenant).
    pub tenant: Option<String>,
    /// Where Graph sends change notifications: Coffer's `/o365`, as the internet reaches it
    /// (e.g. https://archive.contoso.com/o365). Without it, `serve` keeps no subscriptions.
    pub webhook_url: Option<String>,
    /// The secret every notification must carry (`clientState`).
    pub client_state: Option<String>,
}

fn default_login_host() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph_host() -> String {
    "https://graph.microsoft.com".into()
}
fn default_parallel_mailboxes() -> usize {
    4
}
fn default_assertion() -> String {
    "ps256".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum M365Error {
    /// What went wrong and what to do about it.
    #[error("{0}")]
    Advice(String),
    #[error("cannot reach Microsoft: {0}")]
    Unreachable(String),
    #[error("no Exchange Online mailbox (not licensed, inactive, soft-deleted or on-premises)")]
    NoMailbox,
    /// Graph's 404 where something was expected (a folder or message deleted meanwhile).
    #[error("Graph answered 404 Not Found")]
    NotFound,
    /// Graph's 410 where no restart was possible.
    #[error("Graph answered 410 Gone")]
    Gone,
    #[error(transparent)]
    Archive(#[from] coffer_archive::ArchiveError),
}

impl M365Error {
    /// True when the next run may succeed without anyone changing anything (Microsoft or the
    /// network failed, or the archive was busy); false when an administrator must act on the
    /// advice (a consent, a policy, a certificate).
    pub fn is_transient(&self) -> bool {
        match self {
            M365Error::Unreachable(_) | M365Error::NotFound | M365Error::Gone => true,
            M365Error::Archive(e) => e.is_transient(),
            M365Error::Advice(_) | M365Error::NoMailbox => false,
        }
    }
}

/// Test hook: `COFFER_CRASH_AT=<point>` aborts the process there (the crash tests kill the import
/// between a page's commit and its cursor).
pub(crate) use coffer_archive::crash_point;

impl M365Config {
    /// The scope and folder choices, in words (for the audit log and the console).
    pub fn choices(&self) -> String {
        let scope = match (&self.group, self.mailboxes.is_empty()) {
            (Some(g), _) => format!("members of group {g}"),
            (None, true) => "all users".into(),
            (None, false) => self.mailboxes.join(", "),
        };
        let skipped: Vec<&str> =
            [(self.skip_junk, "Junk Email"), (self.skip_deleted, "Deleted Items"), (self.skip_drafts, "Drafts")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
        let what: Vec<&str> = [(true, "mail"), (self.calendar, "calendar"), (self.contacts, "contacts")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        format!(
            "mailboxes: {scope}; archiving {}; skipping {}",
            what.join(", "),
            if skipped.is_empty() { "no folders".into() } else { skipped.join(", ") }
        )
    }
}

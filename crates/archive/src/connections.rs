//! Source connections as configuration: IMAP mailboxes and Microsoft 365 tenants, kept in the
//! catalog (setting `connections`), edited in the console and the API, applied live by the source
//! supervisor ([`SourceControl::apply`]), audited with before and after. Their secrets (an IMAP
//! password or client secret, a webhook's client state) are sealed in the secret store and never
//! stored with the settings nor shown again; a save without one keeps the one there. `[[imap]]`
//! and `[[m365]]` in coffer.toml seed them as `[smtp]` seeds the listeners: applied when new or
//! when the file changed since they were last applied.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::ArchiveError;
use crate::admin::Admin;
use crate::service::Actor;
use crate::sources::SourceControl;

const SETTING: &str = "connections";
/// The SHA-256 of the seed last applied from the configuration file (secrets included, so a
/// changed password in the file is applied too; the hash keeps them out of the catalog).
const SEED_SETTING: &str = "connections_seed";
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (port 993).
    #[default]
    Imaps,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No TLS at all: only for a trusted network; Coffer warns.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// LOGIN with username and password.
    #[default]
    Password,
    /// SASL XOAUTH2 with a token from `token_url` or a Microsoft 365 connection (Office 365).
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with a token from `token_url` or a Microsoft 365 connection.
    Oauthbearer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A journal mailbox: reports are unwrapped, and removed once archived.
    #[default]
    Journal,
    /// An ordinary mailbox: messages keep their folder as placement; nothing is removed.
    Mailbox,
    /// The "undeliverable journal reports" mailbox: reports inside bounces are unwrapped.
    Bounces,
}

impl Security {
    /// As the console says it.
    pub fn describe(self) -> &'static str {
        match self {
            Security::Imaps => "TLS (IMAPS)",
            Security::Starttls => "STARTTLS",
            Security::None => "no TLS",
        }
    }
}

impl AuthMethod {
    pub fn describe(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Xoauth2 => "OAuth2 (XOAUTH2)",
            AuthMethod::Oauthbearer => "OAuth2 (OAUTHBEARER)",
        }
    }
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Journal => "journal mailbox (reports unwrapped, then removed)",
            Mode::Mailbox => "ordinary mailbox (folders kept, nothing removed)",
            Mode::Bounces => "undeliverable journal reports",
        }
    }
}

fn yes() -> bool {
    true
}

/// One IMAP connection (`[[imap]]` in coffer.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImapConfig {
    /// Letters, digits, `-` and `_`; the connection's cursors go by this name, so it never changes.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    /// CA certificates (PEM) to verify the server with; the public web roots when absent.
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<PathBuf>,
    pub username: String,
    /// For `auth = "password"`. Sealed in the secret store when saved; never shown. Empty on a
    /// change keeps the one stored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(write_only)]
    pub password: String,
    #[serde(default)]
    pub auth: AuthMethod,
    /// For XOAUTH2/OAUTHBEARER against Office 365: take the token from this Microsoft 365
    /// connection's certificate (scope https://outlook.office365.com/.default) instead of a
    /// client secret.
    pub m365: Option<String>,
    /// For XOAUTH2/OAUTHBEARER: an OAuth2 token endpoint (client-credentials grant).
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// Sealed like the password; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(write_only)]
    pub client_secret: Option<String>,
    /// e.g. `https://outlook.office365.com/.default` for Office 365.
    pub scope: Option<String>,
    /// Folders to archive; INBOX when empty.
    #[serde(default)]
    pub folders: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// In journal and bounce modes: "delete" (default) or "move:<folder>".
    #[serde(default = "default_after")]
    pub after_archive: String,
    /// The tenant the mail belongs to (default: the default tenant).
    pub tenant: Option<String>,
    /// The mailbox placements name in mailbox mode (default: the username).
    pub mailbox: Option<String>,
    #[serde(default = "default_interval")]
    pub poll_interval_secs: u64,
}

fn default_after() -> String {
    "delete".into()
}

fn default_interval() -> u64 {
    60
}

/// One Microsoft 365 connection (`[[m365]]` in coffer.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct M365Config {
    /// Letters, digits, `-` and `_`; the connection's cursors go by this name, so it never changes.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The certificate-store alias of the app's certificate (RSA); Update Manifest makes it.
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
    /// Where Graph sends change notifications ("synchronize"): Coffer's `/o365`, as the internet
    /// reaches it (e.g. https://archive.contoso.com/o365). Without it, no subscriptions are kept.
    pub webhook_url: Option<String>,
    /// The secret every notification must carry (`clientState`); made when a webhook is set
    /// without one. Sealed; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(write_only)]
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

impl M365Config {
    /// A connection with the defaults for everything but what identifies it.
    pub fn new(name: &str, tenant_id: &str, client_id: &str, certificate: &str) -> M365Config {
        M365Config {
            name: name.into(),
            enabled: true,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            certificate: certificate.into(),
            login_host: default_login_host(),
            graph_host: default_graph_host(),
            mailboxes: Vec::new(),
            group: None,
            parallel_mailboxes: default_parallel_mailboxes(),
            skip_junk: true,
            skip_deleted: true,
            skip_drafts: true,
            calendar: true,
            contacts: true,
            assertion: default_assertion(),
            tenant: None,
            webhook_url: None,
            client_state: None,
        }
    }

    /// The scope and folder choices, in words (for the audit log and the console).
    pub fn choices(&self) -> String {
        let scope = match (&self.group, self.mailboxes.is_empty()) {
            (Some(g), _) => format!("members of group {g}"),
            (None, true) => "all users".into(),
            (None, false) => self.mailboxes.join(", "),
        };
        let what: Vec<&str> = [(true, "mail"), (self.calendar, "calendar"), (self.contacts, "contacts")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        format!("mailboxes: {scope}; archiving {}; skipping {}", what.join(", "), self.skipped())
    }

    fn skipped(&self) -> String {
        let skipped: Vec<&str> =
            [(self.skip_junk, "Junk Email"), (self.skip_deleted, "Deleted Items"), (self.skip_drafts, "Drafts")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
        if skipped.is_empty() { "no folders".into() } else { skipped.join(", ") }
    }
}

/// A connection of either kind, as the API sends and receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Connection {
    Imap(ImapConfig),
    M365(M365Config),
}

/// Every source connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Definitions {
    pub imap: Vec<ImapConfig>,
    pub m365: Vec<M365Config>,
}

impl Definitions {
    pub fn all(&self) -> impl Iterator<Item = Connection> + '_ {
        self.imap.iter().cloned().map(Connection::Imap).chain(self.m365.iter().cloned().map(Connection::M365))
    }

    pub fn find(&self, name: &str) -> Option<Connection> {
        self.all().find(|c| c.name() == name)
    }

    /// Adds the connection, or replaces the one of that name.
    pub fn put(&mut self, c: Connection) {
        self.remove(c.name());
        match c {
            Connection::Imap(i) => self.imap.push(i),
            Connection::M365(m) => self.m365.push(m),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Connection> {
        let gone = self.find(name);
        self.imap.retain(|i| i.name != name);
        self.m365.retain(|m| m.name != name);
        gone
    }

    fn len(&self) -> usize {
        self.imap.len() + self.m365.len()
    }
}

/// A secret of a connection: its key in the secret store and its value.
type Secret = (String, String);

impl Connection {
    pub fn name(&self) -> &str {
        match self {
            Connection::Imap(i) => &i.name,
            Connection::M365(m) => &m.name,
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            Connection::Imap(i) => i.enabled,
            Connection::M365(m) => m.enabled,
        }
    }

    /// `IMAP` or `Microsoft 365`.
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Imap(_) => "IMAP",
            Connection::M365(_) => "Microsoft 365",
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Connection::Imap(i) => i.tenant.as_deref(),
            Connection::M365(m) => m.tenant.as_deref(),
        }
    }

    /// The connection without its secrets, and the secrets given (by secret-store key).
    pub fn without_secrets(mut self) -> (Connection, Vec<Secret>) {
        let mut secrets = Vec::new();
        match &mut self {
            Connection::Imap(i) => {
                let password = std::mem::take(&mut i.password);
                if !password.is_empty() {
                    secrets.push((format!("imap.{}.password", i.name), password));
                }
                if let Some(s) = i.client_secret.take().filter(|s| !s.is_empty()) {
                    secrets.push((format!("imap.{}.client_secret", i.name), s));
                }
            }
            Connection::M365(m) => {
                if let Some(s) = m.client_state.take().filter(|s| !s.is_empty()) {
                    secrets.push((format!("m365.{}.client_state", m.name), s));
                }
            }
        }
        (self, secrets)
    }

    /// Every field checked on its own; a mistake names its field and how to fix it. (What needs
    /// the archive, such as the tenant and the secrets, is checked when saving.)
    pub fn check(&self) -> Result<(), ArchiveError> {
        check_name(self.name())?;
        match self {
            Connection::Imap(i) => i.check(),
            Connection::M365(m) => m.check(),
        }
    }

    /// Setting → value, in words, for the console and the audit log (secrets left out).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.into());
        let mut out = vec![("enabled", if self.enabled() { "yes" } else { "no" }.to_owned())];
        match self {
            Connection::Imap(i) => out.extend([
                ("server", format!("{}:{} ({})", i.host, i.port, i.security.describe())),
                ("CA file", i.ca_file.as_ref().map_or("the public web roots".into(), |p| p.display().to_string())),
                ("user", i.username.clone()),
                ("authentication", i.auth.describe().into()),
                (
                    "token from",
                    match (&i.m365, &i.token_url) {
                        (Some(m), _) => format!("Microsoft 365 connection {m}"),
                        (None, Some(url)) => url.clone(),
                        (None, None) => "none".into(),
                    },
                ),
                ("client id", opt(&i.client_id, "none")),
                ("scope", opt(&i.scope, "none")),
                ("folders", if i.folders.is_empty() { "INBOX".into() } else { i.folders.join(", ") }),
                ("mode", i.mode.describe().into()),
                ("after archiving", i.after_archive.clone()),
                ("tenant", opt(&i.tenant, "default")),
                ("mailbox", opt(&i.mailbox, "the user name")),
                ("poll interval", format!("{} s (and IDLE)", i.poll_interval_secs)),
            ]),
            Connection::M365(m) => out.extend([
                ("directory (tenant) id", m.tenant_id.clone()),
                ("application (client) id", m.client_id.clone()),
                ("certificate", m.certificate.clone()),
                ("login and Graph hosts", format!("{} · {}", m.login_host, m.graph_host)),
                (
                    "mailboxes",
                    match (&m.group, m.mailboxes.is_empty()) {
                        (Some(g), _) => format!("members of group {g}"),
                        (None, true) => "all users".into(),
                        (None, false) => m.mailboxes.join(", "),
                    },
                ),
                ("mailboxes at once", m.parallel_mailboxes.to_string()),
                ("skipped folders", m.skipped()),
                ("calendar", if m.calendar { "archived" } else { "not archived" }.into()),
                ("contacts", if m.contacts { "archived" } else { "not archived" }.into()),
                ("assertion", m.assertion.clone()),
                ("synchronize (webhook)", opt(&m.webhook_url, "off")),
                ("tenant", opt(&m.tenant, "default")),
            ]),
        }
        out
    }
}

fn invalid<T>(m: String) -> Result<T, ArchiveError> {
    Err(ArchiveError::Invalid(m))
}

fn check_name(name: &str) -> Result<(), ArchiveError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 40 || !name.chars().all(ok) {
        return invalid(format!("name {name:?}: 1 to 40 letters, digits, - or _"));
    }
    Ok(())
}

fn short_text(field: &str, value: &str, max: usize, example: &str) -> Result<(), ArchiveError> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return invalid(format!("{field} {value:?}: {example}"));
    }
    Ok(())
}

/// An `https://` address, or `http://` to this machine (a local test or proxy).
fn check_url(field: &str, value: &str, example: &str) -> Result<(), ArchiveError> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let scheme_ok = value.starts_with("https://")
        || local
            .iter()
            .any(|l| value.strip_prefix(l).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
    if !scheme_ok || value.len() > 2000 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid(format!("{field} {value:?}: an https:// address, e.g. {example}"));
    }
    Ok(())
}

fn host_like(field: &str, value: &str, example: &str) -> Result<(), ArchiveError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if value.is_empty() || value.len() > 253 || !value.chars().all(ok) {
        return invalid(format!("{field} {value:?}: {example}"));
    }
    Ok(())
}

impl ImapConfig {
    fn check(&self) -> Result<(), ArchiveError> {
        host_like("host", &self.host, "the IMAP server's name, e.g. outlook.office365.com")?;
        if self.port == 0 {
            return invalid("port 0: the server's port, 993 for IMAPS or 143 for STARTTLS".into());
        }
        short_text("username", &self.username, 320, "the mailbox's login, e.g. journal@contoso.com")?;
        match self.auth {
            AuthMethod::Password => {}
            AuthMethod::Xoauth2 | AuthMethod::Oauthbearer => match (&self.m365, &self.token_url) {
                (Some(m), _) => check_name(m).map_err(|_| {
                    ArchiveError::Invalid(format!("m365 {m:?}: the name of a Microsoft 365 connection"))
                })?,
                (None, Some(url)) => {
                    check_url("token_url", url, "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token")?;
                    if self.client_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return invalid("client_id: the OAuth2 client the token endpoint knows".into());
                    }
                }
                (None, None) => {
                    return invalid(
                        "m365: OAuth2 needs a token: pick a Microsoft 365 connection, or give a token URL and client id"
                            .into(),
                    );
                }
            },
        }
        if self.folders.len() > 100 {
            return invalid(format!("folders: at most 100 (here {})", self.folders.len()));
        }
        for f in &self.folders {
            short_text("folders", f, 255, "folder names as the server shows them, e.g. INBOX or Projects/Alpha")?;
        }
        let after_ok = self.after_archive == "delete"
            || self.after_archive.strip_prefix("move:").is_some_and(|f| !f.trim().is_empty() && f.len() <= 255);
        if !after_ok {
            return invalid(format!("after_archive {:?}: delete, or move:<folder>", self.after_archive));
        }
        if let Some(m) = &self.mailbox {
            short_text("mailbox", m, 320, "the mailbox placements name, e.g. bob@contoso.com")?;
        }
        if !(1..=86_400).contains(&self.poll_interval_secs) {
            return invalid(format!("poll_interval_secs {}: 1 to 86400", self.poll_interval_secs));
        }
        Ok(())
    }
}

impl M365Config {
    fn check(&self) -> Result<(), ArchiveError> {
        host_like("tenant_id", &self.tenant_id, "the directory (tenant) id from Entra ID, a GUID")?;
        host_like("client_id", &self.client_id, "the application (client) id of the app registration, a GUID")?;
        short_text("certificate", &self.certificate, 100, "the certificate's alias; Update Manifest makes it")?;
        check_url("login_host", &self.login_host, "https://login.microsoftonline.com")?;
        check_url("graph_host", &self.graph_host, "https://graph.microsoft.com")?;
        if self.mailboxes.len() > 100_000 {
            return invalid(format!("mailboxes: at most 100000 (here {})", self.mailboxes.len()));
        }
        for m in &self.mailboxes {
            short_text("mailboxes", m, 320, "user principal names or addresses, e.g. bob@contoso.com")?;
        }
        if let Some(g) = &self.group {
            host_like("group", g, "the group's object id from Entra ID")?;
        }
        if !(1..=32).contains(&self.parallel_mailboxes) {
            return invalid(format!(
                "parallel_mailboxes {}: between 1 and 32 (4 is a good start; Graph throttles an app that reads too many mailboxes at once)",
                self.parallel_mailboxes
            ));
        }
        if !["ps256", "rs256"].contains(&self.assertion.as_str()) {
            return invalid(format!("assertion {:?}: ps256 or rs256", self.assertion));
        }
        if let Some(url) = &self.webhook_url {
            check_url("webhook_url", url, "https://archive.contoso.com/o365")?;
        }
        if let Some(s) = &self.client_state
            && !s.is_empty()
            && (s.len() < 16 || s.len() > 128)
        {
            return invalid("client_state: 16 to 128 characters (or leave it empty: Coffer makes one)".into());
        }
        Ok(())
    }
}

fn changes(old: &Connection, new: &Connection) -> String {
    let (old, new) = (old.describe(), new.describe());
    let changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.iter().find(|(ok, _)| ok == k).is_none_or(|(_, ov)| ov != v))
        .map(|(k, v)| {
            let before = old.iter().find(|(ok, _)| ok == k).map_or("", |(_, ov)| ov.as_str());
            format!("{k} {before} → {v}")
        })
        .collect();
    if changed.is_empty() { "nothing changed".into() } else { changed.join(", ") }
}

fn listing(c: &Connection) -> String {
    c.describe().into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

impl Admin<'_> {
    /// The connections as configured (without their secrets).
    pub async fn connections(&self, actor: &Actor) -> Result<Definitions, ArchiveError> {
        actor.require_system_admin()?;
        self.stored_connections().await
    }

    async fn stored_connections(&self) -> Result<Definitions, ArchiveError> {
        match self.archive().catalog.setting(SETTING).await? {
            None => Ok(Definitions::default()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| ArchiveError::Internal(format!("the stored connections do not read back: {e}"))),
        }
    }

    async fn store_connections(&self, defs: &Definitions) -> Result<(), ArchiveError> {
        let json = serde_json::to_string(defs).map_err(|e| ArchiveError::Internal(e.to_string()))?;
        Ok(self.archive().catalog.set_setting(SETTING, &json).await?)
    }

    /// What needs the archive: the tenant exists, the secrets a connection needs are given or
    /// stored, a token's Microsoft 365 connection exists, a CA file is there.
    async fn check_in_archive(&self, c: &Connection, given: &[Secret], defs: &Definitions) -> Result<(), ArchiveError> {
        if let Some(t) = c.tenant() {
            self.archive().tenant(Some(t)).await.map_err(|_| {
                ArchiveError::Invalid(format!("tenant {t:?}: no such tenant (Configuration → Tenants lists them)"))
            })?;
        }
        let secrets = self.archive().secrets();
        let known = |key: String| -> Result<bool, ArchiveError> {
            Ok(given.iter().any(|(k, _)| *k == key) || secrets.get(&key)?.is_some())
        };
        if let Connection::Imap(i) = c {
            match (i.auth, &i.m365) {
                (AuthMethod::Password, _) => {
                    if !known(format!("imap.{}.password", i.name))? {
                        return invalid("password: the mailbox's password (sealed, never shown again)".into());
                    }
                }
                (_, Some(m)) => {
                    if !defs.m365.iter().any(|c| c.name == *m) {
                        return invalid(format!("m365 {m:?}: no Microsoft 365 connection of that name"));
                    }
                }
                (_, None) => {
                    if !known(format!("imap.{}.client_secret", i.name))? {
                        return invalid("client_secret: the OAuth2 client's secret (sealed, never shown again)".into());
                    }
                }
            }
            if let Some(ca) = &i.ca_file
                && !ca.is_file()
            {
                return invalid(format!("ca_file {}: no such file on the server", ca.display()));
            }
        }
        Ok(())
    }

    /// Adds (`new`) or changes a connection: checked, its secrets sealed, saved, applied by
    /// `control` (a connection that cannot start, waiting for its certificate say, is saved and
    /// listed with why) and audited with before and after.
    pub async fn save_connection(
        &self,
        actor: &Actor,
        control: &dyn SourceControl,
        connection: Connection,
        new: bool,
    ) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        connection.check()?;
        let (mut connection, mut secrets) = connection.without_secrets();
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut defs = self.stored_connections().await?;
        let old = defs.find(connection.name());
        match (new, &old) {
            (true, Some(_)) => {
                return invalid(format!("name {:?}: a connection of that name exists", connection.name()));
            }
            (false, None) => return Err(ArchiveError::NotFound),
            (false, Some(o)) if o.kind() != connection.kind() => {
                return invalid(format!("kind: {} is a {} connection", connection.name(), o.kind()));
            }
            (true, None) if defs.len() >= MAX_CONNECTIONS => {
                return invalid(format!("at most {MAX_CONNECTIONS} connections"));
            }
            _ => {}
        }
        self.check_in_archive(&connection, &secrets, &defs).await?;
        if let Connection::M365(m) = &mut connection
            && m.webhook_url.is_some()
        {
            let key = format!("m365.{}.client_state", m.name);
            if !secrets.iter().any(|(k, _)| *k == key) && self.archive().secrets().get(&key)?.is_none() {
                secrets.push((key, crate::identity::random_token(24)));
            }
        }
        for (key, value) in &secrets {
            self.archive().secrets().set(key, value)?;
        }
        defs.put(connection.clone());
        self.store_connections(&defs).await?;
        let name = connection.name().to_owned();
        let sealed: Vec<&str> = secrets.iter().map(|(k, _)| k.rsplit('.').next().unwrap_or("")).collect();
        let sealed = if sealed.is_empty() { String::new() } else { format!("; new {} sealed", sealed.join(", ")) };
        let detail = match &old {
            Some(o) => format!("connection {name} changed: {}{sealed}", changes(o, &connection)),
            None => format!("connection {name} ({}) added: {}{sealed}", connection.kind(), listing(&connection)),
        };
        self.audit(actor, "configuration", &detail).await?;
        Ok(control.apply(connection, defs).await)
    }

    /// Stops and removes a connection, audited with what it was. What it archived stays; its
    /// secrets and cursors are kept, so a connection made again of that name continues.
    pub async fn remove_connection(
        &self,
        actor: &Actor,
        control: &dyn SourceControl,
        name: &str,
    ) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut defs = self.stored_connections().await?;
        if let Some(user) = defs.imap.iter().find(|i| i.m365.as_deref() == Some(name)) {
            return invalid(format!("IMAP connection {} takes its token from {name}: change it first", user.name));
        }
        let gone = defs.remove(name).ok_or(ArchiveError::NotFound)?;
        self.store_connections(&defs).await?;
        control.remove(name).await;
        self.audit(actor, "configuration", &format!("connection {name} removed (was: {})", listing(&gone))).await
    }

    /// The connections to run: the stored ones, with the configuration file's seed applied when
    /// its connections are new or the file changed since it was last applied. With `save`, the
    /// result is stored (its secrets sealed); without, it is only read (a command that does not
    /// write the catalog), and the seed's secrets stay in the answer.
    pub async fn seed_connections(&self, seed: &Definitions, save: bool) -> Result<Definitions, ArchiveError> {
        for c in seed.all() {
            c.check()
                .map_err(|e| ArchiveError::Invalid(format!("[[{}]] in the configuration: {e}", seed_table(&c))))?;
        }
        let json = serde_json::to_string(seed).map_err(|e| ArchiveError::Internal(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(json.as_bytes()));
        let catalog = &self.archive().catalog;
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut defs = self.stored_connections().await?;
        if catalog.setting(SEED_SETTING).await?.as_deref() == Some(digest.as_str()) {
            return Ok(defs);
        }
        if !save {
            for c in seed.all() {
                defs.put(c);
            }
            return Ok(defs);
        }
        for c in seed.all() {
            let (c, secrets) = c.without_secrets();
            for (key, value) in &secrets {
                self.archive().secrets().set(key, value)?;
            }
            defs.put(c);
        }
        self.store_connections(&defs).await?;
        catalog.set_setting(SEED_SETTING, &digest).await?;
        Ok(defs)
    }
}

fn seed_table(c: &Connection) -> &'static str {
    match c {
        Connection::Imap(_) => "imap",
        Connection::M365(_) => "m365",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imap() -> ImapConfig {
        serde_json::from_value(serde_json::json!({
            "name": "journal", "host": "imap.contoso.com", "port": 993, "username": "journal@contoso.com"
        }))
        .unwrap()
    }

    #[test]
    fn each_connection_mistake_names_its_field() {
        assert!(Connection::Imap(imap()).check().is_ok());
        let m = M365Config::new("contoso", "4a1f0b6e-0000-4000-8000-000000000001", "c1", "m365");
        assert!(Connection::M365(m.clone()).check().is_ok());
        let cases: Vec<(Connection, &str)> = vec![
            (Connection::Imap(ImapConfig { name: "my journal".into(), ..imap() }), "name"),
            (Connection::Imap(ImapConfig { host: "imap contoso".into(), ..imap() }), "host"),
            (Connection::Imap(ImapConfig { port: 0, ..imap() }), "port"),
            (Connection::Imap(ImapConfig { username: " ".into(), ..imap() }), "username"),
            (Connection::Imap(ImapConfig { auth: AuthMethod::Xoauth2, ..imap() }), "m365"),
            (
                Connection::Imap(ImapConfig {
                    auth: AuthMethod::Xoauth2,
                    token_url: Some("http://login.example/token".into()),
                    client_id: Some("c".into()),
                    ..imap()
                }),
                "token_url",
            ),
            (Connection::Imap(ImapConfig { after_archive: "archive".into(), ..imap() }), "after_archive"),
            (Connection::Imap(ImapConfig { poll_interval_secs: 0, ..imap() }), "poll_interval_secs"),
            (Connection::M365(M365Config { tenant_id: "".into(), ..m.clone() }), "tenant_id"),
            (Connection::M365(M365Config { graph_host: "ftp://graph".into(), ..m.clone() }), "graph_host"),
            (Connection::M365(M365Config { parallel_mailboxes: 0, ..m.clone() }), "parallel_mailboxes"),
            (Connection::M365(M365Config { assertion: "hs256".into(), ..m.clone() }), "assertion"),
            (
                Connection::M365(M365Config { webhook_url: Some("http://archive/o365".into()), ..m.clone() }),
                "webhook_url",
            ),
            (Connection::M365(M365Config { client_state: Some("short".into()), ..m }), "client_state"),
        ];
        for (c, field) in cases {
            let why = c.check().unwrap_err().to_string();
            assert!(why.starts_with(field), "{field}: {why}");
        }
    }

    #[test]
    fn secrets_leave_the_settings_and_are_never_serialized() {
        let c = Connection::Imap(ImapConfig { password: "hunter2".into(), client_secret: Some("s3".into()), ..imap() });
        let (bare, secrets) = c.without_secrets();
        assert_eq!(
            secrets,
            [("imap.journal.password".into(), "hunter2".into()), ("imap.journal.client_secret".into(), "s3".into())]
        );
        let json = serde_json::to_string(&bare).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("\"password\":") && !json.contains("client_secret"),
            "{json}"
        );
    }

    #[test]
    fn a_change_is_described_setting_by_setting() {
        let old = Connection::Imap(imap());
        let new = Connection::Imap(ImapConfig { port: 143, security: Security::Starttls, ..imap() });
        assert_eq!(changes(&old, &new), "server imap.contoso.com:993 (TLS (IMAPS)) → imap.contoso.com:143 (STARTTLS)");
        assert_eq!(changes(&old, &old), "nothing changed");
    }
}

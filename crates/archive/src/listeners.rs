//! SMTP journaling listeners as configuration: each one's address, greeting name, TLS policy,
//! certificate and limits, kept in the catalog (setting `listeners`), edited in the console and
//! the API, applied live by whatever runs them ([`ListenerControl`], the `smtp` crate's), audited
//! with before and after. `[smtp]` in coffer.toml seeds them: its listeners are applied when they
//! are new or when the file changed since they were last applied, so an edit made in the console
//! stands while the file stays the same.

use serde::{Deserialize, Serialize};

use crate::ArchiveError;
use crate::admin::Admin;
use crate::service::Actor;

/// A future borrowing what it acts on (awaited at once by the admin service).
pub type Pending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

const SETTING: &str = "listeners";
/// The seed last applied from the configuration file.
const SEED_SETTING: &str = "listeners_seed";
const MAX_LISTENERS: usize = 32;

/// One SMTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerSettings {
    /// Lowercase letters, digits and `-`; its traffic figures go by this name.
    pub name: String,
    pub enabled: bool,
    /// Address and port, e.g. `0.0.0.0:25` or `[::]:25`.
    pub listen: String,
    /// Greeting and EHLO name; default: the journal domain.
    pub hostname: Option<String>,
    /// `off`, `offer` (STARTTLS offered) or `require` (no mail before STARTTLS).
    pub tls: String,
    /// Certificate-store alias for STARTTLS.
    pub certificate: String,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_recipients: usize,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            name: String::new(),
            enabled: true,
            listen: String::new(),
            hostname: None,
            tls: "offer".into(),
            certificate: "smtp".into(),
            max_connections: 200,
            max_connections_per_ip: 50,
            max_recipients: 100,
        }
    }
}

impl ListenerSettings {
    /// Every field checked; a mistake names its field and how to fix it.
    pub fn check(&self) -> Result<(), ArchiveError> {
        let invalid = |m: String| Err(ArchiveError::Invalid(m));
        let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if self.name.is_empty() || self.name.len() > 40 || !self.name.chars().all(name_ok) {
            return invalid(format!("name {:?}: 1 to 40 lowercase letters, digits or -", self.name));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(format!(
                "listen {:?}: an address and a port, e.g. 0.0.0.0:25, [::]:25 or 127.0.0.1:2525",
                self.listen
            ));
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 253 || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return invalid(format!("hostname {h:?}: a host name such as archive.contoso.com"));
        }
        if !["off", "offer", "require"].contains(&self.tls.as_str()) {
            return invalid(format!("tls {:?}: off, offer or require", self.tls));
        }
        if self.tls != "off" && (self.certificate.is_empty() || self.certificate.len() > 100) {
            return invalid(
                "certificate: pick the certificate STARTTLS presents (Configuration → Certificates)".into(),
            );
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return invalid(format!("max_connections {}: 1 to 100000", self.max_connections));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_ip) {
            return invalid(format!(
                "max_connections_per_ip {}: 1 to max_connections ({})",
                self.max_connections_per_ip, self.max_connections
            ));
        }
        if !(1..=10_000).contains(&self.max_recipients) {
            return invalid(format!("max_recipients {}: 1 to 10000", self.max_recipients));
        }
        Ok(())
    }

    /// Setting → value, in words, for the audit log and the console.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("enabled", if self.enabled { "yes" } else { "no" }.into()),
            ("listen", self.listen.clone()),
            ("hostname", self.hostname.clone().unwrap_or_else(|| "the journal domain".into())),
            ("tls", self.tls.clone()),
            ("certificate", self.certificate.clone()),
            ("max connections", self.max_connections.to_string()),
            ("max connections per address", self.max_connections_per_ip.to_string()),
            ("max recipients", self.max_recipients.to_string()),
        ]
    }
}

/// What runs the listeners (the serving process's SMTP side). Rights, validation, saving and audit
/// are the admin service's; this only acts.
pub trait ListenerControl: Send + Sync {
    /// How the listener named so is doing here: `listening on ADDR`, `stopped`, or why it failed;
    /// None when this process runs no SMTP.
    fn state(&self, name: &str) -> Option<String>;

    /// Starts the listener, or replaces the one of that name (binding the new address before
    /// letting the old one go when they differ); what it did, or why it could not.
    fn apply(&self, settings: ListenerSettings) -> Pending<'_, Result<String, ArchiveError>>;

    /// Stops and forgets the listener; transactions in flight finish.
    fn remove<'a>(&'a self, name: &'a str) -> Pending<'a, ()>;
}

/// A console without SMTP in its process: changes are saved and run at the next `coffer serve`.
pub struct NoListeners;

impl ListenerControl for NoListeners {
    fn state(&self, _: &str) -> Option<String> {
        None
    }

    fn apply(&self, _: ListenerSettings) -> Pending<'_, Result<String, ArchiveError>> {
        Box::pin(async { Ok("saved; it starts with the next `coffer serve`".into()) })
    }

    fn remove<'a>(&'a self, _: &'a str) -> Pending<'a, ()> {
        Box::pin(async {})
    }
}

fn changes(old: &ListenerSettings, new: &ListenerSettings) -> String {
    let changed: Vec<String> = old
        .describe()
        .into_iter()
        .zip(new.describe())
        .filter(|(a, b)| a.1 != b.1)
        .map(|((field, a), (_, b))| format!("{field} {a} → {b}"))
        .collect();
    if changed.is_empty() { "nothing changed".into() } else { changed.join(", ") }
}

fn listing(s: &ListenerSettings) -> String {
    s.describe().into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

impl Admin<'_> {
    /// The listeners as configured.
    pub async fn listeners(&self, actor: &Actor) -> Result<Vec<ListenerSettings>, ArchiveError> {
        actor.require_system_admin()?;
        self.stored_listeners().await
    }

    async fn stored_listeners(&self) -> Result<Vec<ListenerSettings>, ArchiveError> {
        match self.archive().catalog.setting(SETTING).await? {
            None => Ok(Vec::new()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| ArchiveError::Internal(format!("the stored listeners do not read back: {e}"))),
        }
    }

    async fn store_listeners(&self, list: &[ListenerSettings]) -> Result<(), ArchiveError> {
        let json = serde_json::to_string(list).map_err(|e| ArchiveError::Internal(e.to_string()))?;
        Ok(self.archive().catalog.set_setting(SETTING, &json).await?)
    }

    /// Adds (`new`) or changes a listener: checked, applied by `control` (a port that cannot be
    /// bound is refused and nothing is saved), saved and audited with before and after.
    pub async fn save_listener(
        &self,
        actor: &Actor,
        control: &dyn ListenerControl,
        settings: ListenerSettings,
        new: bool,
    ) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        settings.check()?;
        if settings.tls != "off" && self.archive().certs().certificate_pem(&settings.certificate).is_err() {
            return Err(ArchiveError::Invalid(format!(
                "certificate {:?}: not in the certificate store; generate or import it under Configuration → Certificates",
                settings.certificate
            )));
        }
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut list = self.stored_listeners().await?;
        let old = list.iter().position(|l| l.name == settings.name);
        match (new, old) {
            (true, Some(_)) => {
                return Err(ArchiveError::Invalid(format!("name {:?}: a listener of that name exists", settings.name)));
            }
            (false, None) => return Err(ArchiveError::NotFound),
            (true, None) if list.len() >= MAX_LISTENERS => {
                return Err(ArchiveError::Invalid(format!("at most {MAX_LISTENERS} listeners")));
            }
            _ => {}
        }
        if let Some(other) = list.iter().find(|l| {
            l.name != settings.name
                && l.enabled
                && settings.enabled
                && l.listen == settings.listen
                && !l.listen.ends_with(":0")
        }) {
            return Err(ArchiveError::Invalid(format!(
                "listen {}: listener {} has that address",
                settings.listen, other.name
            )));
        }
        let outcome = control.apply(settings.clone()).await?;
        let detail = match old {
            Some(i) => {
                let detail = format!("listener {} changed: {}", settings.name, changes(&list[i], &settings));
                list[i] = settings;
                detail
            }
            None => {
                let detail = format!("listener {} added: {}", settings.name, listing(&settings));
                list.push(settings);
                detail
            }
        };
        self.store_listeners(&list).await?;
        self.audit(actor, "configuration", &detail).await?;
        Ok(outcome)
    }

    /// Stops and removes a listener, audited with what it was.
    pub async fn remove_listener(
        &self,
        actor: &Actor,
        control: &dyn ListenerControl,
        name: &str,
    ) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut list = self.stored_listeners().await?;
        let i = list.iter().position(|l| l.name == name).ok_or(ArchiveError::NotFound)?;
        let gone = list.remove(i);
        self.store_listeners(&list).await?;
        control.remove(name).await;
        self.audit(actor, "configuration", &format!("listener {name} removed (was: {})", listing(&gone))).await
    }

    /// At a serving start: the configuration file's listeners are applied when they are new or
    /// the file changed since they were last applied; returns every listener to run.
    pub async fn seed_listeners(&self, seed: &[ListenerSettings]) -> Result<Vec<ListenerSettings>, ArchiveError> {
        for s in seed {
            s.check().map_err(|e| ArchiveError::Invalid(format!("[smtp] in the configuration: {e}")))?;
        }
        let digest = serde_json::to_string(seed).map_err(|e| ArchiveError::Internal(e.to_string()))?;
        let catalog = &self.archive().catalog;
        let _one_at_a_time = self.archive().settings_write.lock().await;
        let mut list = self.stored_listeners().await?;
        if catalog.setting(SEED_SETTING).await?.as_deref() != Some(digest.as_str()) {
            for s in seed {
                match list.iter_mut().find(|l| l.name == s.name) {
                    Some(l) => *l = s.clone(),
                    None => list.push(s.clone()),
                }
            }
            self.store_listeners(&list).await?;
            catalog.set_setting(SEED_SETTING, &digest).await?;
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> ListenerSettings {
        ListenerSettings { name: "journal-2".into(), listen: "0.0.0.0:2526".into(), ..Default::default() }
    }

    #[test]
    fn each_listener_mistake_names_its_field() {
        assert!(listener().check().is_ok());
        let cases: Vec<(ListenerSettings, &str)> = vec![
            (ListenerSettings { name: "Journal 2".into(), ..listener() }, "name"),
            (ListenerSettings { listen: "0.0.0.0".into(), ..listener() }, "listen"),
            (ListenerSettings { listen: "mail.contoso.com:25".into(), ..listener() }, "listen"),
            (ListenerSettings { hostname: Some("a b".into()), ..listener() }, "hostname"),
            (ListenerSettings { tls: "maybe".into(), ..listener() }, "tls"),
            (ListenerSettings { certificate: String::new(), ..listener() }, "certificate"),
            (ListenerSettings { max_connections: 0, ..listener() }, "max_connections"),
            (ListenerSettings { max_connections_per_ip: 500, ..listener() }, "max_connections_per_ip"),
            (ListenerSettings { max_recipients: 0, ..listener() }, "max_recipients"),
        ];
        for (settings, field) in cases {
            let why = settings.check().unwrap_err().to_string();
            assert!(why.starts_with(field), "{field}: {why}");
        }
        assert!(ListenerSettings { tls: "off".into(), certificate: String::new(), ..listener() }.check().is_ok());
    }

    #[test]
    fn a_change_is_described_field_by_field() {
        let new = ListenerSettings { tls: "require".into(), max_recipients: 500, ..listener() };
        assert_eq!(changes(&listener(), &new), "tls offer → require, max recipients 100 → 500");
        assert_eq!(changes(&listener(), &listener()), "nothing changed");
    }
}

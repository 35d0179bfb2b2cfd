//! Every administrative operation — tenants, users, API keys, sending networks, volumes, secrets,
//! certificates, login settings, status, the audit log, source connections — in one place. Each
//! checks the actor's rights, validates, writes and audits here, so the CLI (the local operator),
//! the console and the API are thin adapters that cannot disagree.

use coffer_catalog::{ApiKeyRow, AuditEntry, ListenerFigure, NewUser, RoleAssignment, TrafficRow, UserRow};
use coffer_store::VolumeInfo;
use serde::Serialize;

use crate::certs::{CertInfo, KeyKind, Subject};
use crate::service::{Actor, Archive, now_secs};
use crate::sources::SourceControl;
use crate::{ArchiveError, Tenant};

/// Passwords of local accounts have at least this many characters.
pub const MIN_PASSWORD: usize = 10;
/// Most domains one tenant names, and most characters of a display name.
const MAX_DOMAINS: usize = 100;
/// Most sending networks one tenant names.
const MAX_NETWORKS: usize = 200;
const MAX_DISPLAY_NAME: usize = 200;

/// What an account may do. Ordered: each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Only mail where one of their addresses takes part, or that sits in their mailbox.
    User,
    /// All mail of the tenant, read-only; export; the audit log.
    Auditor,
    /// All mail of the tenant and the configuration.
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" => Some(Role::User),
            "auditor" => Some(Role::Auditor),
            "administrator" | "admin" => Some(Role::Administrator),
            _ => None,
        }
    }

    fn parse_or_explain(s: &str) -> Result<Role, ArchiveError> {
        Role::parse(s).ok_or_else(|| ArchiveError::Invalid(format!("role {s:?}: use administrator, auditor or user")))
    }
}

impl Actor {
    pub fn require(&self, role: Role) -> Result<(), ArchiveError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ArchiveError::Forbidden(format!("this needs the {} role", role.as_str())))
        }
    }

    /// Settings that span tenants (tenants, volumes, certificates, secrets, login, connections)
    /// belong to the administrators of the default tenant and to the machine's operator.
    pub fn is_system_admin(&self) -> bool {
        self.local || (self.system && self.role == Role::Administrator)
    }

    pub fn require_system_admin(&self) -> Result<(), ArchiveError> {
        self.require(Role::Administrator)?;
        if !self.is_system_admin() {
            return Err(ArchiveError::Forbidden("this belongs to the administrators of the default tenant".into()));
        }
        Ok(())
    }

    /// May this actor administer (`Administrator`) or read (`Auditor`) things of `tenant_id`?
    pub(crate) fn require_in(&self, role: Role, tenant_id: i64) -> Result<(), ArchiveError> {
        self.require(role)?;
        if tenant_id == self.tenant.id || self.is_system_admin() { Ok(()) } else { Err(ArchiveError::NotFound) }
    }
}

/// A tenant as administrators see it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub tenant: Tenant,
    /// Where Exchange's journal rule sends this tenant's reports.
    pub journal_address: String,
    pub messages: i64,
    /// Sending networks journal reports are accepted from (empty: any).
    pub networks: Vec<String>,
}

/// A new local account.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub password: String,
    /// The addresses (and mailboxes) a user sees mail of.
    pub addresses: Vec<String>,
}

/// A change to an account.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub display_name: String,
    pub role: String,
    pub addresses: Vec<String>,
    pub disabled: bool,
    /// A new password (local accounts); also unlocks the account.
    pub password: Option<String>,
}

/// Login settings as the web front end keeps them (JSON under the setting `login`), with the
/// tenant single sign-on users belong to and the role assignments for it.
#[derive(Debug, Clone)]
pub struct LoginChange<'a> {
    pub settings_json: String,
    pub tenant: &'a str,
    pub client_secret: Option<&'a str>,
    pub assignments: &'a [RoleAssignment],
    /// What changed, in words, for the audit log.
    pub summary: String,
}

/// The secret-store key of single sign-on's client secret.
pub const CLIENT_SECRET: &str = "oidc.client_secret";
const LOGIN_SETTING: &str = "login";

/// What the status pages, the API and `coffer status` show: the same for every surface.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub tenants: Vec<TenantInfo>,
    pub traffic: Vec<TrafficRow>,
    pub listener_figures: Vec<ListenerFigure>,
    /// Messages deleted per hour: (hour's start, tenant, count).
    pub deletions: Vec<(i64, i64, i64)>,
    /// Messages archived but not yet searchable, and seconds since the oldest of them arrived.
    pub index_lag: i64,
    pub index_lag_seconds: i64,
    pub volumes: Vec<VolumeInfo>,
}

impl Status {
    /// The name of one of the status's tenants.
    pub fn tenant_name(&self, id: i64) -> Option<&str> {
        self.tenants.iter().find(|t| t.tenant.id == id).map(|t| t.tenant.name.as_str())
    }
}

/// A connection test's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub ok: bool,
    /// What the test found, or what went wrong and how to fix it.
    pub detail: String,
}

/// The administrative operations of an archive; `archive.admin()`.
pub struct Admin<'a> {
    archive: &'a Archive,
}

impl Archive {
    pub fn admin(&self) -> Admin<'_> {
        Admin { archive: self }
    }
}

impl Admin<'_> {
    pub(crate) fn archive(&self) -> &Archive {
        self.archive
    }

    pub(crate) async fn audit(&self, actor: &Actor, action: &str, detail: &str) -> Result<(), ArchiveError> {
        self.archive.audit(actor, action, detail).await
    }

    fn journal_address(&self, t: &Tenant) -> String {
        t.journal_address(&self.archive.config.journal_domain)
    }

    // --- tenants ---

    async fn tenant_info(&self, tenant: Tenant, networks: Vec<String>) -> Result<TenantInfo, ArchiveError> {
        Ok(TenantInfo {
            journal_address: self.journal_address(&tenant),
            messages: self.archive.catalog.count_messages(tenant.id).await?,
            networks,
            tenant,
        })
    }

    /// Every tenant (system administrators).
    pub async fn tenants(&self, actor: &Actor) -> Result<Vec<TenantInfo>, ArchiveError> {
        actor.require_system_admin()?;
        self.tenants_of(None).await
    }

    async fn tenants_of(&self, only: Option<i64>) -> Result<Vec<TenantInfo>, ArchiveError> {
        let catalog = &self.archive.catalog;
        let mut networks = catalog.tenant_networks().await?;
        let mut out = Vec::new();
        for t in catalog.tenants().await? {
            if only.is_none_or(|id| id == t.id) {
                let n = networks.remove(&t.id).unwrap_or_default();
                out.push(self.tenant_info(t, n).await?);
            }
        }
        Ok(out)
    }

    pub async fn add_tenant(&self, actor: &Actor, name: &str, domains: &[String]) -> Result<TenantInfo, ArchiveError> {
        actor.require_system_admin()?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control() || c == '@') {
            return Err(ArchiveError::Invalid("a tenant name has 1 to 100 characters, without '@'".into()));
        }
        let domains = parse_domains(domains)?;
        let t = self.archive.catalog.add_tenant(name, &domains).await?;
        self.archive.record_changes().await?;
        let info = self.tenant_info(t, Vec::new()).await?;
        let detail = format!(
            "tenant {} added (domains {}); journal address {}",
            info.tenant.name,
            if domains.is_empty() { "none".into() } else { domains.join(", ") },
            info.journal_address
        );
        self.audit(actor, "configuration", &detail).await?;
        Ok(info)
    }

    /// Replaces a tenant's domains and the sending networks its journal reports are accepted
    /// from (none: any host). Its journal address never changes. Recorded as evidence at once and
    /// audited with before and after.
    pub async fn update_tenant(
        &self,
        actor: &Actor,
        tenant_id: i64,
        domains: &[String],
        networks: &[String],
    ) -> Result<TenantInfo, ArchiveError> {
        actor.require_system_admin()?;
        let domains = parse_domains(domains)?;
        let mut nets = networks
            .iter()
            .flat_map(|n| n.split([',', ' ', '\n']))
            .filter(|n| !n.trim().is_empty())
            .map(parse_network)
            .collect::<Result<Vec<_>, _>>()?;
        nets.sort();
        nets.dedup();
        if nets.len() > MAX_NETWORKS {
            return Err(ArchiveError::Invalid(format!("at most {MAX_NETWORKS} sending networks per tenant")));
        }
        let catalog = &self.archive.catalog;
        let before = catalog.tenant(tenant_id).await?.ok_or(ArchiveError::NotFound)?;
        let networks_before = catalog.tenant_networks().await?.remove(&tenant_id).unwrap_or_default();
        catalog.set_tenant_scope(tenant_id, &domains, &nets).await?;
        self.archive.record_changes().await?;
        let list = |l: &[String]| if l.is_empty() { "none".to_owned() } else { l.join(", ") };
        let detail = format!(
            "tenant {}: domains {} → {}; sending networks {} → {}",
            before.name,
            list(&before.domains),
            list(&domains),
            list(&networks_before),
            list(&nets)
        );
        self.audit(actor, "configuration", &detail).await?;
        let after = catalog.tenant(tenant_id).await?.ok_or(ArchiveError::NotFound)?;
        self.tenant_info(after, nets).await
    }

    /// Accepts `tenant`'s journal reports only from these networks (and any added before).
    pub async fn allow_network(&self, actor: &Actor, tenant_id: i64, cidr: &str) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        let net = parse_network(cidr)?;
        let tenant = self.archive.catalog.tenant(tenant_id).await?.ok_or(ArchiveError::NotFound)?;
        self.archive.catalog.allow_network(tenant.id, &net).await?;
        self.archive.record_changes().await?;
        self.audit(actor, "configuration", &format!("tenant {}: journal reports accepted from {net}", tenant.name))
            .await?;
        Ok(net)
    }

    // --- users ---

    /// The accounts of a tenant (its administrators; a system administrator names any, or None
    /// for all tenants).
    pub async fn users(&self, actor: &Actor, tenant_id: Option<i64>) -> Result<Vec<UserRow>, ArchiveError> {
        let tenant_id = match tenant_id {
            None if actor.is_system_admin() => None,
            None => Some(actor.tenant.id),
            Some(t) => Some(t),
        };
        match tenant_id {
            Some(t) => actor.require_in(Role::Administrator, t)?,
            None => actor.require_system_admin()?,
        }
        Ok(self.archive.catalog.users(tenant_id).await?)
    }

    /// One account of a tenant the actor administers.
    pub async fn user(&self, actor: &Actor, id: i64) -> Result<UserRow, ArchiveError> {
        actor.require(Role::Administrator)?;
        let user = self.archive.catalog.user(id).await?.ok_or(ArchiveError::NotFound)?;
        actor.require_in(Role::Administrator, user.tenant_id)?;
        Ok(user)
    }

    /// Adds a local account to `tenant`.
    pub async fn add_user(&self, actor: &Actor, tenant: &Tenant, new: &NewAccount) -> Result<UserRow, ArchiveError> {
        actor.require_in(Role::Administrator, tenant.id)?;
        let role = Role::parse_or_explain(&new.role)?;
        check_password(&new.password)?;
        let addresses = addresses(&new.addresses)?;
        let login = new.login.trim();
        if login.is_empty() || login.len() > 320 || login.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ArchiveError::Invalid("a login has 1 to 320 characters, without spaces".into()));
        }
        tenant_login(tenant, login)?;
        if role > actor.role {
            return Err(ArchiveError::Forbidden("an account cannot get a higher role than yours".into()));
        }
        let user = self
            .archive
            .catalog
            .add_user(&NewUser {
                tenant_id: tenant.id,
                login: login.to_owned(),
                display_name: display_name(&new.display_name)?,
                role: role.as_str().into(),
                addresses,
                password_hash: Some(crate::identity::hash_password(&new.password)),
                external_id: None,
            })
            .await?;
        let detail = format!(
            "user {} added to tenant {} with role {}, addresses {}",
            user.login,
            tenant.name,
            role.as_str(),
            user.addresses.join(" ")
        );
        self.audit(actor, "configuration", &detail).await?;
        Ok(user)
    }

    pub async fn update_user(&self, actor: &Actor, id: i64, c: &AccountChange) -> Result<(), ArchiveError> {
        let user = self.user(actor, id).await?;
        let role = Role::parse_or_explain(&c.role)?;
        if actor.user_id == Some(user.id) && (role != Role::Administrator || c.disabled) {
            return Err(ArchiveError::Invalid(
                "you cannot take away your own administrator role or disable yourself".into(),
            ));
        }
        if role > actor.role {
            return Err(ArchiveError::Forbidden("an account cannot get a higher role than yours".into()));
        }
        let addresses = addresses(&c.addresses)?;
        if let Some(p) = &c.password {
            if user.external_id.is_some() {
                return Err(ArchiveError::Invalid("accounts from single sign-on have no password here".into()));
            }
            check_password(p)?;
        }
        let catalog = &self.archive.catalog;
        catalog.update_user(id, &display_name(&c.display_name)?, role.as_str(), &addresses, c.disabled).await?;
        let mut detail = format!(
            "user {}: role {} (was {}), addresses {}, disabled {}",
            user.login,
            role.as_str(),
            user.role,
            addresses.join(" "),
            c.disabled
        );
        if let Some(p) = &c.password {
            catalog.set_password_hash(id, &crate::identity::hash_password(p)).await?;
            detail.push_str(", password set");
        }
        self.audit(actor, "configuration", &detail).await
    }

    // --- API keys ---

    /// A new API key for `owner` (None: the actor's own account), with at most the owner's role
    /// and the actor's: its id, and the key itself (shown once; only its hash is kept).
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        owner: Option<&str>,
        name: &str,
        role: Option<&str>,
    ) -> Result<(i64, String), ArchiveError> {
        let catalog = &self.archive.catalog;
        let user = match owner {
            None => {
                let id = actor.user_id.ok_or_else(|| ArchiveError::Invalid("name the key's owner".into()))?;
                catalog.user(id).await?.ok_or(ArchiveError::NotFound)?
            }
            Some(login) => {
                let user = catalog.user_by_login(login).await?.ok_or_else(|| {
                    ArchiveError::Invalid(format!("no user {login:?}; `coffer user list` shows them"))
                })?;
                if actor.user_id != Some(user.id) {
                    actor.require_in(Role::Administrator, user.tenant_id)?;
                }
                user
            }
        };
        let own = Role::parse(&user.role).unwrap_or(Role::User).min(actor.role);
        let role = match role.map(str::trim).filter(|r| !r.is_empty()) {
            None => own,
            Some(r) => Role::parse_or_explain(r)?,
        };
        if role > own {
            return Err(ArchiveError::Forbidden(format!(
                "a key cannot have a higher role than its owner ({})",
                own.as_str()
            )));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ArchiveError::Invalid("give the key a name of 1 to 100 characters (what uses it)".into()));
        }
        let (key, hash) = crate::identity::new_api_key();
        let id = catalog.add_api_key(user.id, name, &hash, role.as_str()).await?;
        let detail = format!("API key {id} ({name}) for {} created with role {}", user.login, role.as_str());
        self.audit(actor, "configuration", &detail).await?;
        Ok((id, key))
    }

    /// The actor's own API keys.
    pub async fn api_keys(&self, actor: &Actor) -> Result<Vec<ApiKeyRow>, ArchiveError> {
        let Some(id) = actor.user_id else { return Ok(Vec::new()) };
        Ok(self.archive.catalog.api_keys(Some(id)).await?)
    }

    /// Revokes one of the actor's own API keys.
    pub async fn revoke_api_key(&self, actor: &Actor, id: i64) -> Result<(), ArchiveError> {
        if !self.api_keys(actor).await?.iter().any(|k| k.id == id) {
            return Err(ArchiveError::NotFound);
        }
        self.archive.catalog.revoke_api_key(id).await?;
        self.audit(actor, "configuration", &format!("API key {id} revoked")).await
    }

    // --- volumes, secrets, certificates ---

    /// The volumes of the actor's tenant (auditors), or all of them (system administrators).
    pub async fn volumes(&self, actor: &Actor) -> Result<Vec<VolumeInfo>, ArchiveError> {
        actor.require(Role::Auditor)?;
        let all = actor.is_system_admin();
        Ok(self.archive.volumes().await?.into_iter().filter(|v| all || v.owner as i64 == actor.tenant.id).collect())
    }

    pub async fn close_volume(&self, actor: &Actor, id: &str) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        match self.archive.close_volume(id) {
            Err(ArchiveError::Store(coffer_store::StoreError::UnknownVolume(_))) => return Err(ArchiveError::NotFound),
            other => other?,
        }
        self.audit(actor, "configuration", &format!("volume {id} closed")).await
    }

    /// Seals a connection secret with the master key; the audit log gets its name, never its value.
    pub async fn set_secret(&self, actor: &Actor, key: &str, value: &str) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        if value.is_empty() {
            return Err(ArchiveError::Invalid(format!("the secret {key} is empty")));
        }
        self.archive.secrets().set(key, value)?;
        self.audit(actor, "configuration", &format!("secret {key} set")).await
    }

    pub fn secret_names(&self, actor: &Actor) -> Result<Vec<String>, ArchiveError> {
        actor.require_system_admin()?;
        Ok(self.archive.secrets().keys())
    }

    pub fn certificates(&self, actor: &Actor) -> Result<Vec<CertInfo>, ArchiveError> {
        actor.require_system_admin()?;
        self.archive.certs().list()
    }

    pub fn certificate_pem(&self, actor: &Actor, alias: &str) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        self.archive.certs().certificate_pem(alias).map_err(|_| ArchiveError::NotFound)
    }

    pub async fn generate_certificate(
        &self,
        actor: &Actor,
        alias: &str,
        subject: &Subject,
        kind: KeyKind,
    ) -> Result<CertInfo, ArchiveError> {
        actor.require_system_admin()?;
        let subject = check_subject(subject)?;
        let info = self.archive.certs().generate_with(alias.trim(), &subject, kind)?;
        let detail = format!("certificate {} generated: {} (SHA-1 {})", info.alias, info.subject, info.sha1);
        self.audit(actor, "configuration", &detail).await?;
        Ok(info)
    }

    /// Imports a PEM file (chain and key) or a PKCS#12 file, told apart by their content.
    pub async fn import_certificate(
        &self,
        actor: &Actor,
        alias: &str,
        data: &[u8],
        password: &str,
    ) -> Result<CertInfo, ArchiveError> {
        actor.require_system_admin()?;
        let certs = self.archive.certs();
        let info = if data.windows(11).any(|w| w == b"-----BEGIN ") {
            certs.import_pem(alias, data)?
        } else {
            certs.import_pkcs12(alias, data, password)?
        };
        let detail = format!("certificate {} imported: {} (SHA-1 {})", info.alias, info.subject, info.sha1);
        self.audit(actor, "configuration", &detail).await?;
        Ok(info)
    }

    /// Adds the certificate `alias` (made as an RSA-2048 one for `subject` when it does not exist:
    /// Entra ID takes RSA keys only) to an Entra ID app manifest; the answer is the manifest to
    /// upload.
    pub async fn update_app_manifest(
        &self,
        actor: &Actor,
        alias: &str,
        subject: &Subject,
        manifest: &[u8],
    ) -> Result<(serde_json::Value, Option<CertInfo>), ArchiveError> {
        actor.require_system_admin()?;
        // A manifest that is not one is refused before a certificate is made for it.
        crate::manifest::parse(manifest)?;
        let certs = self.archive.certs();
        let made = if certs.certificate_pem(alias).is_err() {
            Some(self.generate_certificate(actor, alias, subject, KeyKind::Rsa2048).await?)
        } else {
            None
        };
        let der = certs.certificate_der(alias)?;
        let display = certs.list()?.into_iter().find(|c| c.alias == alias).map(|c| c.subject).unwrap_or_default();
        let updated = crate::manifest::add_certificate(manifest, &der, &display)?;
        self.audit(actor, "configuration", &format!("app manifest updated with certificate {alias}")).await?;
        Ok((updated, made))
    }

    // --- login ---

    /// The login settings as saved (JSON), None before the first save.
    pub async fn login_settings(&self) -> Result<Option<String>, ArchiveError> {
        Ok(self.archive.catalog.setting(LOGIN_SETTING).await?)
    }

    pub async fn role_assignments(&self, tenant: &str) -> Result<Vec<RoleAssignment>, ArchiveError> {
        match self.archive.catalog.tenant_by_name(tenant).await? {
            Some(t) => Ok(self.archive.catalog.role_assignments(t.id).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Saves login settings and role assignments; they apply at the next sign-in.
    pub async fn save_login(&self, actor: &Actor, change: &LoginChange<'_>) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        for a in change.assignments {
            if Role::parse(&a.role).is_none() || a.attribute.trim().is_empty() || a.value.trim().is_empty() {
                return Err(ArchiveError::Invalid(format!(
                    "role assignment {} = {} → {}: name an attribute, a value and administrator, auditor or user",
                    a.attribute, a.value, a.role
                )));
            }
        }
        let catalog = &self.archive.catalog;
        let tenant = catalog.tenant_by_name(change.tenant).await?.ok_or_else(|| {
            ArchiveError::Invalid(format!(
                "tenant {:?} does not exist (Configuration → Tenants lists them)",
                change.tenant
            ))
        })?;
        catalog.set_setting(LOGIN_SETTING, &change.settings_json).await?;
        if let Some(s) = change.client_secret {
            self.archive.secrets().set(CLIENT_SECRET, s)?;
        }
        catalog.set_role_assignments(tenant.id, change.assignments).await?;
        let list: Vec<String> =
            change.assignments.iter().map(|a| format!("{}={}→{}", a.attribute, a.value, a.role)).collect();
        let detail = format!(
            "login: {}{}, role assignments [{}]",
            change.summary,
            if change.client_secret.is_some() { ", new secret" } else { "" },
            list.join(", ")
        );
        self.audit(actor, "configuration", &detail).await
    }

    /// Puts a role assignment first in the tenant's list (so it wins over the others), audited.
    pub async fn add_role_assignment(
        &self,
        actor: &Actor,
        tenant: &str,
        assignment: RoleAssignment,
    ) -> Result<(), ArchiveError> {
        actor.require_system_admin()?;
        let a = RoleAssignment {
            attribute: assignment.attribute.trim().to_owned(),
            value: assignment.value.trim().to_owned(),
            role: assignment.role.trim().to_ascii_lowercase(),
        };
        let bad = |s: &str| s.is_empty() || s.len() > 500 || s.chars().any(|c| c.is_control() || c.is_whitespace());
        if Role::parse(&a.role).is_none() || bad(&a.attribute) || bad(&a.value) {
            return Err(ArchiveError::Invalid(format!(
                "role assignment {} = {} → {}: name an attribute and a value (no spaces) and administrator, auditor or user",
                a.attribute, a.value, a.role
            )));
        }
        let catalog = &self.archive.catalog;
        let tenant = catalog.tenant_by_name(tenant).await?.ok_or_else(|| {
            ArchiveError::Invalid(format!("tenant {tenant:?} does not exist (Configuration → Tenants lists them)"))
        })?;
        let mut list = catalog.role_assignments(tenant.id).await?;
        list.retain(|b| !(b.attribute == a.attribute && b.value == a.value));
        let detail = format!("login: role assignment {}={}→{} added first", a.attribute, a.value, a.role);
        list.insert(0, a);
        catalog.set_role_assignments(tenant.id, &list).await?;
        self.audit(actor, "configuration", &detail).await
    }

    /// Looks a person up in an Entra ID directory through its Microsoft 365 connection, for a
    /// role assignment: their groups and directory roles. Audited.
    pub async fn directory_lookup(
        &self,
        actor: &Actor,
        sources: &dyn SourceControl,
        directory: &str,
        user: &str,
    ) -> Result<crate::sources::DirectoryEntry, ArchiveError> {
        actor.require_system_admin()?;
        let user = user.trim();
        if user.is_empty() || user.len() > 320 || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ArchiveError::Invalid("look up a person by their sign-in name or address".into()));
        }
        let Some(pending) = sources.directory_lookup(directory, user) else {
            return Err(ArchiveError::Invalid(format!(
                "Lookup asks Microsoft Graph through the Microsoft 365 connection of directory {directory:?}; add one under Configuration → Connections, or read a signed-in user's claims under Users"
            )));
        };
        self.audit(actor, "directory lookup", user).await?;
        match pending.await {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(ArchiveError::Invalid(format!("the directory has no user {user:?}"))),
            Err(why) => Err(ArchiveError::Invalid(format!("the directory could not be asked: {why}"))),
        }
    }

    // --- status and the audit log ---

    /// Traffic since `since`, listener figures of the last 24 hours, index lag, volumes and
    /// journal addresses: the actor's own tenant (auditors), every tenant (system administrators).
    pub async fn status(&self, actor: &Actor, since: i64) -> Result<Status, ArchiveError> {
        actor.require(Role::Auditor)?;
        let only = (!actor.is_system_admin()).then_some(actor.tenant.id);
        self.status_of(only, since, now_secs() - 24 * 3600).await
    }

    /// Every tenant's figures since the start: for `/metrics`, whose scraper the web front end
    /// admitted by its token (or a system administrator's sign-in).
    pub async fn status_for_scraper(&self) -> Result<Status, ArchiveError> {
        self.status_of(None, 0, 0).await
    }

    async fn status_of(&self, only: Option<i64>, since: i64, figures_since: i64) -> Result<Status, ArchiveError> {
        let catalog = &self.archive.catalog;
        let own = |t: i64| only.is_none_or(|id| id == t);
        Ok(Status {
            tenants: self.tenants_of(only).await?,
            traffic: catalog.traffic(since).await?.into_iter().filter(|r| own(r.tenant_id)).collect(),
            deletions: catalog.deletions_per_hour(since).await?.into_iter().filter(|d| own(d.1)).collect(),
            listener_figures: catalog
                .listener_figures(figures_since)
                .await?
                .into_iter()
                .filter(|f| own(f.tenant_id))
                .collect(),
            index_lag: match only {
                None => catalog.index_queue_len().await?,
                Some(t) => catalog.index_queue_len_of(t).await?,
            },
            index_lag_seconds: catalog.oldest_queued_at(only).await?.map(|t| now_secs() - t).unwrap_or(0),
            volumes: self.archive.volumes().await?.into_iter().filter(|v| own(v.owner as i64)).collect(),
        })
    }

    /// Audit entries, newest first, whose actor, address, action or detail contains `q`: the
    /// actor's tenant (auditors), all (system administrators).
    pub async fn audit_log(&self, actor: &Actor, q: &str, limit: i64) -> Result<Vec<AuditEntry>, ArchiveError> {
        actor.require(Role::Auditor)?;
        let tenant = (!actor.is_system_admin()).then_some(actor.tenant.id);
        Ok(self.archive.catalog.audit_entries_matching(tenant, q.trim(), limit.clamp(1, 10_000)).await?)
    }

    /// Walks the audit log's hash chain: the entries that are not as written.
    pub async fn verify_audit(&self, actor: &Actor) -> Result<Vec<coffer_catalog::AuditProblem>, ArchiveError> {
        actor.require(Role::Auditor)?;
        Ok(self.archive.catalog.verify_audit().await?)
    }

    // --- source connections ---

    /// Tests a connection (sign in, look at the mailbox) and says what it found or what to fix.
    pub async fn test_connection(
        &self,
        actor: &Actor,
        sources: &dyn SourceControl,
        name: &str,
    ) -> Result<TestOutcome, ArchiveError> {
        actor.require_system_admin()?;
        sources.connection(name).ok_or(ArchiveError::NotFound)?;
        let outcome = match tokio::time::timeout(std::time::Duration::from_secs(60), sources.test(name)).await {
            Ok(Ok(detail)) => TestOutcome { ok: true, detail },
            Ok(Err(detail)) => TestOutcome { ok: false, detail },
            Err(_) => {
                TestOutcome { ok: false, detail: "no answer within 60 seconds: check host, port and firewall".into() }
            }
        };
        let detail = format!("{name}: {}", if outcome.ok { "ok" } else { "failed" });
        self.audit(actor, "connection test", &detail).await?;
        Ok(outcome)
    }

    /// Starts a run of a source now (a poll, or a Microsoft 365 import that continues where the
    /// last one stopped), and lets it run on its schedule again after a stop.
    pub async fn start_source(
        &self,
        actor: &Actor,
        sources: &dyn SourceControl,
        name: &str,
    ) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        sources.connection(name).ok_or(ArchiveError::NotFound)?;
        let detail = sources.start(name)?;
        self.audit(actor, "import", &format!("{name}: {detail}")).await?;
        Ok(detail)
    }

    /// Stops a source: its run in progress is cut where it is (what it archived is kept), and no
    /// run starts until it is started again.
    pub async fn stop_source(
        &self,
        actor: &Actor,
        sources: &dyn SourceControl,
        name: &str,
    ) -> Result<String, ArchiveError> {
        actor.require_system_admin()?;
        sources.connection(name).ok_or(ArchiveError::NotFound)?;
        let detail = sources.stop(name)?;
        self.audit(actor, "import", &format!("{name}: {detail}")).await?;
        Ok(detail)
    }
}

fn display_name(name: &str) -> Result<String, ArchiveError> {
    let name = name.trim();
    if name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
        return Err(ArchiveError::Invalid(format!(
            "a display name has at most {MAX_DISPLAY_NAME} characters, on one line"
        )));
    }
    Ok(name.to_owned())
}

fn check_password(p: &str) -> Result<(), ArchiveError> {
    if p.chars().count() < MIN_PASSWORD || p.len() > 1024 {
        return Err(ArchiveError::Invalid(format!(
            "the password needs at least {MIN_PASSWORD} characters (and at most 1024)"
        )));
    }
    Ok(())
}

/// Mail addresses, lowercased; an entry may hold several separated by commas, spaces or semicolons.
fn addresses(list: &[String]) -> Result<Vec<String>, ArchiveError> {
    let mut out: Vec<String> = list
        .iter()
        .flat_map(|a| a.split([',', ' ', '\n', ';']))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_lowercase)
        .collect();
    if out.len() > 1000 {
        return Err(ArchiveError::Invalid("at most 1000 addresses per account".into()));
    }
    if let Some(bad) = out.iter().find(|a| {
        let Some((local, domain)) = a.rsplit_once('@') else { return true };
        local.is_empty() || a.len() > 320 || check_domain(domain).is_err()
    }) {
        return Err(ArchiveError::Invalid(format!("{bad:?} is not a mail address")));
    }
    out.dedup();
    Ok(out)
}

/// Domains as typed (separated by commas, spaces or lines; a leading `@` dropped), checked.
fn parse_domains(domains: &[String]) -> Result<Vec<String>, ArchiveError> {
    let mut domains = domains
        .iter()
        .flat_map(|d| d.split([',', ' ', '\n']))
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .map(|d| check_domain(&d).map(|_| d))
        .collect::<Result<Vec<_>, _>>()?;
    domains.sort();
    domains.dedup();
    if domains.len() > MAX_DOMAINS {
        return Err(ArchiveError::Invalid(format!("at most {MAX_DOMAINS} domains per tenant")));
    }
    Ok(domains)
}

fn check_domain(d: &str) -> Result<(), ArchiveError> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if ok { Ok(()) } else { Err(ArchiveError::Invalid(format!("{d:?} is not a mail domain"))) }
}

/// Logins are unique across the archive, so "exists already" would tell the administrator of one
/// tenant which logins another tenant has. In a tenant other than the default one, a login is
/// therefore an address of the tenant's own namespace: `name@<tenant name>` or `name@<one of its
/// domains>`; only names there can collide.
fn tenant_login(tenant: &Tenant, login: &str) -> Result<(), ArchiveError> {
    if tenant.name == coffer_catalog::DEFAULT_TENANT {
        return Ok(());
    }
    let own = login.rsplit_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && (domain.eq_ignore_ascii_case(&tenant.name)
                || tenant.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    });
    if own {
        return Ok(());
    }
    Err(ArchiveError::Invalid(format!(
        "in tenant {}, a login is name@{} or name@ one of the tenant's domains ({})",
        tenant.name,
        tenant.name,
        tenant.domains.join(", ")
    )))
}

/// A network as `203.0.113.0/24`, `2001:db8::/32` or a single address; answered in canonical form.
fn parse_network(text: &str) -> Result<String, ArchiveError> {
    let text = text.trim();
    if text.len() > 64 {
        return Err(ArchiveError::Invalid("a network is an address or address/prefix, e.g. 203.0.113.0/24".into()));
    }
    let net: ipnet::IpNet =
        text.parse().or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
            ArchiveError::Invalid(format!(
                "{text:?} is not a network: write an address or address/prefix, e.g. 203.0.113.0/24 or 2001:db8::/32"
            ))
        })?;
    Ok(net.trunc().to_string())
}

/// The officially assigned ISO 3166-1 alpha-2 country codes.
const ISO_3166_ALPHA_2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO \
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES \
    ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ \
    IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM \
    MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW \
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO \
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn check_subject(s: &Subject) -> Result<Subject, ArchiveError> {
    if s.common_name.trim().is_empty() {
        return Err(ArchiveError::Invalid("the common name is missing".into()));
    }
    let opt = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let country = opt(&s.country).map(|c| c.to_uppercase());
    if let Some(c) = &country
        && !(c.len() == 2 && ISO_3166_ALPHA_2.split(' ').any(|code| code == c))
    {
        return Err(ArchiveError::Invalid(format!(
            "country {c:?}: give its ISO 3166 two-letter code, e.g. CH for Switzerland, DE for Germany, GB for the \
             United Kingdom, US for the United States"
        )));
    }
    Ok(Subject {
        common_name: s.common_name.trim().into(),
        organization: opt(&s.organization),
        unit: opt(&s.unit),
        city: opt(&s.city),
        state: opt(&s.state),
        country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_country_is_an_iso_3166_code() {
        let subject = |c: &str| Subject { common_name: "x".into(), country: Some(c.into()), ..Default::default() };
        assert_eq!(check_subject(&subject(" ch ")).unwrap().country.as_deref(), Some("CH"));
        assert_eq!(ISO_3166_ALPHA_2.split(' ').count(), 249);
        for bad in ["SW", "Switzerland", "XX", "C"] {
            let e = check_subject(&subject(bad)).unwrap_err().to_string();
            assert!(e.contains("CH for Switzerland"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_network_is_parsed_once_and_answered_in_canonical_form() {
        assert_eq!(parse_network("203.0.113.7/24").unwrap(), "203.0.113.0/24");
        assert_eq!(parse_network(" 2001:db8::1 ").unwrap(), "2001:db8::1/128");
        assert!(parse_network("203.0.113.0/33").is_err());
        assert!(parse_network("example.com").is_err());
    }

    #[test]
    fn addresses_are_split_lowercased_and_checked() {
        assert_eq!(addresses(&["A@Contoso.com, b@contoso.com".into()]).unwrap(), ["a@contoso.com", "b@contoso.com"]);
        assert!(addresses(&["not-an-address".into()]).is_err());
        assert!(addresses(&["a@bad domain".into()]).is_err());
        assert!(addresses(&["@contoso.com".into()]).is_err());
    }
}

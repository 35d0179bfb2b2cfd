//! Login settings, changed in the console (Configuration → Login) and kept in the catalog, so a
//! change applies at the next sign-in without a restart. The client secret is sealed in the
//! secret store, never kept here.

use serde::{Deserialize, Serialize};

use crate::WebError;

pub use coffer_archive::admin::CLIENT_SECRET;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LoginSettings {
    /// When true, the console sends visitors to single sign-on; `/signon` keeps the local form.
    pub sso_default: bool,
    pub oidc: OidcSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct OidcSettings {
    pub enabled: bool,
    /// `generic` (any OpenID provider, by issuer) or `entra` (Microsoft Entra ID, by tenant id).
    pub provider: String,
    /// The issuer of a generic provider (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Entra ID: the directory (tenant) id; the issuer is `<login_host>/<tenant id>/v2.0` and
    /// every token's `tid` must equal it.
    pub entra_tenant_id: String,
    /// Entra ID: the login host (national clouds have their own).
    pub login_host: String,
    pub client_id: String,
    /// `secret` (client_secret_basic) or `certificate` (private_key_jwt, signed with a
    /// certificate-store key).
    pub client_auth: String,
    pub certificate_alias: String,
    /// Where the provider sends the browser back (e.g. `/authorize.do`).
    pub callback_path: String,
    pub scopes: String,
    /// The Coffer tenant single sign-on users belong to.
    pub tenant: String,
    /// Where a signed-in user's mail addresses (what they may read, and the `domain` of role
    /// assignments) come from. `verified_email`: the `email` claim, only when the provider vouches
    /// for it (`email_verified` true; Entra ID's `xms_edov` true). `configured`: only the addresses
    /// an administrator set on the account. `directory` (Entra ID): the addresses the directory
    /// lists for the user's `oid` (`mail` and `proxyAddresses`), looked up through the Microsoft
    /// 365 connection of that directory. Names a user can choose (`preferred_username`, `upn`, an
    /// unverified `email`) never give access to mail.
    pub addresses_from: String,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            enabled: false,
            provider: "generic".into(),
            issuer: String::new(),
            entra_tenant_id: String::new(),
            login_host: "https://login.microsoftonline.com".into(),
            client_id: String::new(),
            client_auth: "secret".into(),
            certificate_alias: String::new(),
            callback_path: "/oidc/callback".into(),
            scopes: "openid email profile".into(),
            tenant: coffer_archive::catalog::DEFAULT_TENANT.into(),
            addresses_from: VERIFIED_EMAIL.into(),
        }
    }
}

pub const VERIFIED_EMAIL: &str = "verified_email";
pub const CONFIGURED: &str = "configured";
pub const DIRECTORY: &str = "directory";

impl OidcSettings {
    pub fn is_entra(&self) -> bool {
        self.provider == "entra"
    }

    pub fn issuer(&self) -> String {
        if self.is_entra() {
            format!("{}/{}/v2.0", self.login_host.trim_end_matches('/'), self.entra_tenant_id)
        } else {
            self.issuer.trim_end_matches('/').to_owned()
        }
    }

    /// Problems an administrator must fix before single sign-on can work, each saying how.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        match self.provider.as_str() {
            "entra" => {
                if !is_guid(&self.entra_tenant_id) {
                    out.push("Entra ID needs the directory (tenant) id, a GUID from the app's Overview page".into());
                }
                // Plain HTTP only to this machine (a local test double of Entra ID).
                let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| {
                    self.login_host.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
                });
                if !self.login_host.starts_with("https://") && !loopback {
                    out.push("the login host must start with https://".into());
                }
            }
            "generic" => {
                if url::Url::parse(&self.issuer).is_err() {
                    out.push("the issuer must be a URL, e.g. https://idp.example.com/realms/main".into());
                }
            }
            other => out.push(format!("provider {other:?} is neither generic nor entra")),
        }
        if self.client_id.trim().is_empty() {
            out.push("the client id is missing (the application id of the app registration)".into());
        }
        match self.client_auth.as_str() {
            "secret" => {}
            "certificate" if !self.certificate_alias.trim().is_empty() => {}
            "certificate" => out.push("client authentication by certificate needs a certificate alias".into()),
            other => out.push(format!("client authentication {other:?} is neither secret nor certificate")),
        }
        if !self.callback_path.starts_with('/') || self.callback_path.starts_with("/api/") {
            out.push("the callback path must start with / (e.g. /authorize.do) and not with /api/".into());
        }
        match self.addresses_from.as_str() {
            VERIFIED_EMAIL | CONFIGURED => {}
            DIRECTORY if self.is_entra() => {}
            DIRECTORY => out.push("addresses from the directory need the Entra ID provider".into()),
            other => out.push(format!(
                "addresses come from {other:?}: choose verified_email (the provider's verified email claim), configured (set per user by an administrator) or, for Entra ID, directory"
            )),
        }
        if !self.scopes.split_whitespace().any(|s| s == "openid") {
            out.push("the scopes must include openid".into());
        }
        out
    }
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl LoginSettings {
    pub async fn load(archive: &coffer_archive::Archive) -> Result<LoginSettings, WebError> {
        match archive.admin().login_settings().await? {
            Some(json) => serde_json::from_str(&json).map_err(|e| WebError::Internal(format!("login settings: {e}"))),
            None => Ok(LoginSettings::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_settings_make_the_v2_issuer_and_name_each_missing_piece() {
        let mut s = OidcSettings { enabled: true, provider: "entra".into(), ..Default::default() };
        let problems = s.problems();
        assert!(problems.iter().any(|p| p.contains("tenant) id")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("client id")), "{problems:?}");
        s.entra_tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47".into();
        s.client_id = "app".into();
        assert!(s.problems().is_empty());
        assert_eq!(s.issuer(), "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0");
    }
}

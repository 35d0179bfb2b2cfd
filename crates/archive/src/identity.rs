//! Who an account is: local passwords (argon2) with lockout, sessions (the catalog keeps only a
//! token's hash), API keys, and the accounts single sign-on provisions. The web front end asks
//! here; what an identity provider vouches for is decided there, what it gives access to here.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use coffer_catalog::{NewUser, RoleAssignment, SessionRow, UserRow};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::admin::Role;
use crate::service::{Actor, Archive, blocking, now_secs};
use crate::{ArchiveError, Tenant};

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing cannot fail").to_string()
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("coffer-dummy-password"))
}

/// The setting that holds the set-up token's hash and expiry.
const SETUP_TOKEN: &str = "setup_token";
const SETUP_TOKEN_SECONDS: i64 = 24 * 3600;

fn setup_token_matches(value: &str, token: &str) -> bool {
    let Some((hash, expires)) = value.split_once(':') else { return false };
    let fresh = expires.parse::<i64>().is_ok_and(|e| e > now_secs());
    // Hashes of the same length, compared whole: no early exit tells how much of a guess was right.
    let given = token_hash(token);
    let same = hash.len() == given.len() && hash.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    fresh && same
}

/// The setting's value for a token given back after a failed attempt (a fresh day).
fn taken_back(token: &str) -> String {
    format!("{}:{}", token_hash(token), now_secs() + SETUP_TOKEN_SECONDS)
}

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API key: what to give the user once, and the hash to keep.
pub fn new_api_key() -> (String, String) {
    let key = format!("ck_{}", random_token(24));
    let hash = token_hash(&key);
    (key, hash)
}

/// An account that may act now, with its role (an API key's role caps the owner's).
#[derive(Debug, Clone)]
pub struct Account {
    pub user: UserRow,
    pub role: Role,
    pub tenant: Tenant,
}

impl Account {
    pub fn actor(&self, ip: &str) -> Actor {
        Actor::account(&self.user, self.role, self.tenant.clone(), ip)
    }
}

/// How many failed sign-ins in a row lock an account, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub after: i64,
    pub minutes: i64,
}

pub enum SignIn {
    Ok(Box<Account>),
    /// Wrong login or password (the same answer for both).
    Refused,
    Locked,
}

/// A session that is still valid: its account and CSRF token.
pub struct Session {
    pub account: Account,
    pub csrf: String,
}

/// The sign-in store of an archive; `archive.identity()`.
pub struct Identity<'a> {
    archive: &'a Archive,
}

impl Archive {
    pub fn identity(&self) -> Identity<'_> {
        Identity { archive: self }
    }
}

impl Identity<'_> {
    /// The account `user_id` if it may act: not disabled, with a known role (capped by `cap`).
    pub async fn account(&self, user_id: i64, cap: Option<Role>) -> Result<Option<Account>, ArchiveError> {
        let catalog = &self.archive.catalog;
        let Some(user) = catalog.user(user_id).await? else { return Ok(None) };
        if user.disabled {
            return Ok(None);
        }
        let Some(mut role) = Role::parse(&user.role) else { return Ok(None) };
        if let Some(cap) = cap {
            role = role.min(cap);
        }
        let Some(tenant) = catalog.tenant(user.tenant_id).await? else { return Ok(None) };
        Ok(Some(Account { user, role, tenant }))
    }

    /// Checks a local account's password, and audits the outcome. Each attempt counts towards the
    /// lockout before the password is checked (parallel guesses cannot outrun it); a success
    /// clears the count. Every refusal — unknown login, wrong password, locked or disabled
    /// account — costs the same argon2 check and pause, so neither the answer nor its timing
    /// tells which it was; the audit log tells administrators.
    pub async fn sign_in_locally(
        &self,
        login: &str,
        password: &str,
        lockout: Lockout,
        ip: &str,
    ) -> Result<SignIn, ArchiveError> {
        let catalog = &self.archive.catalog;
        let user = catalog.user_by_login(login).await?;
        let now = now_secs();
        let lock_until = now + lockout.minutes * 60;
        let admitted = match &user {
            Some(u) if u.password_hash.is_some() => {
                catalog.begin_sign_in_attempt(u.id, lockout.after, lock_until, now).await?
            }
            _ => false,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone()).filter(|_| admitted);
        let password = password.to_owned();
        let matches = blocking(move || match hash {
            Some(h) => password_matches(&h, &password),
            None => {
                let _ = password_matches(dummy_hash(), &password);
                false
            }
        })
        .await?;
        if let Some(user) = &user
            && admitted
            && matches
            && !user.disabled
            && let Some(account) = self.account(user.id, None).await?
        {
            catalog.record_sign_in(user.id, None).await?;
            self.archive.audit(&account.actor(ip), "sign-in", "local account").await?;
            return Ok(SignIn::Ok(Box::new(account)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let locked = user.as_ref().is_some_and(|u| !admitted && u.password_hash.is_some());
        let why = if locked { "account locked after repeated failures" } else { "wrong login or password" };
        catalog.audit(None, login, ip, "sign-in failed", why).await?;
        Ok(if locked { SignIn::Locked } else { SignIn::Refused })
    }

    /// A failed single sign-on, for the audit log.
    pub async fn sign_in_failed(&self, who: &str, ip: &str, detail: &str) -> Result<(), ArchiveError> {
        self.archive.catalog.audit(None, who, ip, "sign-in failed", detail).await?;
        Ok(())
    }

    /// Starts a session for `account`: the token for its cookie.
    pub async fn start_session(&self, account: &Account, ip: &str) -> Result<String, ArchiveError> {
        let token = random_token(32);
        self.archive.catalog.create_session(&token_hash(&token), account.user.id, &random_token(16), ip).await?;
        Ok(token)
    }

    /// The session a cookie's token names, if it has been idle less than `idle` and is younger
    /// than `max` (expired ones are ended).
    pub async fn session(&self, token: &str, idle: Duration, max: Duration) -> Result<Option<Session>, ArchiveError> {
        let catalog = &self.archive.catalog;
        let hash = token_hash(token);
        let Some(SessionRow { user_id, csrf, created_at, last_seen }) = catalog.session(&hash).await? else {
            return Ok(None);
        };
        let now = now_secs();
        if last_seen + (idle.as_secs() as i64) < now || created_at + (max.as_secs() as i64) < now {
            catalog.end_session(&hash).await?;
            return Ok(None);
        }
        // Noting activity once a minute is enough for an idle timeout in minutes.
        if last_seen + 60 <= now {
            catalog.touch_session(&hash).await?;
        }
        Ok(self.account(user_id, None).await?.map(|account| Session { account, csrf }))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), ArchiveError> {
        Ok(self.archive.catalog.end_session(&token_hash(token)).await?)
    }

    /// Forgets sessions idle longer than `idle` or older than `max` (they are refused on use anyway).
    pub async fn end_stale_sessions(&self, idle: Duration, max: Duration) -> Result<u64, ArchiveError> {
        let now = now_secs();
        Ok(self.archive.catalog.end_stale_sessions(now - idle.as_secs() as i64, now - max.as_secs() as i64).await?)
    }

    /// The account an API key belongs to, with the key's role as a cap.
    pub async fn api_key(&self, key: &str) -> Result<Option<Account>, ArchiveError> {
        let Some(k) = self.archive.catalog.use_api_key(&token_hash(key)).await? else { return Ok(None) };
        let Some(cap) = Role::parse(&k.role) else { return Ok(None) };
        self.account(k.user_id, Some(cap)).await
    }

    pub async fn count_users(&self) -> Result<i64, ArchiveError> {
        Ok(self.archive.catalog.count_users().await?)
    }

    // --- the first administrator ---

    /// While no account exists: a new one-time set-up token (valid for a day; only its hash is
    /// kept, and a new one replaces the last). None once an account exists.
    pub async fn new_setup_token(&self) -> Result<Option<String>, ArchiveError> {
        if self.count_users().await? > 0 {
            return Ok(None);
        }
        let token = random_token(24);
        let value = format!("{}:{}", token_hash(&token), now_secs() + SETUP_TOKEN_SECONDS);
        self.archive.catalog.set_setting(SETUP_TOKEN, &value).await?;
        Ok(Some(token))
    }

    /// True when `token` is the current set-up token and no account exists yet.
    pub async fn setup_token_is_valid(&self, token: &str) -> Result<bool, ArchiveError> {
        if self.count_users().await? > 0 {
            return Ok(false);
        }
        let Some(value) = self.archive.catalog.setting(SETUP_TOKEN).await? else { return Ok(false) };
        Ok(setup_token_matches(&value, token))
    }

    /// Creates the first administrator of the default tenant with the set-up token, which is
    /// used up: of two requests at once, one wins. Audited as done through the set-up link.
    pub async fn create_first_administrator(
        &self,
        token: &str,
        new: &crate::admin::NewAccount,
        ip: &str,
    ) -> Result<Account, ArchiveError> {
        let invalid = || {
            ArchiveError::Forbidden(
                "this set-up link is used or expired: restart `coffer serve` for a new one, or add an account with \
             `coffer user add`"
                    .into(),
            )
        };
        if !self.setup_token_is_valid(token).await? {
            return Err(invalid());
        }
        // Checked before it is taken (a wrong guess must not use the link up), then taken.
        let taken = self.archive.catalog.take_setting(SETUP_TOKEN).await?;
        if !taken.is_some_and(|v| setup_token_matches(&v, token)) || self.count_users().await? > 0 {
            return Err(invalid());
        }
        let tenant = self.archive.catalog.default_tenant().await?;
        let mut actor = Actor::operator(tenant.clone());
        actor.name = "set-up link".into();
        actor.local = false;
        actor.ip = ip.to_owned();
        let new = crate::admin::NewAccount { role: "administrator".into(), ..new.clone() };
        let user = match self.archive.admin().add_user(&actor, &tenant, &new).await {
            Ok(user) => user,
            Err(e) => {
                // A typing mistake must not use the link up.
                let value = taken_back(token);
                self.archive.catalog.set_setting(SETUP_TOKEN, &value).await?;
                return Err(e);
            }
        };
        self.account(user.id, None).await?.ok_or(ArchiveError::NotFound)
    }

    // --- single sign-on ---

    /// The tenant single sign-on users belong to, and its role assignments in priority order.
    pub async fn sso_tenant(&self, name: &str) -> Result<Option<(Tenant, Vec<RoleAssignment>)>, ArchiveError> {
        let catalog = &self.archive.catalog;
        let Some(tenant) = catalog.tenant_by_name(name).await? else { return Ok(None) };
        let assignments = catalog.role_assignments(tenant.id).await?;
        Ok(Some((tenant, assignments)))
    }

    pub async fn put_login_request(&self, state: &str, nonce: &str, verifier: &str) -> Result<(), ArchiveError> {
        Ok(self.archive.catalog.put_login_request(state, nonce, verifier).await?)
    }

    /// The nonce and PKCE verifier of a sign-on in flight (once; None when unknown or older than `max_age`).
    pub async fn take_login_request(
        &self,
        state: &str,
        max_age: i64,
    ) -> Result<Option<(String, String)>, ArchiveError> {
        Ok(self.archive.catalog.take_login_request(state, max_age).await?)
    }

    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<UserRow>, ArchiveError> {
        Ok(self.archive.catalog.user_by_external_id(external_id).await?)
    }

    /// The account of an identity a provider vouched for: made on its first sign-in, its name,
    /// role and (when given) addresses refreshed at each one. A local account with the same
    /// login is never taken over. Records the sign-in with its claims and audits it.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_in_externally(
        &self,
        tenant: &Tenant,
        external_id: &str,
        wanted_login: &str,
        display_name: &str,
        role: Role,
        addresses: Option<Vec<String>>,
        claims_json: &str,
        ip: &str,
        why: &str,
    ) -> Result<Account, ArchiveError> {
        let catalog = &self.archive.catalog;
        // A provider's `name` claim is shown in the console: one line, of a sensible length.
        let display: String = display_name.chars().filter(|c| !c.is_control()).take(200).collect();
        let display_name = display.as_str();
        let user = match catalog.user_by_external_id(external_id).await? {
            Some(user) if user.disabled => return Err(ArchiveError::Forbidden("this account is disabled".into())),
            Some(user) => {
                let addresses = addresses.unwrap_or_else(|| user.addresses.clone());
                catalog.refresh_external_user(user.id, display_name, role.as_str(), &addresses).await?;
                user
            }
            None => {
                let login = if catalog.user_by_login(wanted_login).await?.is_some() {
                    format!("{wanted_login}#{}", &token_hash(external_id)[..6])
                } else {
                    wanted_login.to_owned()
                };
                catalog
                    .add_user(&NewUser {
                        tenant_id: tenant.id,
                        login,
                        display_name: display_name.to_owned(),
                        role: role.as_str().into(),
                        addresses: addresses.unwrap_or_default(),
                        password_hash: None,
                        external_id: Some(external_id.to_owned()),
                    })
                    .await?
            }
        };
        catalog.record_sign_in(user.id, Some(claims_json)).await?;
        let account = self.account(user.id, None).await?.ok_or(ArchiveError::NotFound)?;
        self.archive
            .audit(&account.actor(ip), "sign-in", &format!("single sign-on as {} ({why})", role.as_str()))
            .await?;
        Ok(account)
    }
}

//! Accounts of the console and the API: users, their sessions and API keys, the role assignments
//! single sign-on uses, sign-ons in flight, and settings changed in the console. The catalog stores
//! hashes it is given; hashing and checking passwords and tokens is the web front end's business.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub id: i64,
    pub tenant_id: i64,
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub addresses: Vec<String>,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub external_id: Option<String>,
    /// JSON of the claims presented at the last single sign-on.
    pub last_claims: Option<String>,
    pub last_login_at: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub tenant_id: i64,
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub addresses: Vec<String>,
    pub password_hash: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleAssignment {
    pub attribute: String,
    pub value: String,
    pub role: String,
}

const USER_COLUMNS: &str = "id, tenant_id, login, display_name, role, addresses, password_hash, external_id, \
     last_claims, last_login_at, failed_logins, locked_until, disabled, created_at";

fn user_row(r: &AnyRow) -> Result<UserRow> {
    let addresses: String = r.try_get("addresses")?;
    Ok(UserRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        login: r.try_get("login")?,
        display_name: r.try_get("display_name")?,
        role: r.try_get("role")?,
        addresses: addresses.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        password_hash: r.try_get("password_hash")?,
        external_id: r.try_get("external_id")?,
        last_claims: r.try_get("last_claims")?,
        last_login_at: r.try_get("last_login_at")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

fn joined(addresses: &[String]) -> String {
    addresses.iter().map(|a| a.trim().to_ascii_lowercase()).filter(|a| !a.is_empty()).collect::<Vec<_>>().join("\n")
}

impl Catalog {
    pub async fn add_user(&self, user: &NewUser) -> Result<UserRow> {
        let login = user.login.trim();
        if login.is_empty() || login.len() > 200 || login.chars().any(char::is_whitespace) {
            return Err(CatalogError::Invalid("a login must have 1 to 200 characters and no spaces".into()));
        }
        if self.user_by_login(login).await?.is_some() {
            return Err(CatalogError::Invalid(format!("user {login:?} exists already")));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO users (tenant_id, login, display_name, role, addresses, password_hash, external_id, \
             failed_logins, locked_until, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8) \
             RETURNING id",
        )
        .bind(user.tenant_id)
        .bind(login)
        .bind(&user.display_name)
        .bind(&user.role)
        .bind(joined(&user.addresses))
        .bind(&user.password_hash)
        .bind(&user.external_id)
        .bind(crate::now())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        self.user(id).await?.ok_or_else(|| CatalogError::Invalid("the new user vanished".into()))
    }

    pub async fn user(&self, id: i64) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(user_row).transpose()
    }

    /// Logins compare case-insensitively.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(login) = lower($1)");
        sqlx::query(&sql).bind(login.trim()).fetch_optional(&self.pool).await?.as_ref().map(user_row).transpose()
    }

    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE external_id = $1");
        sqlx::query(&sql).bind(external_id).fetch_optional(&self.pool).await?.as_ref().map(user_row).transpose()
    }

    pub async fn users(&self, tenant_id: Option<i64>) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY login");
        sqlx::query(&sql).bind(tenant_id).fetch_all(&self.pool).await?.iter().map(user_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Changes what an administrator may change about an account.
    pub async fn update_user(
        &self,
        id: i64,
        display_name: &str,
        role: &str,
        addresses: &[String],
        disabled: bool,
    ) -> Result<()> {
        sqlx::query("UPDATE users SET display_name = $1, role = $2, addresses = $3, disabled = $4 WHERE id = $5")
            .bind(display_name)
            .bind(role)
            .bind(joined(addresses))
            .bind(disabled as i64)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = 0 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A successful sign-in: clears the failure count, keeps the claims presented (single sign-on).
    pub async fn record_sign_in(&self, id: i64, claims: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = 0, last_login_at = $1, \
             last_claims = COALESCE($2, last_claims) WHERE id = $3",
        )
        .bind(crate::now())
        .bind(claims)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a sign-in attempt before its password is checked, so that attempts made at once
    /// cannot outrun the lockout: after `lock_after` attempts in a row without a success the
    /// account is locked until `lock_until`. False when it is locked at `now` (the attempt is
    /// not even checked). A success then clears the count ([`Catalog::record_sign_in`]).
    pub async fn begin_sign_in_attempt(&self, id: i64, lock_after: i64, lock_until: i64, now: i64) -> Result<bool> {
        let row = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1, \
             locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END \
             WHERE id = $3 AND locked_until <= $4 RETURNING failed_logins",
        )
        .bind(lock_after)
        .bind(lock_until)
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Single sign-on keeps role and addresses current with what the identity provider says.
    pub async fn refresh_external_user(
        &self,
        id: i64,
        display_name: &str,
        role: &str,
        addresses: &[String],
    ) -> Result<()> {
        sqlx::query("UPDATE users SET display_name = $1, role = $2, addresses = $3 WHERE id = $4")
            .bind(display_name)
            .bind(role)
            .bind(joined(addresses))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Catalog {
    pub async fn create_session(&self, token_hash: &str, user_id: i64, csrf: &str, ip: &str) -> Result<()> {
        let now = crate::now();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, ip, created_at, last_seen) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(ip)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query("SELECT user_id, csrf, created_at, last_seen FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionRow {
                user_id: r.try_get(0)?,
                csrf: r.try_get(1)?,
                created_at: r.try_get(2)?,
                last_seen: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub async fn touch_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE token_hash = $2")
            .bind(crate::now())
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets sessions idle since before `idle_before` or started before `started_before`.
    pub async fn end_stale_sessions(&self, idle_before: i64, started_before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(started_before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Test hook: makes a session look idle since `at`.
    #[doc(hidden)]
    pub async fn backdate_session(&self, token_hash: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE token_hash = $2")
            .bind(at)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Catalog {
    pub async fn add_api_key(&self, user_id: i64, name: &str, key_hash: &str, role: &str) -> Result<i64> {
        Ok(sqlx::query(
            "INSERT INTO api_keys (user_id, name, key_hash, role, created_at, revoked) VALUES ($1, $2, $3, $4, $5, 0) \
             RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(key_hash)
        .bind(role)
        .bind(crate::now())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    /// The key with this hash, unless revoked; notes its use.
    pub async fn use_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE key_hash = $2 AND revoked = 0 \
             RETURNING id, user_id, name, role, created_at, last_used_at, revoked",
        )
        .bind(crate::now())
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_row).transpose()
    }

    pub async fn api_keys(&self, user_id: Option<i64>) -> Result<Vec<ApiKeyRow>> {
        sqlx::query(
            "SELECT id, user_id, name, role, created_at, last_used_at, revoked FROM api_keys \
             WHERE ($1 IS NULL OR user_id = $1) ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(api_key_row)
        .collect()
    }

    pub async fn revoke_api_key(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query("UPDATE api_keys SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }
}

fn api_key_row(r: &AnyRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        role: r.try_get(3)?,
        created_at: r.try_get(4)?,
        last_used_at: r.try_get(5)?,
        revoked: r.try_get::<i64, _>(6)? != 0,
    })
}

impl Catalog {
    /// The tenant's role assignments in priority order (first match wins).
    pub async fn role_assignments(&self, tenant_id: i64) -> Result<Vec<RoleAssignment>> {
        sqlx::query("SELECT attribute, value, role FROM role_assignments WHERE tenant_id = $1 ORDER BY priority, id")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(RoleAssignment { attribute: r.try_get(0)?, value: r.try_get(1)?, role: r.try_get(2)? }))
            .collect()
    }

    /// Replaces the tenant's role assignments with `list`, in its order.
    pub async fn set_role_assignments(&self, tenant_id: i64, list: &[RoleAssignment]) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM role_assignments WHERE tenant_id = $1").bind(tenant_id).execute(&mut *tx).await?;
        for (priority, a) in list.iter().enumerate() {
            sqlx::query(
                "INSERT INTO role_assignments (tenant_id, priority, attribute, value, role) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant_id)
            .bind(priority as i64)
            .bind(&a.attribute)
            .bind(&a.value)
            .bind(&a.role)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Catalog {
    pub async fn put_login_request(&self, state: &str, nonce: &str, verifier: &str) -> Result<()> {
        let now = crate::now();
        // Requests never finished are forgotten after an hour.
        sqlx::query("DELETE FROM login_requests WHERE created_at < $1").bind(now - 3600).execute(&self.pool).await?;
        sqlx::query("INSERT INTO login_requests (state, nonce, verifier, created_at) VALUES ($1, $2, $3, $4)")
            .bind(state)
            .bind(nonce)
            .bind(verifier)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The nonce and verifier of a sign-on started within `max_age` seconds; each state is usable once.
    pub async fn take_login_request(&self, state: &str, max_age: i64) -> Result<Option<(String, String)>> {
        let row = sqlx::query("DELETE FROM login_requests WHERE state = $1 RETURNING nonce, verifier, created_at")
            .bind(state)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let created: i64 = r.try_get(2)?;
        if created < crate::now() - max_age {
            return Ok(None);
        }
        Ok(Some((r.try_get(0)?, r.try_get(1)?)))
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// Removes a setting and returns what it held: of two takers, one gets it.
    pub async fn take_setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query("DELETE FROM settings WHERE key = $1 RETURNING value")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(crate::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

use rand::Rng;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub journal_token: String,
    pub domains: Vec<String>,
    pub created_at: i64,
}

impl Tenant {
    /// The address Exchange's journal rule sends this tenant's reports to.
    pub fn journal_address(&self, journal_domain: &str) -> String {
        format!("journal-{}@{}", self.journal_token, journal_domain)
    }
}

pub const DEFAULT_TENANT: &str = "default";

/// A new journal token: 12 characters a person reads back without confusing them (no 0/o, 1/l).
pub fn new_journal_token() -> String {
    let mut rng = rand::thread_rng();
    (0..12).map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.gen_range(0..32)])).collect()
}

impl Catalog {
    /// The tenant every single-organisation installation uses; created on first use.
    pub async fn default_tenant(&self) -> Result<Tenant> {
        match self.tenant_by_name(DEFAULT_TENANT).await? {
            Some(t) => Ok(t),
            None => match self.add_tenant(DEFAULT_TENANT, &[]).await {
                Ok(t) => Ok(t),
                // Another process created it at the same moment.
                Err(_) => self
                    .tenant_by_name(DEFAULT_TENANT)
                    .await?
                    .ok_or_else(|| CatalogError::Invalid("the default tenant could not be created".into())),
            },
        }
    }

    pub async fn add_tenant(&self, name: &str, domains: &[String]) -> Result<Tenant> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(CatalogError::Invalid("a tenant name must have 1 to 100 characters".into()));
        }
        if self.tenant_by_name(name).await?.is_some() {
            return Err(CatalogError::Invalid(format!("tenant {name:?} exists already")));
        }
        let token = new_journal_token();
        let mut tx = self.write().await?;
        let id: i64 =
            sqlx::query("INSERT INTO tenants (name, journal_token, created_at) VALUES ($1, $2, $3) RETURNING id")
                .bind(name)
                .bind(&token)
                .bind(crate::now())
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        for domain in domains {
            let domain = domain.trim().to_ascii_lowercase();
            let taken =
                sqlx::query("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&domain)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 0;
            if taken {
                return Err(CatalogError::Invalid(format!("domain {domain} belongs to another tenant already")));
            }
        }
        tx.commit().await?;
        self.tenant(id).await?.ok_or_else(|| CatalogError::Invalid("tenant vanished".into()))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, journal_token, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.with_domains(&row).await?);
        }
        Ok(out)
    }

    pub async fn tenant(&self, id: i64) -> Result<Option<Tenant>> {
        self.one_tenant("id = $1", TenantKey::Id(id)).await
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        self.one_tenant("name = $1", TenantKey::Text(name)).await
    }

    pub async fn tenant_by_journal_token(&self, token: &str) -> Result<Option<Tenant>> {
        self.one_tenant("journal_token = $1", TenantKey::Text(&token.to_ascii_lowercase())).await
    }

    async fn one_tenant(&self, filter: &str, key: TenantKey<'_>) -> Result<Option<Tenant>> {
        let sql = format!("SELECT id, name, journal_token, created_at FROM tenants WHERE {filter}");
        let query = sqlx::query(&sql);
        let query = match key {
            TenantKey::Id(id) => query.bind(id),
            TenantKey::Text(t) => query.bind(t.to_owned()),
        };
        match query.fetch_optional(&self.pool).await? {
            Some(row) => Ok(Some(self.with_domains(&row).await?)),
            None => Ok(None),
        }
    }

    async fn with_domains(&self, row: &AnyRow) -> Result<Tenant> {
        let id: i64 = row.try_get("id")?;
        let domains = sqlx::query("SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        Ok(Tenant {
            id,
            name: row.try_get("name")?,
            journal_token: row.try_get("journal_token")?,
            domains,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Catalog {
    /// Adds a sending network (CIDR, checked by the caller) to the tenant's allow-list.
    pub async fn allow_network(&self, tenant_id: i64, cidr: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO tenant_networks (tenant_id, cidr) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(tenant_id)
            .bind(cidr)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tenants SET evidenced = NULL WHERE id = $1").bind(tenant_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a tenant's domains and sending networks (both checked by the caller); its state
    /// is to be recorded again as evidence. A domain of another tenant is refused.
    pub async fn set_tenant_scope(&self, tenant_id: i64, domains: &[String], networks: &[String]) -> Result<()> {
        let mut tx = self.write().await?;
        for domain in domains {
            let owner: Option<i64> = sqlx::query("SELECT tenant_id FROM tenant_domains WHERE domain = $1")
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            if owner.is_some_and(|o| o != tenant_id) {
                return Err(CatalogError::Invalid(format!("domain {domain} belongs to another tenant already")));
            }
        }
        replace_scope(&mut tx, tenant_id, domains, networks).await?;
        sqlx::query("UPDATE tenants SET evidenced = NULL WHERE id = $1").bind(tenant_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's state is to be recorded (again) as evidence.
    pub async fn mark_tenant_unrecorded(&self, tenant_id: i64) -> Result<()> {
        sqlx::query("UPDATE tenants SET evidenced = NULL WHERE id = $1").bind(tenant_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Tenants whose current state has no evidence record yet, with their networks.
    pub async fn unrecorded_tenants(&self) -> Result<Vec<(Tenant, Vec<String>)>> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM tenants WHERE evidenced IS NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut networks = self.tenant_networks().await?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.tenant(id).await? {
                out.push((t, networks.remove(&id).unwrap_or_default()));
            }
        }
        Ok(out)
    }

    /// A tenant as its evidence record tells it: created with its id and journal token, or
    /// brought to the recorded state.
    pub(crate) async fn apply_tenant(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        t: &Tenant,
        networks: &[String],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenants (id, name, journal_token, created_at, evidenced) VALUES ($1, $2, $3, $4, 1) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, journal_token = excluded.journal_token, \
             created_at = excluded.created_at, evidenced = 1",
        )
        .bind(t.id)
        .bind(&t.name)
        .bind(&t.journal_token)
        .bind(t.created_at)
        .execute(&mut **tx)
        .await?;
        replace_scope(tx, t.id, &t.domains, networks).await?;
        // An id given explicitly does not move PostgreSQL's identity: the next new tenant must
        // not take this one's.
        if self.dialect() == crate::Dialect::Postgres {
            sqlx::query("SELECT setval(pg_get_serial_sequence('tenants', 'id'), (SELECT MAX(id) FROM tenants))")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Every tenant's allowed sending networks; a tenant without any accepts every host.
    pub async fn tenant_networks(&self) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let rows = sqlx::query("SELECT tenant_id, cidr FROM tenant_networks ORDER BY tenant_id, cidr")
            .fetch_all(&self.pool)
            .await?;
        let mut out: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for r in rows {
            out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        Ok(out)
    }
}

/// A tenant's domains and sending networks, replaced whole. A domain recorded for this tenant is
/// its own from then on (the caller has refused another tenant's where it must).
async fn replace_scope(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: i64,
    domains: &[String],
    networks: &[String],
) -> Result<()> {
    sqlx::query("DELETE FROM tenant_domains WHERE tenant_id = $1").bind(tenant_id).execute(&mut **tx).await?;
    for domain in domains {
        sqlx::query(
            "INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2) \
             ON CONFLICT (domain) DO UPDATE SET tenant_id = excluded.tenant_id",
        )
        .bind(domain)
        .bind(tenant_id)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM tenant_networks WHERE tenant_id = $1").bind(tenant_id).execute(&mut **tx).await?;
    for cidr in networks {
        sqlx::query("INSERT INTO tenant_networks (tenant_id, cidr) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(tenant_id)
            .bind(cidr)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

enum TenantKey<'a> {
    Id(i64),
    Text(&'a str),
}

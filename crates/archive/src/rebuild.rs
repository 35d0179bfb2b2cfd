//! `coffer catalog rebuild`: a new catalog made from the volumes alone, when the catalog is lost
//! and no backup of it is left. Every message, recipient (kinds and `via`), placement, source
//! item, tenant with its journal token, domains and networks, and the traffic figures come back
//! from the evidence records, with the same ids. Originals in volumes written before evidence
//! records are catalogued from their bytes (their envelopes were never recorded, and the report
//! says so). Users, API keys, sign-in settings and the audit log are configuration, not evidence:
//! they come back only from a backup of the catalog.

use std::sync::Arc;

use coffer_catalog::{Arrival, Catalog, Fact, RecordRef, Tenant};
use coffer_store::{Compressor, Store, StoreConfig};
use serde::Serialize;

use crate::evidence::{record_changes, replay};
use crate::ingest::{Origin, Source, Submission, prepare};
use crate::service::blocking;
use crate::{ArchiveConfig, ArchiveError, MasterKey};

#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    /// Evidence records applied.
    pub facts: usize,
    pub tenants: usize,
    pub messages: i64,
    /// Messages catalogued from their bytes alone (volumes from before evidence records).
    pub without_evidence: usize,
    /// Tenants that had no recorded state: they got a new name and journal address.
    pub tenants_made_anew: Vec<String>,
    /// IMAP folder cursors derived from the recorded UIDs (a Graph delta link cannot be: those
    /// folders are read again, and dedup absorbs what is there already).
    pub cursors: usize,
    pub problems: Vec<String>,
}

/// Rebuilds the catalog of `config` from its volumes. The catalog must be empty (a new SQLite
/// file, an empty PostgreSQL database): nothing is ever rebuilt on top of one that holds data.
pub async fn rebuild_catalog(config: &ArchiveConfig) -> Result<RebuildReport, ArchiveError> {
    let data = &config.data_dir;
    let volumes = data.join("volumes");
    if !Store::has_volumes(&volumes)? {
        return Err(ArchiveError::Invalid(format!(
            "{} holds no volume: there is nothing to rebuild from",
            volumes.display()
        )));
    }
    let key_file = config.master_key_file.clone().unwrap_or_else(|| data.join("master.key"));
    let master = MasterKey::load_or_create(&key_file, false)?;
    let url =
        config.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", data.join("catalog.sqlite").display()));
    let catalog = Catalog::connect(&url).await?;
    if catalog.count_all_messages().await? > 0 || !catalog.tenants().await?.is_empty() {
        return Err(ArchiveError::Invalid(format!(
            "the catalog ({}) is not empty: a rebuild writes only into an empty catalog. Move the old one aside \
             (or drop and recreate the PostgreSQL database) first",
            url.split('?').next().unwrap_or(&url)
        )));
    }
    let mut store_config = StoreConfig::new(volumes.clone());
    store_config.segment_max_bytes = config.segment_max_bytes;
    store_config.volume_max_bytes = config.volume_max_bytes;
    store_config.volume_max_records = config.volume_max_messages;
    let store = Arc::new(Store::open(store_config, master)?);

    let replayed = replay(&store, &catalog).await?;
    // Deletions come back as certificates; their keys are gone already (shredding is repeated).
    let recorded = catalog.deletions_in_state("recorded").await?;
    crate::retention::shred(&store, &catalog, &recorded).await?;
    let mut report = RebuildReport { facts: replayed.facts, problems: replayed.problems, ..Default::default() };

    // Originals with no evidence: catalogued from their bytes, after every recorded id.
    let mut next_id = catalog.max_message_id().await? + 1;
    let mut known_tenants: std::collections::HashSet<i64> = catalog.tenants().await?.iter().map(|t| t.id).collect();
    for crate::evidence::Bare { owner, location, content_hash: hash } in replayed.bare {
        if !known_tenants.contains(&owner) {
            let name = if owner == 1 && catalog.tenant_by_name(coffer_catalog::DEFAULT_TENANT).await?.is_none() {
                coffer_catalog::DEFAULT_TENANT.to_owned()
            } else {
                format!("tenant-{owner}")
            };
            let tenant = Tenant {
                id: owner,
                name: name.clone(),
                journal_token: coffer_catalog::new_journal_token(),
                domains: Vec::new(),
                created_at: crate::now(),
            };
            catalog.apply(&[Fact::Tenant { tenant, networks: Vec::new() }], &[]).await?;
            // Its new state is recorded below, like any change.
            catalog.mark_tenant_unrecorded(owner).await?;
            report.tenants_made_anew.push(name);
            known_tenants.insert(owner);
        }
        let sha = hex::encode(hash);
        if catalog.existing(owner, std::slice::from_ref(&sha)).await?.contains_key(&sha) {
            continue;
        }
        let (store2, at) = (store.clone(), location.clone());
        let raw = match blocking(move || store2.read(&at)).await? {
            Ok(raw) => raw,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        let sub = Submission {
            tenant: owner,
            source: Source::Import,
            raw,
            envelope: Vec::new(),
            envelope_from: None,
            placement: None,
            journal: false,
            origin: Origin::default(),
        };
        let mut message = blocking(move || prepare(sub, u64::MAX, &Compressor::plain())).await??.message;
        message.source = "rebuilt".into();
        let record = RecordRef {
            volume: location.volume.clone(),
            segment: location.segment as i64,
            offset: location.offset as i64,
            length: location.length as i64,
        };
        catalog
            .apply(
                &[Fact::Arrival(Arrival {
                    id: next_id,
                    message,
                    record: Some(record),
                    source_item: None,
                    evidence_at: None,
                })],
                &[],
            )
            .await?;
        next_id += 1;
        report.without_evidence += 1;
    }
    record_changes(&store, &catalog).await?;
    report.cursors = derive_imap_cursors(&catalog).await?;

    // The archive id pairs the new catalog with its volumes.
    let id = match Store::archive_id(&volumes)? {
        Some(id) => id,
        None => {
            let id = hex::encode(rand::random::<[u8; 16]>());
            Store::set_archive_id(&volumes, &id)?;
            id
        }
    };
    catalog.set_setting(crate::service::ARCHIVE_ID, &id).await?;
    report.tenants = catalog.tenants().await?.len();
    report.messages = catalog.count_all_messages().await?;
    catalog.close().await;
    Ok(report)
}

/// An IMAP connection's cursor per folder (`UIDVALIDITY:last UID`) from its recorded items
/// (`UIDVALIDITY:UID/folder`): the highest UID of the highest UIDVALIDITY seen.
async fn derive_imap_cursors(catalog: &Catalog) -> Result<usize, ArchiveError> {
    let mut cursors: std::collections::BTreeMap<(String, String), (u32, u32)> = Default::default();
    for (connection, item, _) in catalog.source_items().await? {
        let Some((at, folder)) = item.split_once('/') else { continue };
        let Some((validity, uid)) = at.split_once(':') else { continue };
        let (Ok(validity), Ok(uid)) = (validity.parse::<u32>(), uid.parse::<u32>()) else { continue };
        let best = cursors.entry((connection, folder.to_owned())).or_insert((validity, uid));
        *best = (*best).max((validity, uid));
    }
    let mut set = 0;
    for ((connection, folder), (validity, uid)) in cursors {
        if catalog.sync_cursor(&connection, &folder).await?.is_none() {
            catalog.set_sync_cursor(&connection, &folder, &format!("{validity}:{uid}")).await?;
            set += 1;
        }
    }
    Ok(set)
}

/// Everything of the catalog that is derived from the volumes, in a stable order: what a
/// rebuild must give back exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogDump {
    pub tenants: Vec<(Tenant, Vec<String>)>,
    pub messages: Vec<coffer_catalog::FullMessage>,
    pub source_items: Vec<(String, String, i64)>,
    pub traffic: Vec<coffer_catalog::TrafficRow>,
}

impl crate::Archive {
    /// The derived part of the catalog, whole (system administrators only).
    pub async fn catalog_dump(&self, actor: &crate::Actor) -> Result<CatalogDump, ArchiveError> {
        actor.require_system_admin()?;
        let mut networks = self.catalog.tenant_networks().await?;
        let tenants = self.catalog.tenants().await?.into_iter().map(|t| {
            let n = networks.remove(&t.id).unwrap_or_default();
            (t, n)
        });
        let mut messages = Vec::new();
        loop {
            let after = messages.last().map(|m: &coffer_catalog::FullMessage| m.row.id).unwrap_or(0);
            let page = self.catalog.messages_in_full(after, 500).await?;
            if page.is_empty() {
                break;
            }
            messages.extend(page);
        }
        Ok(CatalogDump {
            tenants: tenants.collect(),
            messages,
            source_items: self.catalog.source_items().await?,
            traffic: self.catalog.traffic(0).await?,
        })
    }
}

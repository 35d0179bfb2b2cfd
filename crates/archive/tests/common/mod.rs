//! A throw-away archive for tests: a temporary data folder, a catalog on SQLite or PostgreSQL,
//! the real pipeline and indexer.

#![allow(dead_code)]

use std::collections::BTreeSet;

use coffer_archive::{Actor, Archive, ArchiveConfig, Pipeline, Receipt, Sort, Source, Submission};

pub struct TestArchive {
    pub archive: Archive,
    pub pipeline: Pipeline,
    pub actor: Actor,
    pub label: String,
    /// How the archive was opened (to open it again).
    pub config: ArchiveConfig,
    _dir: tempfile::TempDir,
}

/// One archive per catalog database the test kit offers (SQLite always, PostgreSQL when configured).
pub async fn archives() -> Vec<TestArchive> {
    let mut out = Vec::new();
    let scratch = tempfile::tempdir().unwrap();
    for url in coffer_testkit::catalog_urls(scratch.path()).await {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ArchiveConfig::new(dir.path().join("data"));
        if url.starts_with("postgres") {
            config.database_url = Some(url.clone());
        }
        let archive = Archive::open(config.clone(), true).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let pipeline = archive.pipeline();
        let actor = Actor::operator(archive.tenant(None).await.unwrap());
        let label = url.split(':').next().unwrap().to_owned();
        out.push(TestArchive { archive, pipeline, actor, label, config, _dir: dir });
    }
    out
}

impl TestArchive {
    pub async fn submit(&self, raw: &[u8], journal: bool, placement: Option<(&str, &str)>) -> Receipt {
        self.pipeline
            .submit(Submission {
                tenant: self.actor.tenant.id,
                source: Source::Import,
                raw: raw.to_vec(),
                envelope: Vec::new(),
                envelope_from: None,
                placement: placement.map(|(m, f)| (m.to_owned(), f.to_owned())),
                journal,
                origin: Default::default(),
            })
            .await
            .unwrap()
    }

    pub async fn index(&self) {
        self.archive.indexer().run_until_idle().await.unwrap();
    }

    pub async fn ids(&self, query: &str) -> BTreeSet<i64> {
        self.ids_as(&self.actor, query).await
    }

    pub async fn ids_as(&self, actor: &Actor, query: &str) -> BTreeSet<i64> {
        let ids = self.archive.matching_ids(actor, query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
        let set: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len(), "{query}: an id came back twice");
        set
    }

    pub async fn count(&self, query: &str) -> usize {
        self.archive.search(&self.actor, query, 10, 0, Sort::Date, false).await.unwrap().total
    }
}

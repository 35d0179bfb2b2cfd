//! The catalog and the volumes belong together: a new catalog is never started beside volumes
//! that hold mail, on SQLite or PostgreSQL alike.

mod common;

use coffer_archive::{Archive, ArchiveError};

#[tokio::test]
async fn a_new_empty_catalog_beside_volumes_is_refused_and_the_archives_own_still_opens() {
    let scratch = tempfile::tempdir().unwrap();
    for t in common::archives().await {
        t.submit(b"From: a@contoso.com\r\nSubject: kept\r\n\r\nbody\r\n", false, None).await;
        let token = t.actor.tenant.journal_token.clone();
        let config = t.config.clone();
        let label = t.label.clone();
        t.archive.close().await.unwrap();
        let mut lost = config.clone();
        lost.database_url = Some(match label.as_str() {
            "sqlite" => format!("sqlite://{}", scratch.path().join(format!("new-{label}.sqlite")).display()),
            _ => coffer_testkit::fresh_postgres().await.unwrap(),
        });
        for writable in [true, false] {
            let refused =
                Archive::open(lost.clone(), writable).await.err().unwrap_or_else(|| panic!("{label}: opened"));
            assert!(matches!(refused, ArchiveError::CatalogMismatch(_)), "{label}: {refused}");
            assert!(refused.to_string().contains("Restore the catalog"), "{label}: {refused}");
        }
        let again = Archive::open(config, false).await.unwrap();
        assert_eq!(again.tenant(None).await.unwrap().journal_token, token, "{label}: the journal address stays");
    }
}

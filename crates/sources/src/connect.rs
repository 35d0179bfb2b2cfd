//! Turning a connection's configuration into a working source: a Graph client with the app's
//! certificate, an IMAP poller with its sealed secrets, an importer. The CLI and the supervisor
//! build sources the same way.

use std::sync::Arc;

use coffer_archive::{Archive, ArchiveError, Pipeline};
use coffer_imap::{ImapConfig, Poller};
use coffer_m365::M365Config;
use coffer_m365::graph::Graph;
use coffer_m365::import::Importer;

/// The Graph client of a Microsoft 365 connection, signed in with its certificate from the store.
pub fn graph(archive: &Archive, c: &M365Config) -> Result<Graph, ArchiveError> {
    let certs = archive.certs();
    let pem = certs.certificate_pem(&c.certificate).map_err(|_| {
        ArchiveError::Invalid(format!(
            "m365 {}: no certificate {:?}: make it with Update Manifest (Configuration → Connections) or `coffer m365 manifest --alias {}`",
            c.name, c.certificate, c.certificate
        ))
    })?;
    Graph::new(c.clone(), &pem, certs.private_key_pem(&c.certificate)?)
        .map_err(|e| ArchiveError::Invalid(format!("m365 {}: {e}", c.name)))
}

/// The importer of a Microsoft 365 connection, archiving into `c.tenant` (default: the default tenant).
pub async fn importer(
    archive: &Archive,
    c: &M365Config,
    graph: Arc<Graph>,
    pipeline: Pipeline,
) -> Result<Importer, ArchiveError> {
    let tenant = archive.tenant(c.tenant.as_deref()).await?;
    Ok(Importer {
        board: Default::default(),
        graph,
        pipeline,
        state: archive.source_state(),
        tenant: tenant.id,
        max_message_bytes: archive.config.max_message_bytes,
    })
}

/// The poller of an IMAP connection. Secrets not written in coffer.toml come from the sealed
/// secret store (`imap.<name>.password`, `imap.<name>.client_secret`); OAuth2 tokens can come from
/// a Microsoft 365 connection's certificate (`m365 = "<name>"`).
pub async fn poller(
    archive: &Archive,
    m365: &[M365Config],
    imap: &ImapConfig,
    pipeline: Pipeline,
) -> Result<Poller, ArchiveError> {
    let tenant = archive.tenant(imap.tenant.as_deref()).await?;
    if imap.security == coffer_imap::Security::None {
        tracing::warn!(connection = %imap.name, "IMAP without TLS: the password and the mail cross the network in the clear");
    }
    let mut imap = imap.clone();
    let secrets = archive.secrets();
    if imap.password.is_empty() {
        imap.password = secrets.get(&format!("imap.{}.password", imap.name))?.unwrap_or_default();
    }
    if imap.client_secret.is_none() {
        imap.client_secret = secrets.get(&format!("imap.{}.client_secret", imap.name))?;
    }
    let mut poller = Poller::new(imap.clone(), tenant.id, pipeline, archive.source_state());
    if let Some(name) = &imap.m365 {
        let m = m365.iter().find(|m| &m.name == name).ok_or_else(|| {
            ArchiveError::Invalid(format!("imap connection {}: no Microsoft 365 connection named {name:?}", imap.name))
        })?;
        let graph = Arc::new(graph(archive, m)?);
        poller.token_source =
            Some(Arc::new(move || graph.token(coffer_m365::graph::OUTLOOK_SCOPE).map_err(|e| e.to_string())));
    }
    Ok(poller)
}

/// Signs in to the mailbox and lists its folders with their message counts.
pub async fn test_imap(poller: &Poller) -> Result<String, String> {
    let folders = poller.test().await.map_err(|e| e.to_string())?;
    let list: Vec<String> = folders.iter().map(|(f, n)| format!("{f} ({n} messages)")).collect();
    let c = &poller.config;
    Ok(format!("connected to {}:{}, logged in as {}; folders: {}", c.host, c.port, c.username, list.join(", ")))
}

/// Gets a token, lists a user and reads a mailbox's folders; failures come with advice.
pub async fn test_m365(graph: Arc<Graph>) -> Result<String, String> {
    tokio::task::spawn_blocking(move || coffer_m365::graph::test_connection(&graph))
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| e.to_string())
}

/// One historical import of a connection's mailboxes (or the one `user` names) outside the
/// server, audited as `actor`'s: `progress` hears of each mailbox as it goes, `done` of each as it
/// ends. The answer is the mailboxes in scope.
pub async fn import_once(
    archive: &Archive,
    actor: &coffer_archive::Actor,
    importer: &Importer,
    user: Option<&str>,
    progress: &(dyn Fn(&coffer_m365::import::MailboxReport) + Sync),
    done: &mut (dyn FnMut(Result<coffer_m365::import::MailboxReport, (String, coffer_m365::M365Error)>) + Send),
) -> Result<Vec<(String, String)>, ArchiveError> {
    let c = &importer.graph.config;
    archive.audit(actor, "import", &format!("m365 {}: {}", c.name, c.choices())).await?;
    let mut users = importer.users().await.map_err(|e| ArchiveError::Invalid(format!("m365 {}: {e}", c.name)))?;
    if let Some(u) = user {
        users.retain(|(id, upn)| id == u || upn.eq_ignore_ascii_case(u));
        if users.is_empty() {
            return Err(ArchiveError::Invalid(format!("no user {u:?} in scope of connection {}", c.name)));
        }
    }
    importer.mailboxes(&users, progress, done).await;
    Ok(users)
}

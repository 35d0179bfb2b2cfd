//! The historical import, resumable: per folder, `messages/delta` pages; each page's messages are
//! fetched (`$value`, at most four requests at a time per mailbox) and handed to the pipeline, and
//! only when all of them are durable does the folder's cursor (the next link or the delta link)
//! advance in the catalog. A restart continues from the cursor; a 410 on it starts the folder
//! over, and dedup absorbs what was already stored.

use std::collections::HashSet;
use std::sync::Arc;

use coffer_archive::sources::SourceState;
use coffer_archive::{Origin, Pipeline, Source, Submission};
use futures::StreamExt;
use serde_json::Value;

use crate::M365Error;
use crate::graph::{Failure, Graph};

/// At most this many Graph requests at a time per mailbox (Microsoft's guidance is four).
const PER_MAILBOX: usize = 4;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MailboxReport {
    pub mailbox: String,
    pub folders: usize,
    pub fetched: usize,
    pub archived: usize,
    pub duplicates: usize,
    pub removed_in_mailbox: usize,
    /// Placements taken away because the message left the folder (moved or deleted there).
    pub moved_out: usize,
    pub events: usize,
    pub contacts: usize,
    /// Folders whose delta link had expired (410) and were read again.
    pub restarted: usize,
    /// The user has no Exchange Online mailbox: nothing to archive, not a failure.
    pub no_mailbox: bool,
}

#[derive(Debug, Clone)]
pub struct Folder {
    pub id: String,
    pub path: String,
}

/// What each mailbox of a connection is doing, for the console (kept in memory by the process
/// that imports; the cursors in the catalog are what survives).
#[derive(Clone, Default)]
pub struct Board {
    states: Arc<std::sync::Mutex<std::collections::BTreeMap<String, MailboxState>>>,
    /// One sync of a mailbox at a time: the console's import and a webhook's sync take turns, so
    /// neither moves a folder's delta link back under the other.
    turns: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MailboxState {
    pub mailbox: String,
    /// `importing`, `synced`, `no mailbox` or `failed`.
    pub state: String,
    pub report: MailboxReport,
    /// Unix seconds of the last completed sync.
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
}

impl Board {
    fn set(&self, mailbox: &str, f: impl FnOnce(&mut MailboxState)) {
        let mut map = self.states.lock().unwrap();
        let entry = map
            .entry(mailbox.to_owned())
            .or_insert_with(|| MailboxState { mailbox: mailbox.to_owned(), ..Default::default() });
        f(entry);
    }

    pub fn rows(&self) -> Vec<MailboxState> {
        self.states.lock().unwrap().values().cloned().collect()
    }

    fn turn(&self, mailbox: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.lock().unwrap().entry(mailbox.to_owned()).or_default().clone()
    }
}

pub struct Importer {
    pub board: Board,
    pub graph: Arc<Graph>,
    pub pipeline: Pipeline,
    pub state: SourceState,
    pub tenant: i64,
    pub max_message_bytes: u64,
}

impl Importer {
    pub fn connection(&self) -> String {
        format!("m365:{}", self.graph.config.name)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Graph) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let graph = self.graph.clone();
        tokio::task::spawn_blocking(move || f(&graph))
            .await
            .map_err(|e| Failure::Other(M365Error::Advice(format!("internal: {e}"))))?
    }

    /// The mailboxes in scope: `(id, user principal name)`.
    pub async fn users(&self) -> Result<Vec<(String, String)>, M365Error> {
        let path = match &self.graph.config.group {
            Some(group) => {
                format!("/v1.0/groups/{group}/members/microsoft.graph.user?$select=id,userPrincipalName,mail&$top=100")
            }
            None => "/v1.0/users?$select=id,userPrincipalName,mail&$top=100".to_owned(),
        };
        let users = self.blocking(move |g| g.all(&path)).await.map_err(failure)?;
        let wanted: Vec<String> = self.graph.config.mailboxes.iter().map(|m| m.to_lowercase()).collect();
        Ok(users
            .iter()
            .filter_map(|u| {
                Some((
                    u["id"].as_str()?.to_owned(),
                    u["userPrincipalName"].as_str()?.to_lowercase(),
                    u["mail"].as_str().map(str::to_lowercase),
                ))
            })
            .filter(|(_, upn, mail)| {
                wanted.is_empty() || wanted.contains(upn) || mail.as_ref().is_some_and(|m| wanted.contains(m))
            })
            .map(|(id, upn, _)| (id, upn))
            .collect())
    }

    /// The mailbox's folders with their full paths, the skipped ones (Junk, Deleted Items,
    /// Drafts, as configured) and their subfolders left out.
    pub async fn folders(&self, user: &str) -> Result<Vec<Folder>, M365Error> {
        let config = &self.graph.config;
        let mut skip = HashSet::new();
        for (on, name) in
            [(config.skip_junk, "junkemail"), (config.skip_deleted, "deleteditems"), (config.skip_drafts, "drafts")]
        {
            if on {
                let path = format!("/v1.0/users/{user}/mailFolders/{name}?$select=id");
                match self.blocking(move |g| g.get_json(&path)).await {
                    Ok(f) => {
                        skip.insert(f["id"].as_str().unwrap_or_default().to_owned());
                    }
                    Err(Failure::NotFound) => {}
                    Err(e) => return Err(failure(e)),
                }
            }
        }
        let mut out = Vec::new();
        let mut pending =
            vec![(format!("/v1.0/users/{user}/mailFolders?$top=100&includeHiddenFolders=false"), String::new())];
        while let Some((path, parent)) = pending.pop() {
            let children = self.blocking(move |g| g.all(&path)).await.map_err(failure)?;
            for f in children {
                let (Some(id), Some(name)) = (f["id"].as_str(), f["displayName"].as_str()) else { continue };
                if skip.contains(id) {
                    continue;
                }
                let full = if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") };
                if f["childFolderCount"].as_u64().unwrap_or(1) > 0 {
                    pending.push((format!("/v1.0/users/{user}/mailFolders/{id}/childFolders?$top=100"), full.clone()));
                }
                out.push(Folder { id: id.to_owned(), path: full });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Imports these mailboxes, `parallel_mailboxes` at a time; `done` hears of each as it ends.
    /// One mailbox's failure does not stop the others.
    pub async fn mailboxes(
        &self,
        users: &[(String, String)],
        progress: &(dyn Fn(&MailboxReport) + Sync),
        done: &mut (dyn FnMut(Result<MailboxReport, (String, M365Error)>) + Send),
    ) {
        // The futures are made up front (they start only when polled): a stream mapped by a
        // closure over borrowed users would not be `Send` for a spawned task.
        let runs: Vec<_> = users
            .iter()
            .map(|(id, upn)| async move { self.mailbox(id, upn, progress).await.map_err(|e| (upn.clone(), e)) })
            .collect();
        let mut runs = futures::stream::iter(runs).buffer_unordered(self.graph.config.parallel_mailboxes.max(1));
        while let Some(result) = runs.next().await {
            done(result);
        }
    }

    /// Imports one mailbox, every folder, then (as configured) its calendar and contacts, from
    /// where the last run stopped.
    pub async fn mailbox(
        &self,
        user_id: &str,
        upn: &str,
        progress: &(dyn Fn(&MailboxReport) + Sync),
    ) -> Result<MailboxReport, M365Error> {
        let turn = self.board.turn(upn);
        let _turn = turn.lock().await;
        self.board.set(upn, |m| m.state = "importing".into());
        let board = self.board.clone();
        let track = |r: &MailboxReport| {
            board.set(upn, |m| m.report = r.clone());
            progress(r);
        };
        match self.mailbox_inner(user_id, upn, &track).await {
            Ok(r) => {
                self.board.set(upn, |m| {
                    m.state = "synced".into();
                    m.report = r.clone();
                    m.last_sync = Some(coffer_archive::service::now_secs());
                    m.last_error = None;
                });
                Ok(r)
            }
            Err(M365Error::NoMailbox) => {
                self.board.set(upn, |m| {
                    m.state = "no mailbox".into();
                    m.last_sync = Some(coffer_archive::service::now_secs());
                    m.last_error = None;
                });
                Ok(MailboxReport { mailbox: upn.to_owned(), no_mailbox: true, ..Default::default() })
            }
            Err(e) => {
                self.board.set(upn, |m| {
                    m.state = "failed".into();
                    m.last_error = Some(e.to_string());
                });
                Err(e)
            }
        }
    }

    async fn mailbox_inner(
        &self,
        user_id: &str,
        upn: &str,
        progress: &(dyn Fn(&MailboxReport) + Sync),
    ) -> Result<MailboxReport, M365Error> {
        let mut report = MailboxReport { mailbox: upn.to_owned(), ..Default::default() };
        for folder in self.folders(user_id).await? {
            report.folders += 1;
            self.folder(user_id, upn, &folder, &mut report).await?;
            progress(&report);
        }
        if self.graph.config.calendar {
            let start = format!(
                "/v1.0/users/{user_id}/calendarView/delta?startDateTime=1900-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z"
            );
            report.events +=
                self.items(upn, &format!("{user_id}/calendar"), &start, "Calendar", crate::items::event_item).await?;
        }
        if self.graph.config.contacts {
            let start = format!("/v1.0/users/{user_id}/contacts/delta");
            report.contacts +=
                self.items(upn, &format!("{user_id}/contacts"), &start, "Contacts", crate::items::contact_item).await?;
            let path = format!("/v1.0/users/{user_id}/contactFolders?$top=100");
            for f in self.blocking(move |g| g.all(&path)).await.map_err(failure)? {
                let (Some(id), Some(name)) = (f["id"].as_str(), f["displayName"].as_str()) else { continue };
                let start = format!("/v1.0/users/{user_id}/contactFolders/{id}/contacts/delta");
                let folder = format!("Contacts/{name}");
                report.contacts += self
                    .items(upn, &format!("{user_id}/contacts/{id}"), &start, &folder, crate::items::contact_item)
                    .await?;
            }
        }
        progress(&report);
        Ok(report)
    }

    /// Events or contacts through delta: each item (as delta returns it) becomes an archived
    /// item in `folder`; the cursor advances after each durable page, as for mail.
    async fn items(
        &self,
        upn: &str,
        scope: &str,
        start: &str,
        folder: &str,
        to_raw: fn(&str, &Value) -> Vec<u8>,
    ) -> Result<usize, M365Error> {
        let mut link = self.state.cursor(&self.connection(), scope).await?.unwrap_or_else(|| start.to_owned());
        let mut archived = 0;
        loop {
            let current = link.clone();
            let page = match self.blocking(move |g| g.get_json(&current)).await {
                Ok(p) => p,
                Err(Failure::Gone) => {
                    link = start.to_owned();
                    continue;
                }
                Err(e) => return Err(failure(e)),
            };
            let mut receipts = Vec::new();
            for item in page["value"].as_array().into_iter().flatten().filter(|i| i.get("@removed").is_none()) {
                receipts.push(self.pipeline.submit(Submission {
                    tenant: self.tenant,
                    source: Source::Graph,
                    raw: to_raw(upn, item),
                    envelope: Vec::new(),
                    envelope_from: None,
                    placement: Some((upn.to_owned(), folder.to_owned())),
                    journal: false,
                    origin: Origin {
                        item: item["id"].as_str().map(|id| (self.connection(), id.to_owned())),
                        ..Origin::default()
                    },
                }));
            }
            for r in futures::future::join_all(receipts).await {
                if !r?.duplicate {
                    archived += 1;
                }
            }
            if let Some(next) = page["@odata.nextLink"].as_str() {
                self.state.set_cursor(&self.connection(), scope, next).await?;
                link = next.to_owned();
            } else if let Some(delta) = page["@odata.deltaLink"].as_str() {
                self.state.set_cursor(&self.connection(), scope, delta).await?;
                return Ok(archived);
            } else {
                return Err(M365Error::Advice(format!(
                    "Graph's delta page for {folder} has neither a next nor a delta link"
                )));
            }
        }
    }

    async fn folder(
        &self,
        user_id: &str,
        upn: &str,
        folder: &Folder,
        report: &mut MailboxReport,
    ) -> Result<(), M365Error> {
        let scope = format!("{user_id}/{}", folder.id);
        let start = format!("/v1.0/users/{user_id}/mailFolders/{}/messages/delta?$select=id", folder.id);
        let mut link = self.state.cursor(&self.connection(), &scope).await?.unwrap_or_else(|| start.clone());
        loop {
            let page = {
                let current = link.clone();
                match self.blocking(move |g| g.get_json(&current)).await {
                    Ok(p) => p,
                    Err(Failure::Gone) => {
                        tracing::info!(mailbox = upn, folder = %folder.path, "delta link expired (410): reading the folder again");
                        report.restarted += 1;
                        link = start.clone();
                        continue;
                    }
                    Err(e) => return Err(failure(e)),
                }
            };
            let items = page["value"].as_array().cloned().unwrap_or_default();
            let (removed, present): (Vec<&Value>, Vec<&Value>) =
                items.iter().partition(|m| m.get("@removed").is_some());
            report.removed_in_mailbox += removed.len();
            let ids: Vec<String> = present.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect();
            let limit = self.max_message_bytes;
            // Gone from this folder (moved away or deleted): out of its place in the folder
            // tree; the message stays archived.
            for m in &removed {
                if let Some(id) = m["id"].as_str()
                    && let Some(message) = self.state.item(&self.connection(), id).await?
                    && self.pipeline.remove_placement(self.tenant, message, upn, &folder.path).await?
                {
                    report.moved_out += 1;
                }
            }
            let results: Vec<Result<(Vec<u8>, String), Failure>> = futures::stream::iter(ids)
                .map(|id| {
                    let path = format!("/v1.0/users/{user_id}/messages/{id}/$value");
                    async move { self.blocking(move |g| g.get_bytes(&path, limit)).await.map(|raw| (raw, id)) }
                })
                .buffer_unordered(PER_MAILBOX)
                .collect()
                .await;
            // Every message of the page is durable before the cursor moves past it.
            let mut receipts = Vec::new();
            for r in results {
                let (raw, id) = match r {
                    Ok(x) => x,
                    Err(Failure::NotFound) => continue, // deleted meanwhile
                    Err(e) => return Err(failure(e)),
                };
                report.fetched += 1;
                let submission = Submission {
                    tenant: self.tenant,
                    source: Source::Graph,
                    raw,
                    envelope: Vec::new(),
                    envelope_from: None,
                    placement: Some((upn.to_owned(), folder.path.clone())),
                    journal: false,
                    origin: Origin { item: Some((self.connection(), id.clone())), ..Origin::default() },
                };
                receipts.push(self.pipeline.submit(submission));
            }
            // Each arrival's evidence names its Graph id: a later move or deletion finds it.
            for receipt in futures::future::join_all(receipts).await {
                match receipt {
                    Ok(r) if r.duplicate => report.duplicates += 1,
                    Ok(_) => report.archived += 1,
                    Err(coffer_archive::ArchiveError::TooLarge { .. }) => {
                        tracing::warn!(mailbox = upn, folder = %folder.path, "a message over max_message_bytes was skipped");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            crate::crash_point("m365-after-page");
            if let Some(next) = page["@odata.nextLink"].as_str() {
                self.state.set_cursor(&self.connection(), &scope, next).await?;
                link = next.to_owned();
            } else if let Some(delta) = page["@odata.deltaLink"].as_str() {
                self.state.set_cursor(&self.connection(), &scope, delta).await?;
                return Ok(());
            } else {
                return Err(M365Error::Advice(format!(
                    "Graph's delta page for {} has neither a next nor a delta link",
                    folder.path
                )));
            }
        }
    }
}

/// A request's failure as an error with advice.
pub fn failure(f: Failure) -> M365Error {
    match f {
        Failure::Other(e) => e,
        Failure::Gone => M365Error::Gone,
        Failure::NotFound => M365Error::NotFound,
        Failure::NoMailbox => M365Error::NoMailbox,
    }
}

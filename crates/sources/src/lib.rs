//! The source supervisor: every source job of a server (IMAP polling, Microsoft 365 import and
//! folder sync by webhook) runs here, one run at a time per source, with its schedule, backoff
//! after failures, progress, last success and last error, and start/stop from the console. The
//! console reaches it only through [`coffer_archive::sources::SourceControl`]. When several nodes
//! run, this is where a job will take its lease.
//!
//! A stopped run is cut where it is: sources acknowledge only what is durable and advance their
//! cursors after that, so the next run repeats at most a batch, and deduplication absorbs it.

pub mod connect;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_archive::connections::Connection;
use coffer_archive::service::now_secs;
use coffer_archive::sources::{BoxFuture, ConnectionInfo, JobState, MailboxStatus, SourceControl};
use coffer_archive::{Archive, ArchiveError, Pipeline};
use coffer_imap::Poller;
use coffer_m365::M365Config;
use coffer_m365::graph::Graph;
use coffer_m365::import::Importer;
use tokio::sync::Notify;

/// The first wait after a failure; it doubles with each failure in a row, up to the source's
/// interval (at least this).
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

pub use coffer_archive::connections::Definitions;

enum Work {
    /// Polled on a schedule, and woken by IDLE in between.
    Imap { poller: Box<Poller>, interval: Duration },
    /// Runs when started (the historical import; it resumes where the last one stopped).
    M365 { importer: Arc<Importer> },
    /// A connection that could not be built (a missing certificate, say): listed with why.
    NotStarted { why: String },
    /// Turned off in its settings.
    Disabled,
}

struct Job {
    name: String,
    kind: &'static str,
    settings: Vec<(String, String)>,
    work: Work,
    state: Mutex<JobState>,
    wake: Notify,
    stopped: AtomicBool,
    requested: AtomicBool,
    /// Replaced or removed: its loop ends.
    retired: AtomicBool,
    running: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Waits after `failures` failed runs in a row.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(interval.max(FIRST_BACKOFF))
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut JobState)) {
        f(&mut self.state.lock().unwrap());
    }

    fn scheduled(&self) -> Option<Duration> {
        match &self.work {
            Work::Imap { interval, .. } => Some(*interval),
            Work::M365 { .. } | Work::NotStarted { .. } | Work::Disabled => None,
        }
    }

    /// Says when the next run comes after a run with `failures` failures in a row, unless the
    /// job was stopped meanwhile (checked under the state's lock, which `stop` takes after setting
    /// the flag, so a stop is never overwritten).
    fn after_run(&self, failures: u32, interval: Duration) -> Duration {
        let delay = if failures == 0 { interval } else { backoff(failures, interval) };
        self.update(|s| {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            s.state = if failures == 0 { "waiting" } else { "backing off" }.into();
            s.next_run = Some(now_secs() + delay.as_secs() as i64);
        });
        delay
    }

    /// Runs the job for the life of the server.
    async fn supervise(self: Arc<Self>) {
        loop {
            if self.retired.load(Ordering::SeqCst) {
                return;
            }
            let stopped = self.stopped.load(Ordering::SeqCst);
            let asked = self.requested.swap(false, Ordering::SeqCst);
            if stopped || (self.scheduled().is_none() && !asked) {
                self.update(|s| {
                    s.state = if stopped { "stopped" } else { "on demand" }.into();
                    s.next_run = None;
                });
                self.wake.notified().await;
                continue;
            }
            self.update(|s| {
                s.state = "running".into();
                s.last_run = Some(now_secs());
                s.next_run = None;
                s.runs += 1;
            });
            let run = tokio::spawn(self.clone().run_once());
            *self.running.lock().unwrap() = Some(run.abort_handle());
            // A stop between the check above and here found no run to cut: cut it now.
            if self.stopped.load(Ordering::SeqCst) {
                run.abort();
            }
            let outcome = run.await;
            *self.running.lock().unwrap() = None;
            let failures = match outcome {
                Ok(Ok(progress)) => {
                    self.update(|s| {
                        s.failures = 0;
                        s.last_success = Some(now_secs());
                        s.last_error = None;
                        s.progress = progress;
                    });
                    0
                }
                Ok(Err(error)) => {
                    tracing::warn!(connection = %self.name, %error, "source run failed");
                    let mut n = 0;
                    self.update(|s| {
                        s.failures += 1;
                        s.last_error = Some(error);
                        n = s.failures;
                    });
                    n
                }
                Err(e) if e.is_cancelled() => {
                    self.update(|s| s.progress = format!("stopped during a run; {}", s.progress));
                    continue;
                }
                Err(e) => {
                    tracing::error!(connection = %self.name, error = %e, "source run ended abnormally");
                    let mut n = 0;
                    self.update(|s| {
                        s.failures += 1;
                        s.last_error = Some(format!("internal error: {e}"));
                        n = s.failures;
                    });
                    n
                }
            };
            let Some(interval) = self.scheduled() else { continue };
            let delay = self.after_run(failures, interval);
            let waited = async {
                match &self.work {
                    // New mail ends the wait early (IDLE); without IDLE, the interval.
                    Work::Imap { poller, .. } if failures == 0 => {
                        if let Err(e) = poller.wait_for_mail(delay).await {
                            tracing::debug!(connection = %self.name, error = %e, "no IDLE; polling at the interval");
                            tokio::time::sleep(delay).await;
                        }
                    }
                    _ => tokio::time::sleep(delay).await,
                }
            };
            tokio::select! {
                _ = waited => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One run: what it did in words, or what went wrong.
    async fn run_once(self: Arc<Self>) -> Result<String, String> {
        match &self.work {
            Work::NotStarted { why } => Err(why.clone()),
            Work::Disabled => Err("disabled".into()),
            Work::Imap { poller, .. } => {
                let r = poller.poll_once().await.map_err(|e| e.to_string())?;
                for (folder, uid, why) in &r.refused {
                    tracing::warn!(connection = %self.name, %folder, uid, %why, "message refused, left on the server");
                }
                if r.fetched > 0 {
                    tracing::info!(connection = %self.name, ?r, "IMAP poll");
                }
                Ok(format!(
                    "last poll: fetched {}, archived {}, duplicates {}, removed from the server {}, refused {}",
                    r.fetched,
                    r.archived,
                    r.duplicates,
                    r.removed,
                    r.refused.len()
                ))
            }
            Work::M365 { importer } => {
                let users = importer.users().await.map_err(|e| format!("listing the mailboxes: {e}"))?;
                let (mut done, mut archived, mut failed) = (0, 0, Vec::new());
                self.update(|s| s.progress = format!("0 of {} mailboxes done", users.len()));
                importer
                    .mailboxes(&users, &|_| {}, &mut |result| {
                        done += 1;
                        match result {
                            Ok(r) => archived += r.archived,
                            Err((upn, e)) => {
                                tracing::warn!(mailbox = %upn, error = %e, "Microsoft 365 import failed for a mailbox");
                                failed.push(upn);
                            }
                        }
                        let line = format!("{done} of {} mailboxes done, {archived} messages archived", users.len());
                        self.update(|s| s.progress = line);
                    })
                    .await;
                let progress = format!("last import: {} mailboxes, {archived} messages archived", users.len());
                if failed.is_empty() {
                    Ok(progress)
                } else {
                    self.update(|s| s.progress = progress);
                    Err(format!(
                        "{} mailboxes failed ({}); the mailboxes list says why; what they had archived is kept and the next import continues where each stopped",
                        failed.len(),
                        failed.join(", ")
                    ))
                }
            }
        }
    }
}

/// Every source job of the server.
pub struct Supervisor {
    jobs: Mutex<Vec<Arc<Job>>>,
    /// Folder syncs by webhook, by connection name, with the tasks that run them.
    syncs: Mutex<Vec<SyncRunning>>,
    /// Graph clients by connection name and directory (tenant) id, for directory lookups.
    directories: Mutex<Vec<(String, String, Arc<Graph>)>>,
    /// The connections as configured now.
    defs: Mutex<Definitions>,
    /// What connections are built with (None in unit tests, which build none).
    context: Option<(Arc<Archive>, Pipeline)>,
    /// One change of the connections at a time.
    changing: tokio::sync::Mutex<()>,
}

struct SyncRunning {
    connection: String,
    sync: Arc<coffer_m365::sync::Sync>,
    tasks: [tokio::task::AbortHandle; 2],
}

/// A connection built: its job, and for Microsoft 365 its Graph client and its webhook sync.
struct Built {
    job: Arc<Job>,
    graph: Option<(String, Arc<Graph>)>,
    sync: Option<SyncRunning>,
}

async fn build_m365(archive: &Archive, c: &M365Config, pipeline: &Pipeline) -> Result<Built, ArchiveError> {
    let graph = Arc::new(connect::graph(archive, c)?);
    let importer = Arc::new(connect::importer(archive, c, graph.clone(), pipeline.clone()).await?);
    let mut sync = None;
    if let Some(url) = &c.webhook_url {
        let client_state = match c.client_state.clone() {
            Some(s) => Some(s),
            None => archive.secrets().get(&format!("m365.{}.client_state", c.name))?,
        };
        match client_state.filter(|s| s.len() >= 16) {
            Some(client_state) => {
                let (s, queue) = coffer_m365::sync::Sync::new(importer.clone(), url.clone(), client_state);
                let run = tokio::spawn(s.clone().run(queue)).abort_handle();
                let keep = tokio::spawn(s.clone().keep_subscriptions()).abort_handle();
                tracing::info!(connection = %c.name, webhook = %url, "Microsoft 365 folder sync by webhook");
                sync = Some(SyncRunning { connection: c.name.clone(), sync: s, tasks: [run, keep] });
            }
            None => tracing::error!(
                connection = %c.name,
                "no folder sync: a webhook_url needs a client_state secret of at least 16 characters"
            ),
        }
    }
    let settings = describe(&Connection::M365(c.clone()));
    let job = job(&c.name, "Microsoft 365", settings, Work::M365 { importer });
    Ok(Built { job, graph: Some((c.tenant_id.to_lowercase(), graph)), sync })
}

/// The console's list of a connection's settings.
fn describe(c: &Connection) -> Vec<(String, String)> {
    c.describe().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Builds the connection's job as configured: disabled, running, or not started with why.
async fn build(archive: &Archive, c: &Connection, defs: &Definitions, pipeline: &Pipeline) -> Built {
    let bare = |job| Built { job, graph: None, sync: None };
    if !c.enabled() {
        return bare(job(c.name(), c.kind(), describe(c), Work::Disabled));
    }
    let built = match c {
        Connection::Imap(i) => connect::poller(archive, &defs.m365, i, pipeline.clone()).await.map(|poller| {
            let interval = Duration::from_secs(i.poll_interval_secs.max(1));
            bare(job(&i.name, "IMAP", describe(c), Work::Imap { poller: Box::new(poller), interval }))
        }),
        Connection::M365(m) => build_m365(archive, m, pipeline).await,
    };
    built.unwrap_or_else(|e| bare(not_started(c.name(), c.kind(), describe(c), &e)))
}

/// A connection that could not be built, listed with why.
fn not_started(name: &str, kind: &'static str, settings: Vec<(String, String)>, error: &ArchiveError) -> Arc<Job> {
    tracing::error!(connection = %name, error = %error, "source connection not started");
    let why = error.to_string();
    let job = job(name, kind, settings, Work::NotStarted { why: why.clone() });
    job.update(|s| {
        s.state = "not started".into();
        s.last_error = Some(why);
    });
    job
}

impl Supervisor {
    /// Builds and starts every configured source. A connection that cannot start (a missing
    /// certificate, say) is listed with its error, and the others run.
    pub async fn start(archive: &Arc<Archive>, defs: &Definitions, pipeline: Pipeline) -> Arc<Supervisor> {
        let supervisor = Arc::new(Supervisor {
            jobs: Default::default(),
            syncs: Default::default(),
            directories: Default::default(),
            defs: Mutex::new(defs.clone()),
            context: Some((archive.clone(), pipeline)),
            changing: Default::default(),
        });
        for c in defs.all() {
            supervisor.rebuild(&c, defs).await;
        }
        supervisor
    }

    fn job(&self, name: &str) -> Result<Arc<Job>, ArchiveError> {
        self.jobs.lock().unwrap().iter().find(|j| j.name == name).cloned().ok_or(ArchiveError::NotFound)
    }

    /// Builds the connection and puts it in place of the one of that name, which stops for good.
    async fn rebuild(&self, c: &Connection, defs: &Definitions) -> Arc<Job> {
        let Some((archive, pipeline)) = &self.context else {
            unreachable!("a supervisor without an archive builds nothing")
        };
        let built = build(archive, c, defs, pipeline).await;
        self.retire(c.name());
        let job = built.job;
        if let Some((directory, graph)) = built.graph {
            self.directories.lock().unwrap().push((c.name().to_owned(), directory, graph));
        }
        self.syncs.lock().unwrap().extend(built.sync);
        if matches!(job.work, Work::Imap { .. } | Work::M365 { .. }) {
            tokio::spawn(job.clone().supervise());
        }
        self.jobs.lock().unwrap().push(job.clone());
        job
    }

    /// Stops the connection of that name for good (its run cut, its loop and webhook sync ended)
    /// and forgets it.
    fn retire(&self, name: &str) {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(i) = jobs.iter().position(|j| j.name == name) {
            let old = jobs.remove(i);
            old.retired.store(true, Ordering::SeqCst);
            old.stopped.store(true, Ordering::SeqCst);
            if let Some(run) = old.running.lock().unwrap().take() {
                run.abort();
            }
            old.wake.notify_one();
        }
        self.directories.lock().unwrap().retain(|(c, _, _)| c != name);
        self.syncs.lock().unwrap().retain(|s| {
            let keep = s.connection != name;
            if !keep {
                s.tasks.iter().for_each(|t| t.abort());
            }
            keep
        });
    }

    /// Builds a connection that could not start again (after Update Manifest made its
    /// certificate, say) and starts it; Some(what happened) when it had not started.
    pub async fn retry(&self, name: &str) -> Option<Result<String, String>> {
        let _one_at_a_time = self.changing.lock().await;
        let old = self.job(name).ok()?;
        if !matches!(old.work, Work::NotStarted { .. }) {
            return None;
        }
        let defs = self.defs.lock().unwrap().clone();
        let c = defs.find(name)?;
        let job = self.rebuild(&c, &defs).await;
        Some(match &job.work {
            Work::NotStarted { why } => Err(why.clone()),
            _ => Ok(format!("{name} started")),
        })
    }

    /// Runs the connection as now configured; IMAP connections taking their token from it are
    /// built again too.
    pub async fn apply(&self, c: Connection, defs: Definitions) -> String {
        let _one_at_a_time = self.changing.lock().await;
        *self.defs.lock().unwrap() = defs.clone();
        let job = self.rebuild(&c, &defs).await;
        if let Connection::M365(m) = &c {
            for i in defs.imap.iter().filter(|i| i.m365.as_deref() == Some(m.name.as_str())) {
                self.rebuild(&Connection::Imap(i.clone()), &defs).await;
            }
        }
        match &job.work {
            Work::Disabled => "saved; disabled, it does not run".into(),
            Work::NotStarted { why } => format!("saved; not started: {why}"),
            Work::Imap { .. } => "saved and running; it polls on its schedule".into(),
            Work::M365 { .. } => "saved and ready; Start runs the import".into(),
        }
    }

    /// Stops and forgets the connection.
    pub async fn remove(&self, name: &str) {
        let _one_at_a_time = self.changing.lock().await;
        self.defs.lock().unwrap().remove(name);
        self.retire(name);
    }

    fn directory(&self, directory: &str) -> Option<Arc<Graph>> {
        self.directories
            .lock()
            .unwrap()
            .iter()
            .find(|(_, t, _)| t.eq_ignore_ascii_case(directory))
            .map(|(_, _, g)| g.clone())
    }

    /// Stops every job (at shutdown): runs in progress are cut where they are.
    pub fn stop_all(&self) {
        for j in self.jobs.lock().unwrap().iter() {
            j.stopped.store(true, Ordering::SeqCst);
            if let Some(run) = j.running.lock().unwrap().take() {
                run.abort();
            }
        }
    }
}

fn job(name: &str, kind: &'static str, settings: Vec<(String, String)>, work: Work) -> Arc<Job> {
    // What the job is until its loop first says otherwise, so a listing right after a start
    // never shows an empty state.
    let state = match &work {
        Work::Imap { .. } => "waiting",
        Work::M365 { .. } => "on demand",
        Work::NotStarted { .. } => "not started",
        Work::Disabled => "disabled",
    };
    Arc::new(Job {
        name: name.to_owned(),
        kind,
        settings,
        work,
        state: Mutex::new(JobState { state: state.into(), ..Default::default() }),
        wake: Notify::new(),
        stopped: AtomicBool::new(false),
        requested: AtomicBool::new(false),
        retired: AtomicBool::new(false),
        running: Mutex::new(None),
    })
}

impl SourceControl for Supervisor {
    fn connections(&self) -> Vec<ConnectionInfo> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .map(|j| {
                let mut job = j.state.lock().unwrap().clone();
                if let Work::Imap { poller, .. } = &j.work
                    && job.state == "running"
                {
                    job.backlog = poller.backlog().map(|(folder, n)| format!("{n} messages waiting in {folder}"));
                }
                ConnectionInfo { name: j.name.clone(), kind: j.kind.into(), settings: j.settings.clone(), job }
            })
            .collect()
    }

    fn test(&self, name: &str) -> BoxFuture<Result<String, String>> {
        let job = self.job(name);
        Box::pin(async move {
            let job = job.map_err(|_| "no such connection".to_owned())?;
            match &job.work {
                Work::Imap { poller, .. } => connect::test_imap(poller).await,
                Work::M365 { importer } => connect::test_m365(importer.graph.clone()).await,
                Work::NotStarted { why } => Err(why.clone()),
                Work::Disabled => Err("disabled: enable it in its settings first".into()),
            }
        })
    }

    fn start(&self, name: &str) -> Result<String, ArchiveError> {
        let job = self.job(name)?;
        let started = match &job.work {
            Work::NotStarted { why } => {
                return Err(ArchiveError::Invalid(format!("{name} could not be started: {why}")));
            }
            Work::Disabled => {
                return Err(ArchiveError::Invalid(format!("{name} is disabled: enable it in its settings first")));
            }
            Work::Imap { .. } => "poll started; it polls on its schedule again".to_owned(),
            Work::M365 { importer } => {
                format!("import started ({}); it continues where the last one stopped", importer.graph.config.choices())
            }
        };
        if job.running.lock().unwrap().is_some() {
            return Err(ArchiveError::Invalid(format!("{name} is running already")));
        }
        job.stopped.store(false, Ordering::SeqCst);
        job.requested.store(true, Ordering::SeqCst);
        job.wake.notify_one();
        Ok(started)
    }

    fn stop(&self, name: &str) -> Result<String, ArchiveError> {
        let job = self.job(name)?;
        job.stopped.store(true, Ordering::SeqCst);
        // Said now, so the answer to Stop shows it; the loop, after the flag, never says otherwise.
        job.update(|s| {
            s.state = "stopped".into();
            s.next_run = None;
        });
        let cut = job.running.lock().unwrap().take().map(|run| run.abort()).is_some();
        job.wake.notify_one();
        Ok(if cut {
            "stopped: the run in progress was cut; what it archived is kept, and the next run continues from there"
                .into()
        } else {
            "stopped: no run starts until it is started again".into()
        })
    }

    fn mailboxes(&self, name: &str) -> Vec<MailboxStatus> {
        let Ok(job) = self.job(name) else { return Vec::new() };
        let Work::M365 { importer } = &job.work else { return Vec::new() };
        importer
            .board
            .rows()
            .into_iter()
            .map(|m| MailboxStatus {
                mailbox: m.mailbox,
                state: m.state,
                folders: m.report.folders,
                archived: m.report.archived,
                duplicates: m.report.duplicates,
                events: m.report.events,
                contacts: m.report.contacts,
                last_sync: m.last_sync.map(coffer_archive::service::rfc3339),
                last_error: m.last_error,
            })
            .collect()
    }

    fn webhook(&self, notification: &serde_json::Value) -> Option<Result<usize, String>> {
        let syncs: Vec<_> = self.syncs.lock().unwrap().iter().map(|s| s.sync.clone()).collect();
        if syncs.is_empty() {
            return None;
        }
        let mut why = String::new();
        for s in &syncs {
            match s.notified(notification) {
                Ok(n) => return Some(Ok(n)),
                Err(coffer_m365::sync::Refused(r)) => why = r,
            }
        }
        Some(Err(why))
    }

    fn directory_addresses(&self, directory: &str, object_id: &str) -> Option<BoxFuture<Result<Vec<String>, String>>> {
        let graph = self.directory(directory)?;
        let oid = object_id.to_owned();
        Some(Box::pin(async move {
            tokio::task::spawn_blocking(move || coffer_m365::graph::directory_addresses(&graph, &oid))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }))
    }

    fn retry<'a>(&'a self, name: &'a str) -> coffer_archive::listeners::Pending<'a, Option<Result<String, String>>> {
        Box::pin(Supervisor::retry(self, name))
    }

    fn apply(&self, c: Connection, all: Definitions) -> coffer_archive::listeners::Pending<'_, String> {
        Box::pin(Supervisor::apply(self, c, all))
    }

    fn remove<'a>(&'a self, name: &'a str) -> coffer_archive::listeners::Pending<'a, ()> {
        Box::pin(Supervisor::remove(self, name))
    }

    fn directory_lookup(
        &self,
        directory: &str,
        user: &str,
    ) -> Option<BoxFuture<Result<Option<coffer_archive::sources::DirectoryEntry>, String>>> {
        let graph = self.directory(directory)?;
        let user = user.to_owned();
        Some(Box::pin(async move {
            tokio::task::spawn_blocking(move || coffer_m365::graph::lookup(&graph, &user))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let waits: Vec<u64> = (1..=12).map(|f| backoff(f, hour).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]);
        assert_eq!(backoff(3, Duration::from_secs(1)), FIRST_BACKOFF);
        assert_eq!(backoff(u32::MAX, hour), hour);
    }

    #[test]
    fn a_stopped_connection_says_stopped_at_once_whatever_its_loop_is_doing() {
        let j = job("journal", "IMAP", Vec::new(), Work::NotStarted { why: "unreachable".into() });
        j.update(|s| {
            s.state = "backing off".into();
            s.next_run = Some(now_secs() + 60);
        });
        let supervisor = Supervisor {
            jobs: Mutex::new(vec![j.clone()]),
            syncs: Default::default(),
            directories: Default::default(),
            defs: Default::default(),
            context: None,
            changing: Default::default(),
        };
        supervisor.stop("journal").unwrap();
        let state = j.state.lock().unwrap().clone();
        assert_eq!((state.state.as_str(), state.next_run), ("stopped", None), "the page rendered after Stop shows it");
        // The loop, finishing a run that failed just then, does not turn it back.
        j.after_run(3, Duration::from_secs(60));
        assert_eq!(j.state.lock().unwrap().state, "stopped");
    }
}

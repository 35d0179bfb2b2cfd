//! Keeping the archive in step with the mailboxes after the historical import: a Graph
//! subscription per mailbox sends change notifications to Coffer's webhook (`/o365`); each
//! notification's `clientState` is checked, the mailbox is queued, and a worker runs the same
//! delta sync as the import (only what changed since the stored delta links). Lifecycle events:
//! `missed` → resync, `reauthorizationRequired` → renew, `subscriptionRemoved` → create anew.
//! Subscriptions are renewed at half the lifetime Graph granted, and recreated when lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::M365Error;
use crate::graph::Failure;
use crate::import::{Importer, failure};

/// Requested lifetime of a mail subscription (Graph allows a little under seven days).
const LIFETIME_MINUTES: i64 = 4230;
/// How often the mailboxes in scope are listed again.
const USERS_LISTED_EVERY: Duration = Duration::from_secs(15 * 60);

pub struct Sync {
    pub importer: Arc<Importer>,
    pub webhook_url: String,
    pub client_state: String,
    /// user id → user principal name, for the mailboxes in scope (listed again every
    /// [`USERS_LISTED_EVERY`], so new mailboxes get a subscription).
    users: Mutex<HashMap<String, String>>,
    users_listed: Mutex<Option<Instant>>,
    /// Mailboxes whose subscription failed: when to try again, and how many failures in a row.
    backoff: Mutex<HashMap<String, (Instant, u32)>>,
    queue: mpsc::UnboundedSender<String>,
    /// Mailbox syncs done (for tests and the status).
    pub syncs: std::sync::atomic::AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Sync {
    pub fn new(
        importer: Arc<Importer>,
        webhook_url: String,
        client_state: String,
    ) -> (Arc<Sync>, mpsc::UnboundedReceiver<String>) {
        let (queue, rx) = mpsc::unbounded_channel();
        let sync = Sync {
            importer,
            webhook_url,
            client_state,
            users: Mutex::default(),
            users_listed: Mutex::default(),
            backoff: Mutex::default(),
            queue,
            syncs: Default::default(),
        };
        (Arc::new(sync), rx)
    }

    fn subscriptions_key(&self) -> String {
        format!("{}:subscriptions", self.importer.connection())
    }

    /// A POST to the webhook: every item must carry our client state; the mailboxes are queued.
    /// (The caller answers 202 at once; the work happens in [`Sync::run`].)
    pub fn notified(&self, body: &Value) -> Result<usize, Refused> {
        let items = body["value"].as_array().ok_or_else(|| Refused("no value list".into()))?;
        if items.iter().any(|n| n["clientState"].as_str() != Some(self.client_state.as_str())) {
            return Err(Refused("a notification carries the wrong clientState".into()));
        }
        for n in items {
            let user = n["resource"].as_str().and_then(user_of).map(str::to_owned);
            let event = n["lifecycleEvent"].as_str();
            tracing::info!(?user, ?event, change = n["changeType"].as_str(), "Graph notification");
            match (event, user) {
                (Some("reauthorizationRequired" | "subscriptionRemoved"), Some(u)) => {
                    // Renewed or recreated by the keeper; a sync covers what happened meanwhile.
                    let _ = self.queue.send(format!("renew:{u}"));
                    let _ = self.queue.send(u);
                }
                (_, Some(u)) => {
                    let _ = self.queue.send(u);
                }
                (_, None) => {}
            }
        }
        Ok(items.len())
    }

    /// Runs queued mailbox syncs (several notifications for one mailbox make one sync). A failed
    /// sync is queued again after a pause that doubles with each failure in a row (2 s up to
    /// 5 min): a notification is a promise that something changed, and is not dropped.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<String>) {
        let mut failures: HashMap<String, u32> = HashMap::new();
        while let Some(first) = rx.recv().await {
            let mut batch = BTreeSet::from([first]);
            while let Ok(more) = rx.try_recv() {
                batch.insert(more);
            }
            for entry in batch {
                let result = match entry.strip_prefix("renew:") {
                    Some(user) => self.subscribe(user).await.map(|_| ()),
                    None => self.sync_mailbox(&entry).await,
                };
                match result {
                    Ok(()) => {
                        failures.remove(&entry);
                    }
                    Err(e) => {
                        let row = failures.entry(entry.clone()).or_default();
                        *row += 1;
                        let pause = retry_pause(*row);
                        tracing::warn!(mailbox = %entry, error = %e, retry_in = ?pause, "Microsoft 365 sync failed");
                        let queue = self.queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(pause).await;
                            let _ = queue.send(entry);
                        });
                    }
                }
            }
        }
    }

    async fn sync_mailbox(&self, user: &str) -> Result<(), M365Error> {
        let upn = self.users.lock().unwrap().get(user).cloned();
        let Some(upn) = upn else { return Ok(()) };
        let report = self.importer.mailbox(user, &upn, &|_| {}).await?;
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(mailbox = %upn, archived = report.archived, moved_out = report.moved_out, "Microsoft 365 mailbox synced");
        Ok(())
    }

    /// Creates the mailbox's subscription (Graph validates the webhook before it answers).
    async fn subscribe(&self, user: &str) -> Result<(), M365Error> {
        let body = json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": self.webhook_url,
            "lifecycleNotificationUrl": self.webhook_url,
            "resource": format!("users/{user}/messages"),
            "expirationDateTime": rfc3339(coffer_archive::service::now_secs() + LIFETIME_MINUTES * 60),
            "clientState": self.client_state,
        });
        let graph = self.importer.graph.clone();
        let created = tokio::task::spawn_blocking(move || graph.send("POST", "/v1.0/subscriptions", &body))
            .await
            .map_err(|e| M365Error::Advice(e.to_string()))?
            .map_err(failure)?;
        self.remember(user, &created).await
    }

    async fn remember(&self, user: &str, subscription: &Value) -> Result<(), M365Error> {
        let id = subscription["id"].as_str().unwrap_or_default();
        let expires = subscription["expirationDateTime"].as_str().and_then(parse_rfc3339).unwrap_or(0);
        let now = coffer_archive::service::now_secs();
        // Renew at half the lifetime Graph granted.
        let renew_at = now + (expires - now).max(0) / 2;
        let value = format!("{id}|{expires}|{renew_at}");
        self.importer.state.set_cursor(&self.subscriptions_key(), user, &value).await?;
        Ok(())
    }

    /// Subscribes every mailbox in scope, then renews each subscription at half its lifetime and
    /// recreates lost ones, for as long as the server runs.
    pub async fn keep_subscriptions(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            let pause = match self.tend().await {
                Ok(()) => {
                    failures = 0;
                    Duration::from_secs(1)
                }
                Err(e) => {
                    failures += 1;
                    let pause = retry_pause(failures);
                    tracing::warn!(error = %e, retry_in = ?pause, "Microsoft 365 subscriptions: cannot list the mailboxes");
                    pause
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One round: the mailboxes listed again when due, then each one's subscription created,
    /// renewed or left alone. One mailbox's trouble neither stops the others nor is retried
    /// every second: it waits as a failed sync does. A user without a mailbox is left out until
    /// the next listing.
    async fn tend(&self) -> Result<(), M365Error> {
        let due = self.users_listed.lock().unwrap().is_none_or(|at| at.elapsed() >= USERS_LISTED_EVERY);
        if due {
            let users = self.importer.users().await?;
            *self.users.lock().unwrap() = users.into_iter().collect();
            *self.users_listed.lock().unwrap() = Some(Instant::now());
        }
        let users: Vec<(String, String)> =
            self.users.lock().unwrap().iter().map(|(id, upn)| (id.clone(), upn.clone())).collect();
        for (user, upn) in users {
            if self.backoff.lock().unwrap().get(&user).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            match self.tend_one(&user).await {
                Ok(()) => {
                    self.backoff.lock().unwrap().remove(&user);
                }
                Err(M365Error::NoMailbox) => {
                    tracing::info!(mailbox = %upn, "no Exchange Online mailbox: no subscription until the users are listed again");
                    self.users.lock().unwrap().remove(&user);
                }
                Err(e) => {
                    let mut backoff = self.backoff.lock().unwrap();
                    let row = backoff.entry(user).or_insert((Instant::now(), 0));
                    row.1 += 1;
                    row.0 = Instant::now() + retry_pause(row.1);
                    tracing::warn!(mailbox = %upn, error = %e, retry_in = ?retry_pause(row.1), "Microsoft 365 subscription failed");
                }
            }
        }
        Ok(())
    }

    async fn tend_one(&self, user: &str) -> Result<(), M365Error> {
        let now = coffer_archive::service::now_secs();
        let state = self.importer.state.cursor(&self.subscriptions_key(), user).await?;
        let parts: Vec<&str> = state.as_deref().unwrap_or("").split('|').collect();
        let (id, expires, renew_at) = match parts.as_slice() {
            [id, e, r] => (id.to_string(), e.parse().unwrap_or(0), r.parse().unwrap_or(0)),
            _ => (String::new(), 0, 0),
        };
        if id.is_empty() || expires <= now {
            self.subscribe(user).await?;
        } else if renew_at <= now {
            let body = json!({"expirationDateTime": rfc3339(now + LIFETIME_MINUTES * 60)});
            let graph = self.importer.graph.clone();
            let path = format!("/v1.0/subscriptions/{id}");
            match tokio::task::spawn_blocking(move || graph.send("PATCH", &path, &body)).await {
                Ok(Ok(renewed)) => self.remember(user, &renewed).await?,
                Ok(Err(Failure::NotFound)) => self.subscribe(user).await?,
                Ok(Err(e)) => return Err(failure(e)),
                Err(e) => return Err(M365Error::Advice(e.to_string())),
            }
        }
        Ok(())
    }
}

/// The pause before the `failures`-th retry in a row (of a sync, a subscription or the listing
/// of the mailboxes): 2 s, doubling, at most 5 minutes.
fn retry_pause(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(9)).min(300))
}

/// `Users/{id}/Messages/{id}` or `users/{id}/messages` → the user id.
fn user_of(resource: &str) -> Option<&str> {
    let mut parts = resource.split('/');
    parts.next().filter(|p| p.eq_ignore_ascii_case("users"))?;
    parts.next()
}

fn rfc3339(t: i64) -> String {
    coffer_archive::service::rfc3339(t)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|d| d.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_is_retried_sooner_first_and_at_most_every_five_minutes() {
        let pauses: Vec<u64> = (1..=12).map(|n| retry_pause(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
    }

    #[test]
    fn the_user_comes_from_either_spelling_of_the_resource() {
        assert_eq!(user_of("Users/abc/Messages/xyz"), Some("abc"));
        assert_eq!(user_of("users/abc/messages"), Some("abc"));
        assert_eq!(user_of("groups/abc"), None);
    }
}

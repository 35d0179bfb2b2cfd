//! Source connections from the command line: IMAP (poll once, test) and Microsoft 365 (the app
//! manifest, a test, the historical import). The connections are the catalog's (with the
//! configuration file's seed applied, as `serve` applies it), built the way the server's
//! supervisor builds them (`coffer_sources::connect`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use coffer_sources::{Definitions, connect};

use crate::cli::{ImapCommand, M365Command};
use crate::config::Config;
use crate::{open, operator};

pub async fn imap(config: &Config, command: ImapCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImapCommand::Poll { name } => {
            let archive = open(config, true).await?;
            let defs = archive.admin().seed_connections(&config.sources(), true).await?;
            let pipeline = archive.pipeline();
            let mut failed = false;
            if let Some(n) = &name {
                imap_connection(&defs, n)?;
            }
            for imap in defs.imap.iter().filter(|i| i.enabled && name.as_ref().is_none_or(|n| *n == i.name)) {
                let poller = connect::poller(&archive, &defs.m365, imap, pipeline.clone())
                    .await
                    .with_context(|| format!("imap connection {}", imap.name))?;
                match poller.poll_once().await {
                    Ok(r) => {
                        for (folder, uid, why) in &r.refused {
                            eprintln!("{}: {folder} UID {uid} refused, left on the server: {why}", imap.name);
                        }
                        println!(
                            "{}: fetched {}, archived {}, duplicates {}, removed from the server {}, refused {}",
                            imap.name,
                            r.fetched,
                            r.archived,
                            r.duplicates,
                            r.removed,
                            r.refused.len()
                        )
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", imap.name);
                        failed = true;
                    }
                }
            }
            archive.indexer().run_until_idle().await?;
            archive.close().await?;
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        ImapCommand::Test { name } => {
            let archive = open(config, false).await?;
            let defs = archive.admin().seed_connections(&config.sources(), false).await?;
            let imap = imap_connection(&defs, &name)?;
            let poller = connect::poller(&archive, &defs.m365, imap, archive.pipeline())
                .await
                .with_context(|| format!("imap connection {}", imap.name))?;
            let folders = poller.test().await?;
            println!(
                "{name}: connected to {}:{} ({:?}), logged in as {}",
                imap.host, imap.port, imap.security, imap.username
            );
            for (folder, messages) in folders {
                println!("  {folder:<40} {messages} messages");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn imap_connection<'a>(defs: &'a Definitions, name: &str) -> anyhow::Result<&'a coffer_imap::ImapConfig> {
    defs.imap.iter().find(|i| i.name == name).ok_or_else(|| {
        anyhow::anyhow!("no IMAP connection named {name:?} (Configuration → Connections, or [[imap]] in coffer.toml)")
    })
}

fn m365_connection<'a>(defs: &'a Definitions, name: Option<&str>) -> anyhow::Result<&'a coffer_m365::M365Config> {
    match name {
        Some(n) => defs.m365.iter().find(|c| c.name == n).ok_or_else(|| {
            anyhow::anyhow!(
                "no Microsoft 365 connection named {n:?} (Configuration → Connections, or [[m365]] in coffer.toml)"
            )
        }),
        None => defs.m365.first().ok_or_else(|| {
            anyhow::anyhow!(
                "no Microsoft 365 connection (add one under Configuration → Connections, or [[m365]] in coffer.toml; see README: Microsoft 365)"
            )
        }),
    }
}

pub async fn m365(config: &Config, command: M365Command) -> anyhow::Result<ExitCode> {
    match command {
        M365Command::Manifest { alias, cn, subject, input, output } => {
            let archive = open(config, false).await?;
            let manifest = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
            let actor = operator(&archive, None).await?;
            let (updated, made) =
                archive.admin().update_app_manifest(&actor, &alias, &subject.with_cn(cn), &manifest).await?;
            if let Some(info) = made {
                println!("made certificate {} (RSA 2048, SHA-1 {})", info.alias, info.sha1);
            }
            std::fs::write(&output, serde_json::to_vec_pretty(&updated)?)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "wrote {}: upload it in the Azure portal (App registrations → your app → Manifest → Upload)",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        M365Command::Test { name } => {
            let archive = open(config, false).await?;
            let defs = archive.admin().seed_connections(&config.sources(), false).await?;
            let c = m365_connection(&defs, name.as_deref())?;
            match connect::test_m365(Arc::new(connect::graph(&archive, c)?)).await {
                Ok(text) => {
                    println!("{}: {text}", c.name);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", c.name);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        M365Command::Import { name, user } => import(config, name.as_deref(), user.as_deref()).await,
    }
}

/// The historical import of one connection's mailboxes (or one of them), with a line per mailbox.
async fn import(config: &Config, name: Option<&str>, user: Option<&str>) -> anyhow::Result<ExitCode> {
    let archive = open(config, true).await?;
    let defs = archive.admin().seed_connections(&config.sources(), true).await?;
    let c = m365_connection(&defs, name)?;
    let graph = Arc::new(connect::graph(&archive, c)?);
    let importer = connect::importer(&archive, c, graph, archive.pipeline()).await?;
    let indexer = archive.spawn_indexer();
    let actor = operator(&archive, c.tenant.as_deref()).await?;
    let mut total = (0, 0, 0);
    let mut failed = Vec::new();
    // A spinner on a terminal; elsewhere the line per mailbox below is the progress.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let finished = AtomicUsize::new(0);
    let progress = |r: &coffer_m365::import::MailboxReport| {
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{} mailboxes done; {}: {} folders, {} archived, {} already there",
                finished.load(Ordering::Relaxed),
                r.mailbox,
                r.folders,
                r.archived,
                r.duplicates
            ));
        }
    };
    let users = connect::import_once(&archive, &actor, &importer, user, &progress, &mut |result| {
        finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(report) if report.no_mailbox => {
                println!("{}: skipped: {}", report.mailbox, coffer_m365::M365Error::NoMailbox)
            }
            Ok(report) => {
                println!(
                    "{}: {} folders, fetched {}, archived {}, duplicates {}, folders read again after 410: {}",
                    report.mailbox,
                    report.folders,
                    report.fetched,
                    report.archived,
                    report.duplicates,
                    report.restarted
                );
                total.0 += report.fetched;
                total.1 += report.archived;
                total.2 += report.duplicates;
            }
            Err((upn, e)) => {
                println!("{upn}: failed: {e}");
                failed.push(upn);
            }
        }
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    indexer.abort();
    archive.indexer().run_until_idle().await?;
    archive.close().await?;
    println!(
        "done: {} mailboxes, fetched {}, archived {}, duplicates {}, failed {}",
        users.len(),
        total.0,
        total.1,
        total.2,
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!(
            "{} mailboxes failed ({}); what they had archived is kept, and the next import continues where each stopped",
            failed.len(),
            failed.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

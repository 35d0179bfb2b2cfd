//! The `coffer` binary: command line, configuration and wiring. Every capability lives in a
//! library crate; each command group's file only turns arguments into calls and answers into
//! lines: [`serve`] (the server), [`mail`] (import, search, show, export, verify, reindex),
//! [`admin`] (tenants, users, volumes, certificates, secrets, audit, status), [`sources`] (IMAP
//! and Microsoft 365 connections).

mod admin;
mod cli;
mod config;
mod mail;
mod serve;
mod sources;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use coffer_archive::{Actor, Archive};

use cli::{Cli, Command};
use config::Config;

/// The argument that makes this binary the indexer's extraction worker (not a user command).
const EXTRACT_WORKER: &str = "extract-worker";

fn main() -> ExitCode {
    // Everything Coffer writes (catalog, index, certificates, exports) is for its owner alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // The indexer's extraction worker (one attachment, stdin to stdout, under the limits its
    // parent set): before anything else starts, so that it holds no runtime and no files.
    if std::env::args_os().nth(1).is_some_and(|a| a == EXTRACT_WORKER) {
        return coffer_extract::worker::serve(|item| {
            coffer_outlook::read_msg_bytes(item.to_vec()).ok().map(|(_, mime)| mime)
        });
    }
    let cli = Cli::parse();
    let filter = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    // Attachments are read by this same binary, in a worker process with limits.
    config.archive.extract.worker = std::env::current_exe().ok().map(|exe| (exe, vec![EXTRACT_WORKER.into()]));
    if let Some(data) = cli.data {
        config.archive.data_dir = data;
    }
    match cli.command {
        Command::Serve { smtp, http } => {
            if let Some(a) = smtp {
                config.smtp.listen = a;
            }
            if let Some(a) = http {
                config.http.listen = a;
            }
            serve::serve(config).await
        }
        Command::Import { tenant, mailbox, folder, no_journal, as_eml, verbose, paths } => {
            let archive = open(&config, true).await?;
            let tenant = archive.tenant(tenant.as_deref()).await?;
            let options = coffer_archive::import::ImportOptions {
                tenant: tenant.id,
                mailbox,
                folder,
                journal: !no_journal,
                as_eml,
            };
            mail::import(&archive, &paths, &options, verbose).await
        }
        Command::Search { tenant, json, limit, offset, count, sort, query } => {
            let archive = open(&config, false).await?;
            let actor = operator(&archive, tenant.as_deref()).await?;
            mail::search(&archive, &actor, &query.join(" "), mail::Listing { json, limit, offset, count, sort }).await
        }
        Command::Show { tenant, raw, id } => {
            let archive = open(&config, false).await?;
            mail::show(&archive, &operator(&archive, tenant.as_deref()).await?, id, raw).await
        }
        Command::Export { tenant, format, out, skip_damaged, query } => {
            let archive = open(&config, false).await?;
            let actor = operator(&archive, tenant.as_deref()).await?;
            mail::export(&archive, &actor, &query.join(" "), format, &out, skip_damaged).await
        }
        // Read only: it runs beside `coffer serve` and never repairs (recovery is the writer's).
        Command::Verify { json } => mail::verify(&open(&config, false).await?, json).await,
        Command::Reindex => {
            // Beside `coffer serve` the store is read only here, and the server's indexer does the work.
            let archive = match open(&config, true).await {
                Err(e) if e.downcast_ref::<coffer_archive::ArchiveError>().is_some_and(|e| e.is_store_busy()) => {
                    open(&config, false).await?
                }
                other => other?,
            };
            mail::reindex(&archive).await
        }
        Command::Timestamp => {
            let n = open(&config, true).await?.timestamp_now().await?;
            eprintln!("stored {n} timestamp tokens");
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out } => {
            let archive = open(&config, false).await?;
            admin::backup(&archive, &operator(&archive, None).await?, &out).await
        }
        Command::Restore { from } => admin::restore(&from, &config.archive.data_dir),
        Command::Catalog { command: cli::CatalogCommand::Rebuild } => mail::rebuild(&config.archive).await,
        Command::Volume { command } => {
            let writable = matches!(command, cli::VolumeCommand::Close { .. });
            let archive = open(&config, writable).await?;
            admin::volume(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Tenant { command } => {
            let archive = open(&config, false).await?;
            admin::tenant(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Cert { command } => {
            let archive = open(&config, false).await?;
            admin::cert(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Secret { command } => {
            let archive = open(&config, false).await?;
            admin::secret(&archive, &operator(&archive, None).await?, command).await
        }
        Command::User { command } => {
            let archive = open(&config, false).await?;
            admin::user(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Hold { command } => {
            let archive = open(&config, false).await?;
            admin::hold(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Retention { command } => {
            // A run that deletes needs the store's writer; beside `serve` it is handed over.
            let writable = matches!(command, cli::RetentionCommand::Run { dry_run: false, .. });
            let archive = match open(&config, writable).await {
                Err(e) if e.downcast_ref::<coffer_archive::ArchiveError>().is_some_and(|e| e.is_store_busy()) => {
                    open(&config, false).await?
                }
                other => other?,
            };
            admin::retention(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Audit { command } => {
            let archive = open(&config, false).await?;
            admin::audit(&archive, &operator(&archive, None).await?, command).await
        }
        Command::Status { json } => {
            let archive = open(&config, false).await?;
            admin::status(&archive, &operator(&archive, None).await?, json).await
        }
        Command::Imap { command } => sources::imap(&config, command).await,
        Command::M365 { command } => sources::m365(&config, command).await,
    }
}

/// Opens the archive of the configuration; `writable` takes the store's writer lock.
async fn open(config: &Config, writable: bool) -> anyhow::Result<Archive> {
    Archive::open(config.archive.clone(), writable)
        .await
        .with_context(|| format!("cannot open the archive in {}", config.archive.data_dir.display()))
}

/// The operator at this machine's command line, working in `tenant` (default: the default tenant).
async fn operator(archive: &Archive, tenant: Option<&str>) -> anyhow::Result<Actor> {
    Ok(Actor::operator(archive.tenant(tenant).await?))
}

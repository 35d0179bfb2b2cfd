//! `coffer serve`: the archive, its indexer, the source supervisor, the SMTP listeners and the
//! console, until SIGTERM or Ctrl-C; then a tidy shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use coffer_archive::listeners::ListenerControl;
use coffer_archive::sources::SourceControl;

use crate::config::Config;
use crate::{open, operator};

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    raise_open_file_limit(2 * (config.smtp.max_connections as u64 + config.http.max_connections as u64) + 256);
    let archive = Arc::new(open(&config, true).await?);
    let pipeline = archive.pipeline();
    let indexer = archive.spawn_indexer();
    // Pictures are read (OCR, when on) after plain indexing, from a queue of their own.
    let ocr = archive.ocr().map(|o| o.spawn());
    let timestamper = archive.timestamper()?.map(|t| t.spawn());
    // Runs asked for beside this process, and the daily schedule.
    let retention = archive.spawn_retention();
    tracing::info!(data = %config.archive.data_dir.display(), "Coffer is serving; the index catches up in the background");
    for t in archive.admin().tenants(&operator(&archive, None).await?).await? {
        tracing::info!(tenant = %t.tenant.name, journal = %t.journal_address, "tenant");
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // The connections in the catalog; coffer.toml's [[imap]] and [[m365]] seed them.
    let connections = archive.admin().seed_connections(&config.sources(), true).await?;
    let supervisor = coffer_sources::Supervisor::start(&archive, &connections, pipeline.clone()).await;
    // The listeners in the catalog; coffer.toml's [smtp] seeds them.
    let listeners = archive.admin().seed_listeners(&config.smtp.seeds()).await?;
    let smtp = coffer_smtp::listeners::start(archive.clone(), &config.smtp, &listeners, pipeline).await?;
    for l in &listeners {
        if let Some(bound) = smtp.bound(&l.name) {
            // A plain line scripts and tests can wait for.
            println!("smtp listening on {bound}");
        }
    }
    let web = match config.http.enabled {
        true => {
            let shared = config.smtp.describe_shared(archive.config.max_message_bytes);
            let sources: Arc<dyn SourceControl> = supervisor.clone();
            let listeners: Arc<dyn ListenerControl> = smtp.clone();
            let (task, bound) =
                coffer_web::start(archive.clone(), &config.http, shared, sources, listeners, stopping.clone()).await?;
            println!("http listening on {bound}");
            Some(task)
        }
        false => None,
    };
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections; finishing the transactions in flight");
    let _ = stop.send(true);
    supervisor.stop_all();
    smtp.finish().await;
    if let Some(web) = web {
        let _ = tokio::time::timeout(Duration::from_secs(5), web).await;
    }
    indexer.abort();
    if let Some(o) = ocr {
        o.abort();
    }
    retention.abort();
    if let Some(t) = timestamper {
        t.abort();
    }
    // Leave the index caught up with what was acknowledged (it would catch up at the next start).
    if tokio::time::timeout(Duration::from_secs(60), archive.indexer().run_until_idle()).await.is_err() {
        tracing::warn!("the index is still catching up; it continues at the next start");
    }
    archive.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// Raises the open-file limit to what the system allows (each connection takes a descriptor) and
/// says so when even that is lower than the listeners' connection caps need.
fn raise_open_file_limit(needed: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), hard) = (limit.current, limit.maximum)
        && hard.is_none_or(|h| h > current)
    {
        limit.current = Some(hard.unwrap_or(1 << 20).min(1 << 20));
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if let Some(n) = now
        && n < needed
    {
        tracing::warn!(
            limit = n,
            needed,
            "the open-file limit is below what the connection caps need; raise it (systemd: LimitNOFILE=65536; shell: ulimit -n)"
        );
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

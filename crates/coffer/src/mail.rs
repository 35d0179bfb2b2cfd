//! Mail commands: import, search, show, export, verify, reindex.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use coffer_archive::export::ExportFormat;
use coffer_archive::import::{ImportEvent, ImportOptions};
use coffer_archive::{Actor, Archive, Sort};

use crate::cli::{FormatArg, SortArg};

/// How `search` lists its results.
pub struct Listing {
    pub json: bool,
    pub limit: usize,
    pub offset: usize,
    pub count: bool,
    pub sort: SortArg,
}

pub async fn search(archive: &Archive, actor: &Actor, query: &str, l: Listing) -> anyhow::Result<ExitCode> {
    if l.count {
        println!("{}", archive.count(actor, query).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let sort = match l.sort {
        SortArg::Date => Sort::Date,
        SortArg::Oldest => Sort::Oldest,
        SortArg::Relevance => Sort::Relevance,
        SortArg::Size => Sort::Size,
    };
    let page = archive.search(actor, query, l.limit, l.offset, sort, !l.json).await?;
    if page.not_yet_indexed > 0 {
        eprintln!(
            "note: {} archived messages are not searchable yet (the index is catching up or being rebuilt); the results may be incomplete",
            page.not_yet_indexed
        );
    }
    let mut out = std::io::stdout().lock();
    if l.json {
        for m in &page.messages {
            writeln!(out, "{}", serde_json::to_string(m)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    for m in &page.messages {
        writeln!(
            out,
            "{:>8}  {}  {:<32}  {}",
            m.id,
            &m.date[..m.date.len().min(10)],
            truncate(m.from.as_deref().unwrap_or("-"), 32),
            m.subject.as_deref().unwrap_or("(no subject)")
        )?;
    }
    let shown = page.messages.len();
    writeln!(out, "{} messages match; showing {} from {}", page.total, shown, l.offset + usize::from(shown > 0))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn show(archive: &Archive, actor: &Actor, id: i64, raw: bool) -> anyhow::Result<ExitCode> {
    if raw {
        let bytes = archive.raw(actor, id).await.with_context(|| format!("message {id}"))?;
        std::io::stdout().lock().write_all(&bytes)?;
    } else {
        let m = archive.message(actor, id).await.with_context(|| format!("message {id}"))?;
        println!("{}", serde_json::to_string_pretty(&m)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(
    archive: &Archive,
    actor: &Actor,
    query: &str,
    format: FormatArg,
    out: &Path,
    skip_damaged: bool,
) -> anyhow::Result<ExitCode> {
    let format = match format {
        FormatArg::Mbox => ExportFormat::Mbox,
        FormatArg::EmlZip => ExportFormat::EmlZip,
    };
    let summary = archive.export(actor, query, format, out, skip_damaged).await?;
    for (id, why) in &summary.skipped {
        eprintln!("skipped message {id}: {why}");
    }
    eprintln!("exported {} messages ({} bytes) to {}", summary.messages, summary.bytes, out.display());
    if !summary.skipped.is_empty() {
        eprintln!(
            "{} damaged messages were left out (listed above; `coffer verify` names the damage)",
            summary.skipped.len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(archive: &Archive, json: bool) -> anyhow::Result<ExitCode> {
    let outcome = archive.verify().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for p in &outcome.problems {
            println!("PROBLEM: {p}");
        }
        println!(
            "{} volumes, {} segments, {} records, {} evidence records, {} catalog messages, {} unreferenced records: {}",
            outcome.volumes,
            outcome.segments,
            outcome.records,
            outcome.evidence_records,
            outcome.messages,
            outcome.unreferenced_records,
            if outcome.is_clean() { "all intact".to_string() } else { format!("{} problems", outcome.problems.len()) }
        );
        if outcome.shredded > 0 {
            println!("{} records shredded by deletions (their content is gone on purpose)", outcome.shredded);
        }
        for t in &outcome.timestamps {
            match (t.proven_at, t.proven_through_record) {
                (Some(at), Some(record)) => println!(
                    "volume {}: {} timestamp tokens; proven through record {record} at {}",
                    t.volume,
                    t.tokens,
                    coffer_archive::service::rfc3339(at)
                ),
                _ => println!("volume {}: {} timestamp tokens, none checks out", t.volume, t.tokens),
            }
        }
        if outcome.without_evidence > 0 {
            println!(
                "{} messages are in volumes from before evidence records: their envelopes were never recorded",
                outcome.without_evidence
            );
        }
    }
    Ok(if outcome.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn reindex(archive: &Archive) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    match archive.reindex().await? {
        coffer_archive::service::Reindexed::Done(n) => {
            eprintln!("reindexed {n} messages in {:.1} s", started.elapsed().as_secs_f64())
        }
        coffer_archive::service::Reindexed::Queued(n) => eprintln!(
            "coffer serve holds the index: {n} messages are queued and it rebuilds the index in the background (`coffer status` shows the index lag)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rebuild(config: &coffer_archive::ArchiveConfig) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let report = coffer_archive::rebuild::rebuild_catalog(config).await?;
    for p in &report.problems {
        eprintln!("PROBLEM: {p}");
    }
    eprintln!(
        "catalog rebuilt from {} evidence records: {} tenants, {} messages in {:.1} s",
        report.facts,
        report.tenants,
        report.messages,
        started.elapsed().as_secs_f64()
    );
    if report.without_evidence > 0 {
        eprintln!(
            "{} messages are from volumes written before evidence records: their originals are back, but their \
             envelopes (Bcc and journal recipients, placements, arrival) were never recorded",
            report.without_evidence
        );
    }
    if report.cursors > 0 {
        eprintln!(
            "{} IMAP folder cursors derived from the archived UIDs; Microsoft 365 folders are read again (duplicates are skipped)",
            report.cursors
        );
    }
    for name in &report.tenants_made_anew {
        eprintln!(
            "tenant {name} had no recorded journal address: it has a new one (`coffer tenant list`); update the \
             journal rule"
        );
    }
    let archive = Archive::open(config.clone(), true).await?;
    reindex(&archive).await?;
    eprintln!(
        "users, API keys and sign-in settings are not in the volumes: restore them from a catalog backup, or add them again"
    );
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn import(
    archive: &Archive,
    paths: &[PathBuf],
    options: &ImportOptions,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let pipeline = archive.pipeline();
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut last_line = Instant::now();
    let mut on_event = |event: ImportEvent<'_>| match event {
        ImportEvent::Stored { origin, receipt } => {
            if verbose {
                let what = if receipt.duplicate { "duplicate" } else { "stored" };
                println!("{what} id={} sha256={} origin={origin}", receipt.id, receipt.sha256);
            }
        }
        ImportEvent::Failed { origin, error } => {
            let line = format!("failed: {origin}: {error}");
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        ImportEvent::Progress(s) => {
            let line = format!(
                "imported {} · duplicates {} · flagged {} · failed {} · {:.0} msg/s",
                s.imported,
                s.duplicates,
                s.flagged,
                s.failed,
                (s.imported + s.duplicates) as f64 / started.elapsed().as_secs_f64().max(0.001)
            );
            match &bar {
                Some(b) => b.set_message(line),
                None if last_line.elapsed() >= Duration::from_secs(1) => {
                    eprintln!("progress: {line}");
                    last_line = Instant::now();
                }
                None => {}
            }
        }
    };
    // Index while importing; once the import is done, index what is left.
    let imported = std::sync::atomic::AtomicBool::new(false);
    let indexer = archive.indexer();
    let indexing = async {
        loop {
            if indexer.run_once().await? == 0 {
                if imported.load(std::sync::atomic::Ordering::Acquire) {
                    return archive.index_until_idle().await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let importing = async {
        let result = coffer_archive::import::import(&pipeline, paths, options, &mut on_event).await;
        imported.store(true, std::sync::atomic::Ordering::Release);
        (result, started.elapsed().as_secs_f64())
    };
    let ((summary, stored_secs), indexed) = tokio::join!(importing, indexing);
    let summary = summary?;
    match (indexed, &summary.stopped) {
        (Err(e), Some(_)) => eprintln!("indexing stopped too ({e}); the index catches up at the next `coffer serve`"),
        (indexed, _) => {
            indexed?;
        }
    }
    if summary.stopped.is_none() {
        archive.close().await?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let total = summary.imported + summary.duplicates;
    eprintln!(
        "done: imported {}, duplicates {}, flagged {}, failed {}; {:.1} MB in {:.1} s ({:.0} msg/s stored), searchable after {:.1} s",
        summary.imported,
        summary.duplicates,
        summary.flagged,
        summary.failed,
        summary.bytes as f64 / 1e6,
        stored_secs,
        total as f64 / stored_secs.max(0.001),
        started.elapsed().as_secs_f64()
    );
    if let Some(why) = &summary.stopped {
        eprintln!(
            "stopped early: {why}\nwhat was imported is safe; free space (or fix the cause) and run the same import again: it continues, skipping what the archive already has"
        );
        return Ok(ExitCode::from(3));
    }
    if summary.failed > 0 {
        eprintln!("{} messages could not be imported (listed above)", summary.failed);
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

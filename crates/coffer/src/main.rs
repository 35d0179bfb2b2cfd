//! The `coffer` binary: command line, configuration and wiring. Every capability lives in a
//! library crate; this file only turns commands into calls.

mod config;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use coffer_archive::export::ExportFormat;
use coffer_archive::import::{ImportEvent, ImportOptions};
use coffer_archive::{Actor, Archive, Sort};

use config::Config;

#[derive(Parser)]
#[command(name = "coffer", version, about = "Coffer: an email archive and e-discovery server")]
struct Cli {
    /// Data folder (volumes, catalog, index, master key). Default ./coffer-data.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Configuration file. Default ./coffer.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the archive server.
    Serve {
        /// SMTP listener address (overrides smtp.listen).
        #[arg(long, value_name = "ADDR:PORT")]
        smtp: Option<String>,
        /// HTTP listener address (overrides http.listen).
        #[arg(long, value_name = "ADDR:PORT")]
        http: Option<String>,
    },
    /// Import EML files, folders of them, mbox files and Maildirs.
    Import {
        #[arg(long)]
        tenant: Option<String>,
        /// The mailbox these messages belong to, e.g. alice@contoso.com.
        #[arg(long, value_name = "ADDR")]
        mailbox: Option<String>,
        /// Put the messages under this folder (discovered folders go beneath it).
        #[arg(long, value_name = "PATH")]
        folder: Option<String>,
        /// Archive Exchange journal reports as they are instead of unwrapping their originals.
        #[arg(long)]
        no_journal: bool,
        /// Print one line per message: stored or duplicate, its id, SHA-256 and origin.
        #[arg(long, short)]
        verbose: bool,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Search with the query language (see README).
    Search {
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print only the exact number of matching messages.
        #[arg(long)]
        count: bool,
        #[arg(long, value_enum, default_value_t = SortArg::Date)]
        sort: SortArg,
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Show one message; --raw writes its original bytes to stdout.
    Show {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        raw: bool,
        id: i64,
    },
    /// Export the messages a query matches.
    Export {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum)]
        format: FormatArg,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Leave out messages whose original cannot be read, list them (stderr, and SKIPPED.csv in
        /// a zip) and exit with status 2, instead of failing the export.
        #[arg(long)]
        skip_damaged: bool,
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Check every record, hash chain and catalog entry; exit status 0 only when all is intact.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Delete the search index and rebuild it from the store and the catalog.
    Reindex,
    /// Volumes: list them, or close the open one.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Tenants: add one, or list them with their journal addresses.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Certificates for the listeners: generate, import, list, export.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// IMAP mailboxes (`[[imap]]` in coffer.toml): poll them once now.
    Imap {
        #[command(subcommand)]
        command: ImapCommand,
    },
    /// Connection secrets sealed with the master key: `secret set imap.journal.password` reads the
    /// value from stdin, so it never sits in coffer.toml or the shell history.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Microsoft 365 (`[[m365]]` in coffer.toml): the app's certificate and manifest, a test, the
    /// historical import through Microsoft Graph.
    M365 {
        #[command(subcommand)]
        command: M365Command,
    },
    /// Console and API accounts: add one (password from stdin), list them, make an API key.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit log: check its hash chain, or show the newest entries.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Traffic of the last 24 hours, listener figures, index lag, volumes.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum M365Command {
    /// Add Coffer's certificate (an RSA-2048 one, made when the alias does not exist) to the app
    /// manifest downloaded from the Azure portal; upload OUT there.
    Manifest {
        #[arg(long)]
        alias: String,
        #[arg(long, default_value = "Coffer archive")]
        cn: String,
        #[command(flatten)]
        subject: SubjectArgs,
        input: PathBuf,
        output: PathBuf,
    },
    /// Get a token, list a user, read a mailbox's folders; failures come with advice.
    Test { name: Option<String> },
    /// Import every mailbox in scope (or one), resuming where the last run stopped.
    Import {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a local account; the password is the first line of stdin.
    Add {
        login: String,
        /// administrator, auditor or user.
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// An address whose mail a user sees (repeatable).
        #[arg(long = "address")]
        addresses: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Make an API key for a user (printed once), with at most the user's role.
    Key {
        login: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit status 0 only when every entry is as written.
    Verify,
    /// The newest entries.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Store a secret read from the first line of stdin (imap.<name>.password, imap.<name>.client_secret).
    Set { key: String },
    /// The secrets stored (names only).
    List,
}

#[derive(Subcommand)]
enum ImapCommand {
    /// One pass over the configured connections (or the one named), then exit.
    Poll {
        #[arg(long)]
        name: Option<String>,
    },
    /// Connect, verify TLS, log in and list the folders with their message counts; archives nothing.
    Test { name: String },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Make a self-signed certificate (ECDSA P-256, two years).
    Generate {
        #[arg(long)]
        alias: String,
        /// Common name: the host name clients connect to.
        #[arg(long)]
        cn: String,
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Import a PEM file holding the certificate chain and its private key, or a PKCS#12 file
    /// (.p12/.pfx; its password from COFFER_CERT_PASSWORD, or the first line of stdin with --password-stdin).
    Import {
        #[arg(long)]
        alias: String,
        #[arg(long)]
        password_stdin: bool,
        file: PathBuf,
    },
    /// List certificates with fingerprints and expiry.
    List,
    /// Print a certificate (public part, PEM), e.g. for a client's CA file.
    Export {
        #[arg(long)]
        alias: String,
    },
}

/// The rest of a certificate's subject (the common name is asked for separately).
#[derive(clap::Args)]
struct SubjectArgs {
    #[arg(long)]
    org: Option<String>,
    #[arg(long)]
    unit: Option<String>,
    #[arg(long)]
    city: Option<String>,
    #[arg(long)]
    state: Option<String>,
    /// Two letters.
    #[arg(long)]
    country: Option<String>,
}

impl SubjectArgs {
    fn with_cn(self, common_name: String) -> coffer_archive::certs::Subject {
        let SubjectArgs { org, unit, city, state, country } = self;
        coffer_archive::certs::Subject { common_name, organization: org, unit, city, state, country }
    }
}

#[derive(Subcommand)]
enum VolumeCommand {
    List,
    Close { id: String },
}

#[derive(Subcommand)]
enum TenantCommand {
    Add {
        name: String,
        /// A mail domain of this tenant (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    List,
    /// Accept this tenant's journal reports only from these sending networks (CIDR, repeatable).
    Allow {
        name: String,
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SortArg {
    Date,
    Relevance,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Mbox,
    EmlZip,
}

fn main() -> ExitCode {
    // Everything Coffer writes (catalog, index, certificates, exports) is for its owner alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
    if let Some(data) = cli.data {
        config.data = data;
    }
    match cli.command {
        Command::Serve { smtp, http } => {
            if let Some(a) = smtp {
                config.smtp.listen = a;
            }
            if let Some(a) = http {
                config.http.listen = a;
            }
            serve(config).await
        }
        Command::Import { tenant, mailbox, folder, no_journal, verbose, paths } => {
            let archive = open(&config, true).await?;
            let tenant = archive.tenant(tenant.as_deref()).await?;
            let options = ImportOptions { tenant: tenant.id, mailbox, folder, journal: !no_journal };
            import(&archive, &paths, &options, verbose).await
        }
        Command::Search { tenant, json, limit, offset, count, sort, query } => {
            let archive = open(&config, false).await?;
            let actor = Actor::operator(archive.tenant(tenant.as_deref()).await?);
            let query = query.join(" ");
            if count {
                println!("{}", archive.count(&actor, &query).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let sort = match sort {
                SortArg::Date => Sort::Date,
                SortArg::Relevance => Sort::Relevance,
            };
            let page = archive.search(&actor, &query, limit, offset, sort, !json).await?;
            if page.not_yet_indexed > 0 {
                eprintln!(
                    "note: {} archived messages are not searchable yet (the index is catching up or being rebuilt); the results may be incomplete",
                    page.not_yet_indexed
                );
            }
            let mut out = std::io::stdout().lock();
            if json {
                for m in &page.messages {
                    writeln!(out, "{}", serde_json::to_string(m)?)?;
                }
            } else {
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
                writeln!(
                    out,
                    "{} messages match; showing {} from {}",
                    page.total,
                    shown,
                    offset + usize::from(shown > 0)
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { tenant, raw, id } => {
            let archive = open(&config, false).await?;
            let actor = Actor::operator(archive.tenant(tenant.as_deref()).await?);
            if raw {
                let bytes = archive.raw(&actor, id).await.with_context(|| format!("message {id}"))?;
                std::io::stdout().lock().write_all(&bytes)?;
            } else {
                let m = archive.message(&actor, id).await.with_context(|| format!("message {id}"))?;
                println!("{}", serde_json::to_string_pretty(&m)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { tenant, format, out, skip_damaged, query } => {
            let archive = open(&config, false).await?;
            let actor = Actor::operator(archive.tenant(tenant.as_deref()).await?);
            let format = match format {
                FormatArg::Mbox => ExportFormat::Mbox,
                FormatArg::EmlZip => ExportFormat::EmlZip,
            };
            let summary = archive.export(&actor, &query.join(" "), format, &out, skip_damaged).await?;
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
        Command::Verify { json } => {
            // Read only: it runs beside `coffer serve` and never repairs (recovery is the writer's).
            let archive = open(&config, false).await?;
            let outcome = archive.verify().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                for p in &outcome.problems {
                    println!("PROBLEM: {p}");
                }
                println!(
                    "{} volumes, {} segments, {} records, {} catalog messages, {} unreferenced records: {}",
                    outcome.volumes,
                    outcome.segments,
                    outcome.records,
                    outcome.messages,
                    outcome.unreferenced_records,
                    if outcome.is_clean() {
                        "all intact".to_string()
                    } else {
                        format!("{} problems", outcome.problems.len())
                    }
                );
            }
            Ok(if outcome.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Reindex => {
            // Beside `coffer serve` the store is read only here, and the server's indexer does the work.
            let archive = match open(&config, true).await {
                Err(e) if e.downcast_ref::<coffer_archive::ArchiveError>().is_some_and(|e| e.is_store_busy()) => {
                    open(&config, false).await?
                }
                other => other?,
            };
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
        Command::Volume { command } => {
            let writable = matches!(command, VolumeCommand::Close { .. });
            let archive = open(&config, writable).await?;
            match command {
                VolumeCommand::List => {
                    println!(
                        "{:<16} {:<7} {:>10} {:>14} {:>8}  CREATED",
                        "VOLUME", "STATE", "MESSAGES", "BYTES", "SEGMENTS"
                    );
                    for v in archive.volumes().await? {
                        println!(
                            "{:<16} {:<7} {:>10} {:>14} {:>8}  {}",
                            v.id,
                            format!("{:?}", v.state).to_lowercase(),
                            v.records,
                            v.bytes,
                            v.segments,
                            coffer_archive::service::rfc3339(v.created_at as i64)
                        );
                    }
                }
                VolumeCommand::Close { id } => {
                    archive.close_volume(&id)?;
                    println!("volume {id} is closed; new mail goes to a new volume");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cert { command } => {
            let archive = open(&config, false).await?;
            let certs = archive.certs();
            match command {
                CertCommand::Generate { alias, cn, subject } => {
                    let subject = subject.with_cn(cn);
                    let info = certs.generate(&alias, &subject)?;
                    println!(
                        "certificate {} generated: {} valid until {}; SHA-256 {}",
                        info.alias, info.subject, info.not_after, info.sha256
                    );
                }
                CertCommand::Import { alias, password_stdin, file } => {
                    let data = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let is_pem = data.windows(11).any(|w| w == b"-----BEGIN ");
                    let info = if is_pem {
                        certs.import_pem(&alias, &data)?
                    } else {
                        let password = if password_stdin {
                            let mut line = String::new();
                            std::io::stdin().read_line(&mut line)?;
                            line.trim_end_matches(['\r', '\n']).to_owned()
                        } else {
                            std::env::var("COFFER_CERT_PASSWORD").unwrap_or_default()
                        };
                        certs.import_pkcs12(&alias, &data, &password)?
                    };
                    println!(
                        "certificate {} imported: {} valid until {}; SHA-256 {}",
                        info.alias, info.subject, info.not_after, info.sha256
                    );
                }
                CertCommand::List => {
                    for c in certs.list()? {
                        println!(
                            "{}\n  subject   {}\n  valid     {} to {}\n  SHA-1     {}\n  SHA-256   {}",
                            c.alias, c.subject, c.not_before, c.not_after, c.sha1, c.sha256
                        );
                    }
                }
                CertCommand::Export { alias } => print!("{}", certs.certificate_pem(&alias)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Imap { command: ImapCommand::Poll { name } } => {
            let archive = open(&config, true).await?;
            let pipeline = archive.pipeline();
            let mut failed = false;
            for imap in config.imap.iter().filter(|i| name.as_ref().is_none_or(|n| *n == i.name)) {
                let poller = poller(&archive, &config.m365, imap, pipeline.clone()).await?;
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
        Command::Imap { command: ImapCommand::Test { name } } => {
            let archive = open(&config, false).await?;
            let imap = config
                .imap
                .iter()
                .find(|i| i.name == name)
                .ok_or_else(|| anyhow::anyhow!("no [[imap]] connection named {name:?} in the configuration"))?;
            let poller = poller(&archive, &config.m365, imap, archive.pipeline()).await?;
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
        Command::User { command } => user(&config, command).await,
        Command::M365 { command } => m365(&config, command).await,
        Command::Audit { command } => {
            let archive = open(&config, false).await?;
            match command {
                AuditCommand::Verify => {
                    let problems = archive.catalog.verify_audit().await?;
                    for p in &problems {
                        println!("audit log entry {}: {}", p.seq, p.detail);
                    }
                    if problems.is_empty() {
                        println!("audit log intact");
                        Ok(ExitCode::SUCCESS)
                    } else {
                        Ok(ExitCode::FAILURE)
                    }
                }
                AuditCommand::List { limit } => {
                    for e in archive.catalog.audit_entries(None, limit).await? {
                        println!(
                            "{:>8}  {}  {:<20} {:<15} {:<16} {}",
                            e.seq,
                            coffer_archive::service::rfc3339(e.at),
                            e.actor,
                            e.ip,
                            e.action,
                            e.detail
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Secret { command } => {
            let archive = open(&config, false).await?;
            match command {
                SecretCommand::Set { key } => {
                    let mut value = String::new();
                    std::io::stdin().read_line(&mut value)?;
                    let value = value.trim_end_matches(['\r', '\n']);
                    anyhow::ensure!(
                        !value.is_empty(),
                        "give the secret on stdin, e.g. `coffer secret set {key} < file`"
                    );
                    archive.secrets().set(&key, value)?;
                    println!("secret {key} stored, sealed with the master key");
                }
                SecretCommand::List => {
                    for key in archive.secrets().keys() {
                        println!("{key}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let archive = open(&config, false).await?;
            status(&archive, &config, json).await
        }
        Command::Tenant { command } => {
            let archive = open(&config, false).await?;
            match command {
                TenantCommand::Add { name, domains } => {
                    let t = archive.catalog.add_tenant(&name, &domains).await?;
                    println!(
                        "tenant {} created; journal address: {}",
                        t.name,
                        t.journal_address(&config.journal_domain)
                    );
                }
                TenantCommand::List => {
                    let networks = archive.catalog.tenant_networks().await?;
                    for t in archive.catalog.tenants().await? {
                        let allowed =
                            networks.get(&t.id).map(|n| format!("  from {}", n.join(","))).unwrap_or_default();
                        println!(
                            "{:<20} {}  {}{}",
                            t.name,
                            t.journal_address(&config.journal_domain),
                            t.domains.join(","),
                            allowed
                        );
                    }
                }
                TenantCommand::Allow { name, networks } => {
                    let tenant = archive.tenant(Some(&name)).await?;
                    for n in &networks {
                        let net: ipnet::IpNet = n
                            .parse()
                            .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| {
                                anyhow::anyhow!("{n:?} is not a network: write it as 203.0.113.0/24 or 2001:db8::/32")
                            })?;
                        archive.catalog.allow_network(tenant.id, &net.to_string()).await?;
                    }
                    println!("tenant {name} accepts journal reports from {}", networks.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn m365_connection<'a>(config: &'a Config, name: Option<&str>) -> anyhow::Result<&'a coffer_m365::M365Config> {
    match name {
        Some(n) => config
            .m365
            .iter()
            .find(|c| c.name == n)
            .ok_or_else(|| anyhow::anyhow!("no [[m365]] connection named {n:?} in the configuration")),
        None => config
            .m365
            .first()
            .ok_or_else(|| anyhow::anyhow!("no [[m365]] connection in the configuration (see README: Microsoft 365)")),
    }
}

fn graph(archive: &Archive, c: &coffer_m365::M365Config) -> anyhow::Result<coffer_m365::graph::Graph> {
    let certs = archive.certs();
    let pem = certs.certificate_pem(&c.certificate).with_context(|| {
        format!(
            "m365 {}: certificate {:?} (make it with `coffer m365 manifest --alias {}`)",
            c.name, c.certificate, c.certificate
        )
    })?;
    Ok(coffer_m365::graph::Graph::new(c.clone(), &pem, certs.private_key_pem(&c.certificate)?)?)
}

async fn m365(config: &Config, command: M365Command) -> anyhow::Result<ExitCode> {
    match command {
        M365Command::Manifest { alias, cn, subject, input, output } => {
            let archive = open(config, false).await?;
            let certs = archive.certs();
            if certs.certificate_pem(&alias).is_err() {
                let subject = subject.with_cn(cn);
                let info = certs.generate_with(&alias, &subject, coffer_archive::certs::KeyKind::Rsa2048)?;
                println!("made certificate {} (RSA 2048, SHA-1 {})", info.alias, info.sha1);
            }
            let der = certs.certificate_der(&alias)?;
            let manifest = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
            let subject = certs.list()?.into_iter().find(|c| c.alias == alias).map(|c| c.subject).unwrap_or_default();
            let updated = coffer_m365::manifest::add_certificate(&manifest, &der, &subject)?;
            std::fs::write(&output, serde_json::to_vec_pretty(&updated)?)
                .with_context(|| format!("cannot write {}", output.display()))?;
            let operator = Actor::operator(archive.tenant(None).await?);
            archive
                .audit(&operator, "configuration", &format!("m365 manifest updated with certificate {alias}"))
                .await?;
            println!(
                "wrote {}: upload it in the Azure portal (App registrations → your app → Manifest → Upload)",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        M365Command::Test { name } => {
            let archive = open(config, false).await?;
            let c = m365_connection(config, name.as_deref())?;
            let graph = std::sync::Arc::new(graph(&archive, c)?);
            let g = graph.clone();
            let outcome = tokio::task::spawn_blocking(move || coffer_m365::graph::test_connection(&g)).await?;
            match outcome {
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
        M365Command::Import { name, user } => {
            let archive = open(config, true).await?;
            let c = m365_connection(config, name.as_deref())?;
            let tenant = archive.tenant(c.tenant.as_deref()).await?;
            let importer = coffer_m365::import::Importer {
                board: Default::default(),
                graph: std::sync::Arc::new(graph(&archive, c)?),
                pipeline: archive.pipeline(),
                catalog: archive.catalog.clone(),
                tenant: tenant.id,
                max_message_bytes: config.max_message_bytes,
            };
            let indexer = archive.spawn_indexer();
            let operator = Actor::operator(tenant.clone());
            archive.audit(&operator, "import", &format!("m365 {}: {}", c.name, c.choices())).await?;
            let mut users = importer.users().await?;
            if let Some(u) = &user {
                users.retain(|(id, upn)| id == u || upn.eq_ignore_ascii_case(u));
                anyhow::ensure!(!users.is_empty(), "no user {u:?} in scope of connection {}", c.name);
            }
            let mut total = (0, 0, 0);
            let mut failed = Vec::new();
            // A spinner on a terminal; elsewhere the line per mailbox below is the progress.
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            let finished = std::sync::atomic::AtomicUsize::new(0);
            let progress = |r: &coffer_m365::import::MailboxReport| {
                if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{} of {} mailboxes done; {}: {} folders, {} archived, {} already there",
                        finished.load(std::sync::atomic::Ordering::Relaxed),
                        users.len(),
                        r.mailbox,
                        r.folders,
                        r.archived,
                        r.duplicates
                    ));
                }
            };
            importer
                .mailboxes(&users, &progress, &mut |result| {
                    finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                .await;
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
                    "{} mailboxes failed ({}); what they had archived is kept, and the next import continues \
                     where each stopped",
                    failed.len(),
                    failed.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn user(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    let archive = open(config, false).await?;
    match command {
        UserCommand::Add { login, role, tenant, addresses, name } => {
            let role = coffer_web::Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("role {role:?}: use administrator, auditor or user"))?;
            let tenant = archive.tenant(tenant.as_deref()).await?;
            let mut password = String::new();
            if std::io::stdin().is_terminal() {
                eprint!("Password for {login} (at least {} characters): ", coffer_web::api::MIN_PASSWORD);
            }
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.chars().count() >= coffer_web::api::MIN_PASSWORD,
                "the password needs at least {} characters (it is read from the first line of stdin)",
                coffer_web::api::MIN_PASSWORD
            );
            let user = archive
                .catalog
                .add_user(&coffer_archive::catalog::NewUser {
                    tenant_id: tenant.id,
                    login: login.clone(),
                    display_name: name.unwrap_or_default(),
                    role: role.as_str().into(),
                    addresses,
                    password_hash: Some(coffer_web::hash_password(password)),
                    external_id: None,
                })
                .await?;
            let actor = Actor::operator(tenant);
            archive
                .audit(&actor, "configuration", &format!("user {} added with role {}", user.login, role.as_str()))
                .await?;
            println!("user {} added to tenant {} with role {}", user.login, actor.tenant.name, role.as_str());
        }
        UserCommand::List { tenant } => {
            let tenant = match tenant {
                Some(t) => Some(archive.tenant(Some(&t)).await?.id),
                None => None,
            };
            for u in archive.catalog.users(tenant).await? {
                let kind = if u.external_id.is_some() { "single sign-on" } else { "local" };
                println!("{:<30} {:<14} {:<15} {}", u.login, u.role, kind, u.addresses.join(", "));
            }
        }
        UserCommand::Key { login, name, role } => {
            let user = archive
                .catalog
                .user_by_login(&login)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {login:?}; `coffer user list` shows them"))?;
            let own = coffer_web::Role::parse(&user.role).unwrap_or(coffer_web::Role::User);
            let role = match role {
                Some(r) => coffer_web::Role::parse(&r)
                    .ok_or_else(|| anyhow::anyhow!("role {r:?}: use administrator, auditor or user"))?,
                None => own,
            };
            anyhow::ensure!(role <= own, "a key cannot have a higher role than its owner ({})", own.as_str());
            let (key, hash) = coffer_web::new_api_key();
            let id = archive.catalog.add_api_key(user.id, &name, &hash, role.as_str()).await?;
            let actor = Actor::operator(
                archive
                    .catalog
                    .tenant(user.tenant_id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the user's tenant is gone"))?,
            );
            archive
                .audit(
                    &actor,
                    "configuration",
                    &format!("API key {id} ({name}) for {login} with role {}", role.as_str()),
                )
                .await?;
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn poller(
    archive: &Archive,
    m365: &[coffer_m365::M365Config],
    imap: &coffer_imap::ImapConfig,
    pipeline: coffer_archive::Pipeline,
) -> anyhow::Result<coffer_imap::Poller> {
    let tenant =
        archive.tenant(imap.tenant.as_deref()).await.with_context(|| format!("imap connection {}", imap.name))?;
    if imap.security == coffer_imap::Security::None {
        tracing::warn!(connection = %imap.name, "IMAP without TLS: the password and the mail cross the network in the clear");
    }
    // Secrets not written in coffer.toml come from the sealed secret store.
    let mut imap = imap.clone();
    let secrets = archive.secrets();
    if imap.password.is_empty() {
        imap.password = secrets.get(&format!("imap.{}.password", imap.name))?.unwrap_or_default();
    }
    if imap.client_secret.is_none() {
        imap.client_secret = secrets.get(&format!("imap.{}.client_secret", imap.name))?;
    }
    let mut poller = coffer_imap::Poller::new(imap.clone(), tenant.id, pipeline, archive.catalog.clone());
    if let Some(name) = &imap.m365 {
        let m = m365
            .iter()
            .find(|m| &m.name == name)
            .ok_or_else(|| anyhow::anyhow!("imap connection {}: no [[m365]] connection named {name:?}", imap.name))?;
        let graph = std::sync::Arc::new(graph(archive, m)?);
        poller.token_source = Some(std::sync::Arc::new(move || {
            graph.token(coffer_m365::graph::OUTLOOK_SCOPE).map_err(|e| e.to_string())
        }));
    }
    Ok(poller)
}

async fn open(config: &Config, writable: bool) -> anyhow::Result<Archive> {
    Archive::open(config.archive(), writable)
        .await
        .with_context(|| format!("cannot open the archive in {}", config.data.display()))
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

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    raise_open_file_limit(2 * (config.smtp.max_connections as u64 + config.http.max_connections as u64) + 256);
    let archive = std::sync::Arc::new(open(&config, true).await?);
    let pipeline = archive.pipeline();
    let indexer = archive.spawn_indexer();
    tracing::info!(data = %config.data.display(), "Coffer is serving; the index catches up in the background");
    for t in archive.catalog.tenants().await? {
        tracing::info!(tenant = %t.name, journal = %t.journal_address(&config.journal_domain), "tenant");
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    for imap in &config.imap {
        let poller = poller(&archive, &config.m365, imap, pipeline.clone()).await?;
        let interval = Duration::from_secs(imap.poll_interval_secs.max(1));
        tokio::spawn(async move {
            // Poll, then wait in IDLE for new mail (at most the interval); after a failure, back off
            // from 5 s, doubling up to the interval.
            let mut backoff = Duration::from_secs(5);
            loop {
                match poller.poll_once().await {
                    Ok(r) => {
                        if r.fetched > 0 {
                            tracing::info!(connection = %poller.config.name, ?r, "IMAP poll");
                        }
                        backoff = Duration::from_secs(5);
                        if let Err(e) = poller.wait_for_mail(interval).await {
                            tracing::debug!(connection = %poller.config.name, error = %e, "no IDLE; polling at the interval");
                            tokio::time::sleep(interval).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(connection = %poller.config.name, error = %e, retry_in = ?backoff, "IMAP poll failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(interval.max(Duration::from_secs(5)));
                    }
                }
            }
        });
    }
    let mut smtp = None;
    if config.smtp.enabled {
        smtp = Some(start_smtp(&archive, &config, pipeline.clone(), stopping.clone()).await?);
    }
    let sources = start_m365(&archive, &config, &pipeline).await?;
    let web =
        if config.http.enabled { Some(start_web(&archive, &config, sources, stopping.clone()).await?) } else { None };
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections; finishing the transactions in flight");
    let _ = stop.send(true);
    if let Some((listener, stats, flusher)) = smtp {
        let _ = tokio::time::timeout(Duration::from_secs(config.smtp.data_timeout_secs), listener).await;
        flusher.abort();
        stats.flush(&archive.catalog, "smtp").await;
    }
    if let Some(web) = web {
        let _ = tokio::time::timeout(Duration::from_secs(5), web).await;
    }
    indexer.abort();
    // Leave the index caught up with what was acknowledged (it would catch up at the next start).
    if tokio::time::timeout(Duration::from_secs(60), archive.indexer().run_until_idle()).await.is_err() {
        tracing::warn!("the index is still catching up; it continues at the next start");
    }
    archive.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// The Microsoft 365 connections in the server: an importer each (started from the console),
/// and, for those with a webhook, subscriptions kept and notifications turned into delta syncs.
/// The answer is what the console needs to drive and show them.
async fn start_m365(
    archive: &std::sync::Arc<Archive>,
    config: &Config,
    pipeline: &coffer_archive::Pipeline,
) -> anyhow::Result<coffer_web::Sources> {
    use coffer_m365::import::Importer;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut importers: Vec<(String, Arc<Importer>, Arc<AtomicBool>)> = Vec::new();
    let mut syncs = Vec::new();
    let mut directories: Vec<(String, Arc<coffer_m365::graph::Graph>)> = Vec::new();
    for c in &config.m365 {
        let tenant =
            archive.tenant(c.tenant.as_deref()).await.with_context(|| format!("m365 connection {}", c.name))?;
        // A connection that cannot start is reported, and the rest of the server runs on.
        let graph = match graph(archive, c) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(connection = %c.name, error = %format!("{e:#}"), "Microsoft 365 connection not started");
                continue;
            }
        };
        let graph = Arc::new(graph);
        directories.push((c.tenant_id.to_lowercase(), graph.clone()));
        let importer = Arc::new(Importer {
            board: Default::default(),
            graph,
            pipeline: pipeline.clone(),
            catalog: archive.catalog.clone(),
            tenant: tenant.id,
            max_message_bytes: config.max_message_bytes,
        });
        importers.push((c.name.clone(), importer.clone(), Arc::new(AtomicBool::new(false))));
        let Some(url) = &c.webhook_url else { continue };
        let Some(client_state) = c.client_state.clone().filter(|s| s.len() >= 16) else {
            tracing::error!(connection = %c.name, "no folder sync: a webhook_url needs a client_state secret of at least 16 characters");
            continue;
        };
        let (sync, queue) = coffer_m365::sync::Sync::new(importer, url.clone(), client_state);
        tokio::spawn(sync.clone().run(queue));
        tokio::spawn(sync.clone().keep_subscriptions());
        tracing::info!(connection = %c.name, webhook = %url, "Microsoft 365 folder sync by webhook");
        syncs.push(sync);
    }
    let mut sources = coffer_web::Sources::default();
    if !directories.is_empty() {
        let directories = Arc::new(directories);
        sources.directory = Some(Arc::new(move |tid: String, oid: String| {
            let directories = directories.clone();
            Box::pin(async move {
                let graph = directories
                    .iter()
                    .find(|(t, _)| *t == tid.to_lowercase())
                    .map(|(_, g)| g.clone())
                    .ok_or_else(|| format!("no [[m365]] connection has tenant_id {tid}"))?;
                tokio::task::spawn_blocking(move || coffer_m365::graph::directory_addresses(&graph, &oid))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
        }));
    }
    if !syncs.is_empty() {
        sources.webhook = Some(Arc::new(move |body: &serde_json::Value| {
            let mut why = String::new();
            for s in &syncs {
                match s.notified(body) {
                    Ok(n) => return Ok(n),
                    Err(coffer_m365::sync::Refused(r)) => why = r,
                }
            }
            Err(why)
        }));
    }
    let importers = Arc::new(importers);
    let list = importers.clone();
    sources.status = Some(Arc::new(move |name: String| {
        list.iter()
            .filter(|(n, _, _)| *n == name)
            .flat_map(|(_, i, _)| i.board.rows())
            .map(|m| coffer_web::MailboxStatus {
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
    }));
    sources.import = Some(Arc::new(move |name: String| {
        let (_, importer, running) = importers
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| format!("{name} is not a Microsoft 365 connection"))?;
        if running.swap(true, Ordering::SeqCst) {
            return Err(format!("an import of {name} is running already"));
        }
        let choices = importer.graph.config.choices();
        let (importer, running) = (importer.clone(), running.clone());
        tokio::spawn(async move {
            match importer.users().await {
                Ok(users) => {
                    // Each mailbox's state and last error are on the console's board.
                    importer
                        .mailboxes(&users, &|_| {}, &mut |result| {
                            if let Err((upn, e)) = result {
                                tracing::warn!(mailbox = %upn, error = %e, "Microsoft 365 import failed for a mailbox");
                            }
                        })
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "Microsoft 365 import could not list the users"),
            }
            running.store(false, Ordering::SeqCst);
        });
        Ok(format!("import started ({choices}); it continues where the last one stopped"))
    }));
    Ok(sources)
}

/// The console and API on `http.listen` (HTTPS when `http.certificate` names a certificate).
async fn start_web(
    archive: &std::sync::Arc<Archive>,
    config: &Config,
    mut sources: coffer_web::Sources,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let h = &config.http;
    let tls = match &h.certificate {
        None => None,
        Some(alias) => {
            let certs = archive.certs();
            let acceptor = coffer_smtp::server::tls_acceptor(
                certs
                    .certificate_pem(alias)
                    .with_context(|| format!("http.certificate = {alias:?}: no such certificate (`coffer cert list`)"))?
                    .as_bytes(),
                &certs.private_key_pem(alias)?,
            )
            .map_err(|e| anyhow::anyhow!("certificate {alias:?} cannot be used for HTTPS: {e}"))?;
            Some(acceptor)
        }
    };
    let socket = tokio::net::TcpListener::bind(&h.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (http.listen, or --http)", h.listen))?;
    let bound = socket.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let s = &config.smtp;
    let web = coffer_web::WebConfig {
        public_url: h.public_url.clone().unwrap_or_else(|| format!("{scheme}://{bound}")),
        https: tls.is_some(),
        session_idle_minutes: h.session_idle_minutes.max(1),
        session_max_hours: h.session_max_hours.max(1),
        lockout_after: h.lockout_after.max(1),
        lockout_minutes: h.lockout_minutes.max(1),
        journal_domain: config.journal_domain.clone(),
        metrics_token: h.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        max_connections: h.max_connections.max(1),
        max_connections_per_ip: h.max_connections_per_ip.max(1),
        max_connections_per_range: h.max_connections_per_range.max(1),
        header_timeout: Duration::from_secs(h.header_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(h.request_timeout_secs.max(1)),
        smtp: vec![
            ("enabled".into(), s.enabled.to_string()),
            ("listen".into(), std::iter::once(&s.listen).chain(&s.also_listen).cloned().collect::<Vec<_>>().join(", ")),
            ("hostname".into(), s.hostname.clone().unwrap_or_else(|| config.journal_domain.clone())),
            ("TLS".into(), format!("{:?} (certificate {})", s.tls, s.certificate).to_lowercase()),
            ("aliases".into(), s.aliases.iter().map(|(a, t)| format!("{a} → {t}")).collect::<Vec<_>>().join(", ")),
            ("max message size".into(), format!("{} bytes", config.max_message_bytes)),
            ("max connections".into(), format!("{} ({} per IP)", s.max_connections, s.max_connections_per_ip)),
            ("max recipients".into(), s.max_recipients.to_string()),
            ("minimum free disk".into(), format!("{} bytes", s.min_free_bytes)),
        ],
    };
    let connections = config
        .imap
        .iter()
        .map(|i| coffer_web::Connection {
            name: i.name.clone(),
            kind: "IMAP".into(),
            settings: vec![
                ("server".into(), format!("{}:{} ({:?})", i.host, i.port, i.security)),
                ("user".into(), i.username.clone()),
                ("authentication".into(), format!("{:?}", i.auth)),
                ("folders".into(), if i.folders.is_empty() { "INBOX".into() } else { i.folders.join(", ") }),
                ("mode".into(), format!("{:?}", i.mode)),
                ("after archiving".into(), i.after_archive.clone()),
                ("tenant".into(), i.tenant.clone().unwrap_or_else(|| "default".into())),
                ("poll interval".into(), format!("{} s (and IDLE)", i.poll_interval_secs)),
            ],
        })
        .chain(config.m365.iter().map(|m| coffer_web::Connection {
            name: m.name.clone(),
            kind: "Microsoft 365".into(),
            settings: vec![
                ("directory (tenant) id".into(), m.tenant_id.clone()),
                ("application (client) id".into(), m.client_id.clone()),
                ("certificate".into(), m.certificate.clone()),
                ("login and Graph hosts".into(), format!("{} · {}", m.login_host, m.graph_host)),
                ("mailboxes".into(), if m.mailboxes.is_empty() { "all users".into() } else { m.mailboxes.join(", ") }),
                (
                    "skipped folders".into(),
                    [(m.skip_junk, "Junk Email"), (m.skip_deleted, "Deleted Items"), (m.skip_drafts, "Drafts")]
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                ("tenant".into(), m.tenant.clone().unwrap_or_else(|| "default".into())),
            ],
        }))
        .collect();
    let tester: coffer_web::ConnectionTester = {
        let archive = archive.clone();
        let imap = config.imap.clone();
        let m365 = config.m365.clone();
        std::sync::Arc::new(move |name: String| {
            let archive = archive.clone();
            let imap = imap.clone();
            let m365 = m365.clone();
            Box::pin(async move {
                if let Some(m) = m365.iter().find(|m| m.name == name) {
                    let g = graph(&archive, m).map_err(|e| format!("{e:#}"))?;
                    return tokio::task::spawn_blocking(move || coffer_m365::graph::test_connection(&g))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string());
                }
                let i = imap.iter().find(|i| i.name == name).ok_or("no such connection")?;
                let p = poller(&archive, &m365, i, archive.pipeline()).await.map_err(|e| format!("{e:#}"))?;
                let folders = p.test().await.map_err(|e| e.to_string())?;
                let list: Vec<String> = folders.iter().map(|(f, n)| format!("{f} ({n} messages)")).collect();
                Ok(format!(
                    "connected to {}:{}, logged in as {}; folders: {}",
                    i.host,
                    i.port,
                    i.username,
                    list.join(", ")
                ))
            })
        })
    };
    if archive.catalog.count_users().await? == 0 {
        tracing::warn!(
            "no console account exists yet: create the first administrator with `coffer user add admin --role administrator` (it reads the password from stdin)"
        );
    }
    let console = {
        sources.connections = connections;
        sources.test = Some(tester);
        coffer_web::Console::new(archive.clone(), web, sources)
    };
    println!("http listening on {bound}");
    tracing::info!(%bound, %scheme, "web console and API started");
    Ok(tokio::spawn(coffer_web::serve(console, socket, tls, stopping)))
}

type Running = (tokio::task::JoinHandle<()>, std::sync::Arc<coffer_smtp::Stats>, tokio::task::JoinHandle<()>);

async fn start_smtp(
    archive: &Archive,
    config: &Config,
    pipeline: coffer_archive::Pipeline,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let s = &config.smtp;
    let hostname = s.hostname.clone().unwrap_or_else(|| config.journal_domain.clone());
    let tls = if s.tls == coffer_smtp::TlsPolicy::Off {
        None
    } else {
        let certs = archive.certs();
        if certs.certificate_pem(&s.certificate).is_err() {
            let subject = coffer_archive::certs::Subject { common_name: hostname.clone(), ..Default::default() };
            let info = certs.generate(&s.certificate, &subject)?;
            tracing::warn!(alias = %info.alias, cn = %hostname, "no certificate for SMTP: generated a self-signed one (import a real one with `coffer cert import`)");
        }
        let acceptor = coffer_smtp::server::tls_acceptor(
            certs.certificate_pem(&s.certificate)?.as_bytes(),
            &certs.private_key_pem(&s.certificate)?,
        )
        .map_err(|e| anyhow::anyhow!("certificate {:?} cannot be used for TLS: {e}", s.certificate))?;
        Some(acceptor)
    };
    let mut aliases = std::collections::HashMap::new();
    for (address, tenant) in &s.aliases {
        let t = archive
            .tenant(Some(tenant))
            .await
            .with_context(|| format!("smtp.aliases: {address} names tenant {tenant:?}"))?;
        aliases.insert(address.to_ascii_lowercase(), t.id);
    }
    let addresses = coffer_smtp::JournalAddresses::new(&config.journal_domain, aliases);
    addresses.refresh(&archive.catalog).await?;
    addresses.keep_fresh(archive.catalog.clone());
    let stats = std::sync::Arc::new(coffer_smtp::Stats::default());
    let listener_config = coffer_smtp::ListenerConfig {
        name: "smtp".into(),
        hostname,
        tls: s.tls,
        max_message_bytes: config.max_message_bytes as usize,
        max_recipients: s.max_recipients,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        max_connections_per_range: s.max_connections_per_range,
        max_connections_per_minute_per_ip: s.max_connections_per_minute_per_ip,
        command_timeout: Duration::from_secs(s.command_timeout_secs),
        data_timeout: Duration::from_secs(s.data_timeout_secs),
        min_free_bytes: s.min_free_bytes,
        data_dir: config.data.clone(),
    };
    // Bind every address first: a mistake in any of them stops the start, not half of it.
    let mut sockets = Vec::new();
    for address in std::iter::once(&s.listen).chain(&s.also_listen) {
        let socket = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!("cannot listen for SMTP on {address} (port 25 needs root or CAP_NET_BIND_SERVICE; see README)")
        })?;
        sockets.push(socket);
    }
    let mut tasks = Vec::new();
    for socket in sockets {
        let bound = socket.local_addr()?;
        let listener = coffer_smtp::Listener {
            config: listener_config.clone(),
            pipeline: pipeline.clone(),
            addresses: addresses.clone(),
            tls: tls.clone(),
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(listener.serve(socket, stopping.clone())));
        // A plain line scripts and tests can wait for.
        println!("smtp listening on {bound}");
        tracing::info!(%bound, tls = ?s.tls, "SMTP journaling listener started");
    }
    let task = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    });
    let flusher = {
        let stats = stats.clone();
        let catalog = archive.catalog.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                stats.flush(&catalog, "smtp").await;
            }
        })
    };
    Ok((task, stats, flusher))
}

async fn status(archive: &Archive, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let since = coffer_archive::service::now_secs() - 24 * 3600;
    let traffic = archive.catalog.traffic(since).await?;
    let figures = archive.catalog.listener_figures(since).await?;
    let lag = archive.catalog.index_queue_len().await?;
    let volumes = archive.volumes().await?;
    let tenants = archive.catalog.tenants().await?;
    if json {
        let value = serde_json::json!({
            "traffic": traffic, "listener_figures": figures, "index_lag": lag, "volumes": volumes,
            "tenants": tenants.iter().map(|t| serde_json::json!({"name": t.name, "journal_address": t.journal_address(&config.journal_domain)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Tenants");
    for t in &tenants {
        println!("  {:<20} journal address {}", t.name, t.journal_address(&config.journal_domain));
    }
    println!("Archived in the last 24 hours (by source and tenant)");
    let mut sums: std::collections::BTreeMap<(String, i64), (i64, i64, i64)> = Default::default();
    for r in &traffic {
        let e = sums.entry((r.source.clone(), r.tenant_id)).or_default();
        e.0 += r.messages;
        e.1 += r.bytes;
        e.2 += r.duplicates;
    }
    for ((source, tenant), (m, b, d)) in &sums {
        println!("  {source:<8} tenant {tenant:<4} {m} messages, {b} bytes, {d} duplicates");
    }
    println!("Listener figures in the last 24 hours");
    let mut fig: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for f in &figures {
        *fig.entry((f.listener.clone(), f.figure.clone())).or_default() += f.value;
    }
    for ((listener, figure), v) in &fig {
        println!("  {listener:<8} {figure:<24} {v}");
    }
    println!("Index lag: {lag} messages waiting");
    println!(
        "Volumes: {} ({} open)",
        volumes.len(),
        volumes.iter().filter(|v| v.state == coffer_archive::service::VolumeState::Open).count()
    );
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn import(
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
                    return indexer.run_until_idle().await;
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

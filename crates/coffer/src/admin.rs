//! Administration from the command line, as the machine's operator: every operation is the
//! archive's admin service's (rights, validation, audit), this file only reads arguments and
//! prints answers.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use coffer_archive::admin::{MIN_PASSWORD, NewAccount};
use coffer_archive::service::{VolumeState, now_secs, rfc3339};
use coffer_archive::{Actor, Archive};

use crate::cli::{
    AuditCommand, CertCommand, HoldCommand, RetentionCommand, SecretCommand, TenantCommand, UserCommand, VolumeCommand,
};

/// The first line of stdin, without its line end.
fn first_line_of_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn volume(archive: &Archive, actor: &Actor, command: VolumeCommand) -> anyhow::Result<ExitCode> {
    let admin = archive.admin();
    match command {
        VolumeCommand::List => {
            println!("{:<16} {:<7} {:>10} {:>14} {:>8}  CREATED", "VOLUME", "STATE", "MESSAGES", "BYTES", "SEGMENTS");
            for v in admin.volumes(actor).await? {
                println!(
                    "{:<16} {:<7} {:>10} {:>14} {:>8}  {}",
                    v.id,
                    format!("{:?}", v.state).to_lowercase(),
                    v.records,
                    v.bytes,
                    v.segments,
                    rfc3339(v.created_at as i64)
                );
            }
        }
        VolumeCommand::Close { id } => {
            admin.close_volume(actor, &id).await.with_context(|| format!("volume {id} (`coffer volume list`)"))?;
            println!("volume {id} is closed; new mail goes to a new volume");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tenant(archive: &Archive, actor: &Actor, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let admin = archive.admin();
    match command {
        TenantCommand::Add { name, domains } => {
            let t = admin.add_tenant(actor, &name, &domains).await?;
            println!("tenant {} created; journal address: {}", t.tenant.name, t.journal_address);
        }
        TenantCommand::List => {
            for t in admin.tenants(actor).await? {
                let allowed =
                    if t.networks.is_empty() { String::new() } else { format!("  from {}", t.networks.join(",")) };
                println!("{:<20} {}  {}{}", t.tenant.name, t.journal_address, t.tenant.domains.join(","), allowed);
            }
        }
        TenantCommand::Allow { name, networks } => {
            let tenant = archive.tenant(Some(&name)).await?;
            let mut allowed = Vec::new();
            for n in &networks {
                allowed.push(admin.allow_network(actor, tenant.id, n).await?);
            }
            println!("tenant {name} accepts journal reports from {}", allowed.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cert(archive: &Archive, actor: &Actor, command: CertCommand) -> anyhow::Result<ExitCode> {
    let admin = archive.admin();
    match command {
        CertCommand::Generate { alias, cn, subject } => {
            let kind = coffer_archive::certs::KeyKind::default();
            let info = admin.generate_certificate(actor, &alias, &subject.with_cn(cn), kind).await?;
            println!(
                "certificate {} generated: {} valid until {}; SHA-256 {}",
                info.alias, info.subject, info.not_after, info.sha256
            );
        }
        CertCommand::Import { alias, password_stdin, file } => {
            let data = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let password = if password_stdin {
                first_line_of_stdin()?
            } else {
                std::env::var("COFFER_CERT_PASSWORD").unwrap_or_default()
            };
            let info = admin.import_certificate(actor, &alias, &data, &password).await?;
            println!(
                "certificate {} imported: {} valid until {}; SHA-256 {}",
                info.alias, info.subject, info.not_after, info.sha256
            );
        }
        CertCommand::List => {
            for c in admin.certificates(actor)? {
                println!(
                    "{}\n  subject   {}\n  valid     {} to {}\n  SHA-1     {}\n  SHA-256   {}",
                    c.alias, c.subject, c.not_before, c.not_after, c.sha1, c.sha256
                );
            }
        }
        CertCommand::Export { alias } => {
            print!("{}", admin.certificate_pem(actor, &alias).with_context(|| format!("certificate {alias:?}"))?)
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn secret(archive: &Archive, actor: &Actor, command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set { key } => {
            let value = first_line_of_stdin()?;
            anyhow::ensure!(!value.is_empty(), "give the secret on stdin, e.g. `coffer secret set {key} < file`");
            archive.admin().set_secret(actor, &key, &value).await?;
            println!("secret {key} stored, sealed with the master key");
        }
        SecretCommand::List => {
            for key in archive.admin().secret_names(actor)? {
                println!("{key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(archive: &Archive, actor: &Actor, command: UserCommand) -> anyhow::Result<ExitCode> {
    let admin = archive.admin();
    match command {
        UserCommand::Add { login, role, tenant, addresses, name } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            if std::io::stdin().is_terminal() {
                eprint!("Password for {login} (at least {MIN_PASSWORD} characters): ");
            }
            let password = first_line_of_stdin()?;
            let new = NewAccount { login, display_name: name.unwrap_or_default(), role, password, addresses };
            let user = admin.add_user(actor, &tenant, &new).await.context(
                "the password is read from the first line of stdin, e.g. `coffer user add admin --role administrator < file`",
            )?;
            println!("user {} added to tenant {} with role {}", user.login, tenant.name, user.role);
        }
        UserCommand::List { tenant } => {
            let tenant = match tenant {
                Some(t) => Some(archive.tenant(Some(&t)).await?.id),
                None => None,
            };
            for u in admin.users(actor, tenant).await? {
                let kind = if u.external_id.is_some() { "single sign-on" } else { "local" };
                println!("{:<30} {:<14} {:<15} {}", u.login, u.role, kind, u.addresses.join(", "));
            }
        }
        UserCommand::Key { login, name, role } => {
            let (_, key) = admin.create_api_key(actor, Some(&login), &name, role.as_deref()).await?;
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(archive: &Archive, actor: &Actor, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify => {
            let problems = archive.admin().verify_audit(actor).await?;
            for p in &problems {
                println!("audit log entry {}: {}", p.seq, p.detail);
            }
            if problems.is_empty() {
                println!("audit log intact");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(ExitCode::FAILURE)
        }
        AuditCommand::List { limit } => {
            for e in archive.admin().audit_log(actor, "", limit).await? {
                println!("{:>8}  {}  {:<20} {:<15} {:<16} {}", e.seq, rfc3339(e.at), e.actor, e.ip, e.action, e.detail);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn status(archive: &Archive, actor: &Actor, json: bool) -> anyhow::Result<ExitCode> {
    let s = archive.admin().status(actor, now_secs() - 24 * 3600).await?;
    if json {
        let value = serde_json::json!({
            "traffic": s.traffic, "listener_figures": s.listener_figures, "index_lag": s.index_lag,
            "volumes": s.volumes,
            "tenants": s.tenants.iter().map(|t| serde_json::json!({"name": t.tenant.name, "journal_address": t.journal_address})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Tenants");
    for t in &s.tenants {
        println!("  {:<20} journal address {}", t.tenant.name, t.journal_address);
    }
    println!("Archived in the last 24 hours (by source and tenant)");
    let mut sums: std::collections::BTreeMap<(String, i64), (i64, i64, i64)> = Default::default();
    for r in &s.traffic {
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
    for f in &s.listener_figures {
        *fig.entry((f.listener.clone(), f.figure.clone())).or_default() += f.value;
    }
    for ((listener, figure), v) in &fig {
        println!("  {listener:<8} {figure:<24} {v}");
    }
    println!("Index lag: {} messages waiting", s.index_lag);
    println!(
        "Volumes: {} ({} open)",
        s.volumes.len(),
        s.volumes.iter().filter(|v| v.state == VolumeState::Open).count()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn backup(archive: &Archive, actor: &Actor, out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let s = archive.backup(actor, out).await?;
    println!(
        "backup in {}: {} files ({} bytes), {} copied now ({} bytes); catalog: {}",
        out.display(),
        s.files,
        s.bytes,
        s.copied,
        s.bytes_copied,
        s.catalog
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(from: &std::path::Path, data: &std::path::Path) -> anyhow::Result<ExitCode> {
    let s = coffer_archive::backup::restore(from, data)?;
    println!("restored {} files ({} bytes) into {}; now run `coffer verify`", s.files, s.bytes, data.display());
    Ok(ExitCode::SUCCESS)
}

pub async fn hold(archive: &Archive, actor: &Actor, command: HoldCommand) -> anyhow::Result<ExitCode> {
    use coffer_archive::retention::parse_day;
    let admin = archive.admin();
    match command {
        HoldCommand::Add { name, query, custodians, from, until, tenant, reason } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            let spec = coffer_archive::retention::HoldSpec {
                name,
                reason,
                query,
                custodians,
                date_from: from.as_deref().map(|d| parse_day(d, false)).transpose()?,
                date_until: until.as_deref().map(|d| parse_day(d, true)).transpose()?,
            };
            let hold = admin.place_hold(actor, tenant.id, &spec).await?;
            println!("legal hold {} placed in tenant {}", hold.name, tenant.name);
        }
        HoldCommand::List { tenant } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            println!("{:<24} {:<8} {:<20} {:<30} QUERY / CUSTODIANS", "HOLD", "STATE", "PLACED", "BY");
            for h in admin.holds(actor, Some(tenant.id)).await? {
                let what = [h.query.clone().unwrap_or_default(), h.custodians.join(",")]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" / ");
                println!(
                    "{:<24} {:<8} {:<20} {:<30} {}",
                    h.name,
                    if h.is_active() { "active" } else { "released" },
                    rfc3339(h.placed_at),
                    h.placed_by,
                    what
                );
            }
        }
        HoldCommand::Release { name, reason, tenant } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            admin.release_hold(actor, tenant.id, &name, &reason).await?;
            println!("legal hold {name} released");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retention(archive: &Archive, actor: &Actor, command: RetentionCommand) -> anyhow::Result<ExitCode> {
    use coffer_archive::retention::{RuleSpec, period_text};
    let admin = archive.admin();
    match command {
        RetentionCommand::Add { name, query, keep, priority, min, tenant } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            let rule = admin.add_rule(actor, tenant.id, &RuleSpec { name, query, keep, min, priority }).await?;
            println!("retention rule {} keeps what it matches {}", rule.name, period_text(rule.keep_days));
        }
        RetentionCommand::List { tenant } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            println!("{:>8}  {:<24} {:<8} {:<8} QUERY", "PRIORITY", "RULE", "KEEP", "MINIMUM");
            for r in admin.rules(actor, tenant.id).await? {
                println!(
                    "{:>8}  {:<24} {:<8} {:<8} {}",
                    r.priority,
                    r.name,
                    period_text(r.keep_days),
                    r.min_days.map_or("-".into(), |d| period_text(Some(d))),
                    if r.query.is_empty() { "*" } else { &r.query }
                );
            }
        }
        RetentionCommand::Remove { name, tenant } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            admin.remove_rule(actor, tenant.id, &name).await?;
            println!("retention rule {name} removed");
        }
        RetentionCommand::Run { dry_run, tenant } => {
            let tenant_id = match tenant.as_deref() {
                Some(t) => Some(archive.tenant(Some(t)).await?.id),
                None => None,
            };
            if !dry_run && !archive.holds_store_writer() {
                eprintln!("the serving process holds the store: the retention run is handed to it");
            }
            let report = admin.run_retention(actor, tenant_id, dry_run).await?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            if report.finished > 0 {
                println!("finished {} deletions an interrupted run had begun", report.finished);
            }
            for t in &report.tenants {
                for r in &t.rules {
                    println!(
                        "{}: rule {} (keep {}): {} matched, {} expired, {verb} {}, {} protected by holds, {} by a minimum period{}{}",
                        t.tenant,
                        r.rule,
                        r.keep,
                        r.matched,
                        r.expired,
                        r.deleted,
                        r.held,
                        r.minimum,
                        if r.waiting > 0 { format!(", {} waiting to be indexed", r.waiting) } else { String::new() },
                        if r.unshreddable > 0 {
                            format!(", {} stored before record keys (cannot be shredded alone)", r.unshreddable)
                        } else {
                            String::new()
                        },
                    );
                }
            }
            println!("total: {verb} {}, {} protected by holds", report.deleted(), report.held());
        }
        RetentionCommand::Deleted { tenant, limit } => {
            let tenant = archive.tenant(tenant.as_deref()).await?;
            println!("message,sha256,date,sender_domain,reason,deleted_at,state");
            for d in admin.deletions(actor, tenant.id, limit).await? {
                println!(
                    "{},{},{},{},{},{},{}",
                    d.message,
                    d.sha256,
                    rfc3339(d.date),
                    d.sender_domain,
                    d.reason.replace(',', " "),
                    rfc3339(d.decided_at),
                    d.state
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

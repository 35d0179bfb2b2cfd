//! Export of a result set: a zip of `.eml` files with a SHA-256 manifest (byte-exact), or an
//! mboxrd file (for mail clients; `>From ` quoting as mboxrd defines it).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::ArchiveError;
use crate::service::{Actor, Archive};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Mbox,
    EmlZip,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    pub messages: usize,
    pub bytes: u64,
    /// Messages left out because their original could not be read (only with `skip_damaged`):
    /// id and why. The zip's manifest lists them too.
    pub skipped: Vec<(i64, String)>,
}

impl Archive {
    /// Writes the messages a query matches to `out`. The file appears under its name only when
    /// complete (it is written beside it under a temporary name, then renamed), so a failed export
    /// never leaves a complete-looking partial one; both outcomes are audited. A message whose
    /// original cannot be read fails the export, or with `skip_damaged` is left out and listed.
    pub async fn export(
        &self,
        actor: &Actor,
        query: &str,
        format: ExportFormat,
        out: &Path,
        skip_damaged: bool,
    ) -> Result<ExportSummary, ArchiveError> {
        self.export_as(actor, query, format, out, skip_damaged, &out.display().to_string()).await
    }

    /// [`Archive::export`], audited with `destination` in place of the file's path (a download
    /// is written to a temporary file whose name means nothing to a reader of the audit log).
    pub async fn export_as(
        &self,
        actor: &Actor,
        query: &str,
        format: ExportFormat,
        out: &Path,
        skip_damaged: bool,
        destination: &str,
    ) -> Result<ExportSummary, ArchiveError> {
        let partial = partial_name(out);
        let written = self.write_export(actor, query, format, &partial, skip_damaged).await;
        let finished = written.and_then(|summary| {
            std::fs::rename(&partial, out).map_err(|e| ArchiveError::Io(out.display().to_string(), e))?;
            Ok(summary)
        });
        match finished {
            Ok(summary) => {
                let skipped = if summary.skipped.is_empty() {
                    String::new()
                } else {
                    format!(", {} damaged left out ({})", summary.skipped.len(), ids_list(&summary.skipped))
                };
                let detail = format!("{query} → {} messages to {destination}{skipped}", summary.messages);
                self.audit(actor, "export", &detail).await?;
                Ok(summary)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                self.audit(actor, "export failed", &format!("{query} → {destination}: {e}")).await?;
                Err(e)
            }
        }
    }

    async fn write_export(
        &self,
        actor: &Actor,
        query: &str,
        format: ExportFormat,
        out: &Path,
        skip_damaged: bool,
    ) -> Result<ExportSummary, ArchiveError> {
        let ids = self.matching_ids(actor, query).await?;
        let io = |e: std::io::Error| ArchiveError::Io(out.display().to_string(), e);
        let file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
        let mut summary = ExportSummary::default();
        match format {
            ExportFormat::Mbox => {
                let mut w = file;
                for chunk in ids.chunks(200) {
                    for (row, raw) in self.originals(actor, chunk, skip_damaged, &mut summary.skipped).await? {
                        let sender = row.sender.or(row.from_addr).unwrap_or_else(|| "MAILER-DAEMON".into());
                        write_mbox_entry(&mut w, &sender, row.date, &raw).map_err(io)?;
                        summary.messages += 1;
                        summary.bytes += raw.len() as u64;
                    }
                }
                w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
            }
            ExportFormat::EmlZip => {
                let zip_err =
                    |e: zip::result::ZipError| ArchiveError::Io(out.display().to_string(), std::io::Error::other(e));
                let mut zip = zip::ZipWriter::new(file);
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(true);
                let mut sums = String::new();
                let mut manifest = String::from("id,sha256,size,date,message_id,subject\n");
                let mut volumes = std::collections::BTreeSet::new();
                for chunk in ids.chunks(200) {
                    for (row, raw) in self.originals(actor, chunk, skip_damaged, &mut summary.skipped).await? {
                        volumes.insert(row.record.volume.clone());
                        let name = format!("messages/{}.eml", row.id);
                        zip.start_file(&name, options).map_err(zip_err)?;
                        zip.write_all(&raw).map_err(io)?;
                        sums.push_str(&format!("{}  {}\n", row.sha256, name));
                        manifest.push_str(&format!(
                            "{},{},{},{},{},{}\n",
                            row.id,
                            row.sha256,
                            row.size,
                            crate::service::rfc3339(row.date),
                            csv(row.message_id.as_deref().unwrap_or_default()),
                            csv(row.subject.as_deref().unwrap_or_default())
                        ));
                        summary.messages += 1;
                        summary.bytes += raw.len() as u64;
                    }
                }
                zip.start_file("SHA256SUMS", options).map_err(zip_err)?;
                zip.write_all(sums.as_bytes()).map_err(io)?;
                zip.start_file("manifest.csv", options).map_err(zip_err)?;
                zip.write_all(manifest.as_bytes()).map_err(io)?;
                if !summary.skipped.is_empty() {
                    let mut list = String::from("id,reason\n");
                    for (id, why) in &summary.skipped {
                        list.push_str(&format!("{id},{}\n", csv(why)));
                    }
                    zip.start_file("SKIPPED.csv", options).map_err(zip_err)?;
                    zip.write_all(list.as_bytes()).map_err(io)?;
                }
                // For those who see the whole tenant: what was deleted, when and why.
                if actor.visibility.is_none() {
                    let deleted = self.catalog.deletions(actor.tenant.id, 1_000_000).await?;
                    if !deleted.is_empty() {
                        let mut list = String::from("id,sha256,date,sender_domain,reason,deleted_at\n");
                        for d in &deleted {
                            list.push_str(&format!(
                                "{},{},{},{},{},{}\n",
                                d.message,
                                d.sha256,
                                crate::service::rfc3339(d.date),
                                csv(&d.sender_domain),
                                csv(&d.reason),
                                crate::service::rfc3339(d.decided_at)
                            ));
                        }
                        zip.start_file("DELETED.csv", options).map_err(zip_err)?;
                        zip.write_all(list.as_bytes()).map_err(io)?;
                    }
                }
                let tokens = self.latest_timestamps(&volumes).await?;
                if !tokens.is_empty() {
                    let mut index = String::from("volume,token_record,covers_record,chain_head_sha256,file\n");
                    for (volume, seq, t) in &tokens {
                        let name = format!("timestamps/{volume}-{seq}.tst");
                        zip.start_file(&name, options).map_err(zip_err)?;
                        zip.write_all(&t.token).map_err(io)?;
                        index.push_str(&format!("{volume},{seq},{},{},{name}\n", t.covers, hex::encode(t.chain_head)));
                    }
                    zip.start_file("timestamps/index.csv", options).map_err(zip_err)?;
                    zip.write_all(index.as_bytes()).map_err(io)?;
                    zip.start_file("timestamps/README.txt", options).map_err(zip_err)?;
                    zip.write_all(TIMESTAMPS_README.as_bytes()).map_err(io)?;
                }
                let w = zip.finish().map_err(zip_err)?;
                w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
            }
        }
        Ok(summary)
    }

    /// The latest timestamp token of each of `volumes` that has one: (volume, its record, token).
    async fn latest_timestamps(
        &self,
        volumes: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<(String, u64, coffer_store::Timestamp)>, ArchiveError> {
        let store = self.store.clone();
        let volumes: Vec<String> = volumes.iter().cloned().collect();
        crate::service::blocking(move || {
            let mut out = Vec::new();
            for volume in volumes {
                // From the last segment back: tokens come at least hourly, so the last segment
                // nearly always holds the latest, and the rest of the volume is not read.
                let mut latest = None;
                for from in store.segment_starts(&volume)?.into_iter().rev() {
                    store.scan::<ArchiveError>(
                        &volume,
                        from,
                        None,
                        |k| k == coffer_store::RecordKind::Timestamp,
                        |r| {
                            if let Some(t) = r.body.as_deref().and_then(coffer_store::Timestamp::decode) {
                                latest = Some((r.seq, t));
                            }
                            Ok(())
                        },
                    )?;
                    if latest.is_some() {
                        break;
                    }
                }
                out.extend(latest.map(|(seq, t)| (volume.clone(), seq, t)));
            }
            Ok(out)
        })
        .await?
    }

    /// Originals of visible messages, in order.
    async fn originals(
        &self,
        actor: &Actor,
        ids: &[i64],
        skip_damaged: bool,
        skipped: &mut Vec<(i64, String)>,
    ) -> Result<Vec<(coffer_catalog::MessageRow, Vec<u8>)>, ArchiveError> {
        let visible: std::collections::HashSet<i64> = self.summaries(actor, ids).await?.iter().map(|s| s.id).collect();
        let mut out = Vec::new();
        for row in self.catalog.messages(ids).await? {
            if visible.contains(&row.id) {
                match self.read_original(&row).await {
                    Ok(raw) => out.push((row, raw)),
                    Err(e) if skip_damaged && e.is_permanent_for_message() => skipped.push((row.id, e.to_string())),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }
}

/// What an export's `timestamps/` folder is, for whoever receives it.
const TIMESTAMPS_README: &str = "\
Trusted timestamps (RFC 3161) of the volumes these messages are kept in.

Coffer keeps each message as a record of a volume. Every record's header carries the SHA-256 of
the original message (the sums in SHA256SUMS), and each record is chained to the one before it:
chain = SHA-256(previous chain || record header || sealed payload). A time-stamping authority
signed the chain head after record `covers_record` (index.csv); the token is the .tst file. It
proves that the chain head, and so every record up to that one, existed unchanged at the token's
time.

Check a token offline with OpenSSL, given the TSA's CA certificate:

    openssl ts -verify -token_in -in timestamps/<file>.tst -digest <chain_head_sha256> -CAfile tsa-ca.pem

and read its time with `openssl ts -reply -token_in -in timestamps/<file>.tst -text`.
Recomputing the chain head from the volume's segment files needs no key (the chain is over the
sealed bytes); `coffer verify` does it, and checks every token.
";

/// A CSV cell. One that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, a tab or a
/// carriage return first) gets a leading `'`, so opening the manifest runs nothing.
fn csv(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn partial_name(out: &Path) -> std::path::PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn ids_list(skipped: &[(i64, String)]) -> String {
    let ids: Vec<String> = skipped.iter().take(20).map(|(id, _)| id.to_string()).collect();
    let more = if skipped.len() > 20 { format!(" and {} more", skipped.len() - 20) } else { String::new() };
    format!("ids {}{more}", ids.join(", "))
}

/// One mboxrd entry: postmark, the message with `>*From ` lines quoted once more, a blank line.
pub fn write_mbox_entry(w: &mut impl Write, sender: &str, date: i64, raw: &[u8]) -> std::io::Result<()> {
    let asctime = time::OffsetDateTime::from_unix_timestamp(date)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "Thu Jan  1 00:00:00 1970".into());
    let sender: String = sender.chars().filter(|c| !c.is_whitespace()).collect();
    writeln!(w, "From {sender} {asctime}")?;
    let mut lines = raw.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if line[quoted..].starts_with(b"From ") {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
        if lines.peek().is_some() {
            w.write_all(b"\n")?;
        }
    }
    if !raw.ends_with(b"\n") {
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_entries_round_trip_through_the_mbox_reader() {
        let messages: Vec<&[u8]> = vec![
            b"Subject: a\r\n\r\nFrom here\r\n>From there\r\n",
            b"Subject: b\n\nplain\n\n",
            b"Subject: c\r\n\r\nno newline at end",
        ];
        let mut out = Vec::new();
        for m in &messages {
            write_mbox_entry(&mut out, "a@x", 1_700_000_000, m).unwrap();
        }
        let back: Vec<Vec<u8>> = coffer_mail::mbox::Mbox::new(&out).map(|m| m.into_owned()).collect();
        assert_eq!(back[0], messages[0]);
        assert_eq!(back[1], messages[1]);
        assert_eq!(back[2], b"Subject: c\r\n\r\nno newline at end\n", "mbox needs a final newline");
    }
}

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
}

impl Archive {
    pub async fn export(
        &self,
        actor: &Actor,
        query: &str,
        format: ExportFormat,
        out: &Path,
    ) -> Result<ExportSummary, ArchiveError> {
        let ids = self.matching_ids(actor, query).await?;
        let io = |e: std::io::Error| ArchiveError::Io(out.display().to_string(), e);
        let file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
        let mut summary = ExportSummary::default();
        match format {
            ExportFormat::Mbox => {
                let mut w = file;
                for chunk in ids.chunks(200) {
                    for (row, raw) in self.originals(actor, chunk).await? {
                        let sender = row.sender.or(row.from_addr).unwrap_or_else(|| "MAILER-DAEMON".into());
                        write_mbox_entry(&mut w, &sender, row.date, &raw).map_err(io)?;
                        summary.messages += 1;
                        summary.bytes += raw.len() as u64;
                    }
                }
                w.flush().map_err(io)?;
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
                for chunk in ids.chunks(200) {
                    for (row, raw) in self.originals(actor, chunk).await? {
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
                zip.finish().map_err(zip_err)?.flush().map_err(io)?;
            }
        }
        self.audit(actor, "export", &format!("{query} → {} messages to {}", summary.messages, out.display())).await?;
        Ok(summary)
    }

    /// Originals of visible messages, in order.
    async fn originals(
        &self,
        actor: &Actor,
        ids: &[i64],
    ) -> Result<Vec<(coffer_catalog::MessageRow, Vec<u8>)>, ArchiveError> {
        let visible: std::collections::HashSet<i64> = self.summaries(actor, ids).await?.iter().map(|s| s.id).collect();
        let mut out = Vec::new();
        for row in self.catalog.messages(ids).await? {
            if visible.contains(&row.id) {
                let raw = self.read_original(&row).await?;
                out.push((row, raw));
            }
        }
        Ok(out)
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
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

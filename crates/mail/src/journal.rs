//! Exchange journal reports (Exchange 2007+ / Exchange Online envelope journaling, and Exchange 2003).
//!
//! A report is a `multipart/mixed` message marked by `X-MS-Journal-Report` (Exchange 2003:
//! `Content-Identifier: exjournalreport`). Its first text part lists the envelope, one field a line;
//! the attached `message/rfc822` part is the original, unaltered. A report Exchange could not deliver
//! comes back attached to a bounce (NDR); [`unwrap`] finds it there too.
//!
//! Trust a report only where the caller knows the input comes from journaling (a journal listener,
//! journal mailbox or an administrator's import): anyone can write these headers.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessageParser, MessagePart, PartType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
    /// Untrusted submissions and Exchange 2003 list recipients without To/Cc/Bcc.
    Recipient,
}

impl RecipientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
            RecipientKind::Recipient => "recipient",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecipient {
    pub address: String,
    pub kind: RecipientKind,
    /// The distribution list this recipient was expanded from (`Expanded:`).
    pub expanded_from: Option<String>,
    /// The mailbox that forwarded to this recipient (`Forwarded:`).
    pub forwarded_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalReport {
    /// The original message, byte for byte as it was attached.
    pub original: Vec<u8>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub on_behalf_of: Option<String>,
    pub recipients: Vec<JournalRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwrapped {
    Report(JournalReport),
    /// Marked as a journal report but without an original inside: keep the report itself.
    Malformed,
    NotAReport,
}

/// Recognises a journal report, directly or attached to a bounce, and takes it apart. Input the
/// parser breaks on is not a report.
pub fn unwrap(raw: &[u8]) -> Unwrapped {
    std::panic::catch_unwind(|| unwrap_unguarded(raw)).unwrap_or(Unwrapped::NotAReport)
}

fn unwrap_unguarded(raw: &[u8]) -> Unwrapped {
    // Most mail is no report: a byte scan spares it a full MIME parse.
    if !may_hold_a_report(raw) {
        return Unwrapped::NotAReport;
    }
    let Some(message) = MessageParser::default().parse(raw) else {
        return Unwrapped::NotAReport;
    };
    if is_report(&message.parts[0]) {
        return match take_apart(raw, &message) {
            Some(report) => Unwrapped::Report(report),
            None => Unwrapped::Malformed,
        };
    }
    // A bounce (NDR) of a journal report carries the report as an attached message.
    for part in &message.parts {
        if let PartType::Message(inner) = &part.body
            && is_report(&inner.parts[0])
        {
            let bytes = attached_bytes(raw, part, inner);
            return match unwrap_unguarded(&bytes) {
                Unwrapped::NotAReport => Unwrapped::Malformed,
                found => found,
            };
        }
    }
    Unwrapped::NotAReport
}

/// True when the marker of a report (`X-MS-Journal-Report`, or Exchange 2003's `exjournalreport`)
/// occurs anywhere, in any case: a report, or a bounce carrying one.
fn may_hold_a_report(raw: &[u8]) -> bool {
    const MARKER: &[u8] = b"x-ms-journal-report";
    const OLD_MARKER: &[u8] = b"exjournalreport";
    let at = |i: usize, needle: &[u8]| raw.get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle));
    // 'j' is rare in mail; both markers have one at a fixed place.
    memchr::memchr2_iter(b'j', b'J', raw).any(|j| (j >= 5 && at(j - 5, MARKER)) || (j >= 2 && at(j - 2, OLD_MARKER)))
}

fn is_report(root: &MessagePart<'_>) -> bool {
    root.headers.iter().any(|h| {
        let name = h.name();
        name.eq_ignore_ascii_case("X-MS-Journal-Report")
            || (name.eq_ignore_ascii_case("Content-Identifier")
                && h.value().as_text().is_some_and(|v| v.trim().eq_ignore_ascii_case("exjournalreport")))
    })
}

fn take_apart(raw: &[u8], message: &Message<'_>) -> Option<JournalReport> {
    let children = message.parts[0].sub_parts()?;
    let mut envelope = None;
    let mut original = None;
    for &id in children {
        let part = message.parts.get(id as usize)?;
        match &part.body {
            PartType::Text(text) if envelope.is_none() => envelope = Some(text.clone()),
            PartType::Message(inner) if original.is_none() => {
                original = Some(attached_bytes(raw, part, inner).into_owned())
            }
            _ => {}
        }
    }
    let mut report = JournalReport {
        original: original?,
        sender: None,
        subject: None,
        message_id: None,
        on_behalf_of: None,
        recipients: Vec::new(),
    };
    parse_envelope(envelope.as_deref().unwrap_or_default(), &mut report);
    Some(report)
}

/// The bytes of an attached message: a slice of the input when it was not transfer-encoded (so
/// they are exactly what was sent), the decoded bytes otherwise.
fn attached_bytes<'a>(raw: &'a [u8], part: &MessagePart<'_>, inner: &'a Message<'_>) -> Cow<'a, [u8]> {
    if part.encoding == Encoding::None
        && let Some(slice) = raw.get(part.offset_body as usize..part.offset_end as usize)
    {
        return Cow::Borrowed(slice);
    }
    Cow::Borrowed(inner.raw_message())
}

fn parse_envelope(text: &str, report: &mut JournalReport) {
    for line in text.lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let kind = match field.trim().to_ascii_lowercase().as_str() {
            "sender" => {
                report.sender.get_or_insert_with(|| address_of(value));
                continue;
            }
            "subject" => {
                report.subject.get_or_insert_with(|| value.to_owned());
                continue;
            }
            "message-id" => {
                report.message_id.get_or_insert_with(|| value.trim_matches(['<', '>']).to_owned());
                continue;
            }
            "on-behalf-of" => {
                report.on_behalf_of.get_or_insert_with(|| address_of(value));
                continue;
            }
            "to" => RecipientKind::To,
            "cc" => RecipientKind::Cc,
            "bcc" => RecipientKind::Bcc,
            "recipient" | "recipients" => RecipientKind::Recipient,
            _ => continue,
        };
        parse_recipients(value, kind, &mut report.recipients);
    }
}

/// `member@contoso.com, Expanded: sales@contoso.com` or (Exchange 2003) `a@x, BCC: b@x`.
fn parse_recipients(value: &str, line_kind: RecipientKind, out: &mut Vec<JournalRecipient>) {
    let mut current: Option<usize> = None;
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (label, addr) = match item.split_once(':') {
            Some((label, addr)) if !label.contains('@') => (label.trim().to_ascii_lowercase(), addr.trim()),
            _ => (String::new(), item),
        };
        let address = address_of(addr);
        if !address.contains('@') {
            continue;
        }
        match (label.as_str(), current) {
            ("expanded", Some(i)) => out[i].expanded_from = Some(address),
            ("forwarded", Some(i)) => out[i].forwarded_from = Some(address),
            (label, _) => {
                let kind = match label {
                    "to" => RecipientKind::To,
                    "cc" => RecipientKind::Cc,
                    "bcc" => RecipientKind::Bcc,
                    _ => line_kind,
                };
                out.push(JournalRecipient { address, kind, expanded_from: None, forwarded_from: None });
                current = Some(out.len() - 1);
            }
        }
    }
}

/// `Name <a@b>` → `a@b`; a bare address is returned trimmed.
fn address_of(value: &str) -> String {
    match (value.rfind('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => value[start + 1..end].trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Q3 numbers\r\nMessage-ID: <q3@contoso.com>\r\n\r\nSee attached.\r\n";

    fn report(envelope: &str, cte: &str, original: &str) -> String {
        format!(
            "From: Microsoft Outlook <postmaster@contoso.com>\r\nTo: journal-abc@archive.test\r\n\
             X-MS-Journal-Report: \r\nSubject: Q3 numbers\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"jr\"\r\n\r\n\
             --jr\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{envelope}\r\n\
             --jr\r\nContent-Type: message/rfc822\r\n{cte}\r\n{original}\r\n--jr--\r\n"
        )
    }

    #[test]
    fn every_envelope_field_and_annotation_is_read() {
        let envelope = "Sender: alice@contoso.com\r\nSubject: Q3 numbers\r\nMessage-Id: <q3@contoso.com>\r\n\
            To: bob@contoso.com\r\nCc: carol@contoso.com\r\nBcc: dave@contoso.com\r\n\
            To: member@contoso.com, Expanded: sales@contoso.com\r\n\
            Cc: fwd@contoso.com, Forwarded: erin@contoso.com\r\nRecipient: someone@fabrikam.com\r\n\
            On-Behalf-Of: boss@contoso.com";
        let raw = report(envelope, "", ORIGINAL);
        let Unwrapped::Report(r) = unwrap(raw.as_bytes()) else { panic!("not unwrapped") };
        assert_eq!(r.original, ORIGINAL.as_bytes());
        assert_eq!(r.sender.as_deref(), Some("alice@contoso.com"));
        assert_eq!(r.message_id.as_deref(), Some("q3@contoso.com"));
        assert_eq!(r.on_behalf_of.as_deref(), Some("boss@contoso.com"));
        let got: Vec<_> = r.recipients.iter().map(|r| (r.address.as_str(), r.kind)).collect();
        assert_eq!(
            got,
            [
                ("bob@contoso.com", RecipientKind::To),
                ("carol@contoso.com", RecipientKind::Cc),
                ("dave@contoso.com", RecipientKind::Bcc),
                ("member@contoso.com", RecipientKind::To),
                ("fwd@contoso.com", RecipientKind::Cc),
                ("someone@fabrikam.com", RecipientKind::Recipient),
            ]
        );
        assert_eq!(r.recipients[3].expanded_from.as_deref(), Some("sales@contoso.com"));
        assert_eq!(r.recipients[4].forwarded_from.as_deref(), Some("erin@contoso.com"));
    }

    #[test]
    fn binary_original_with_eight_bit_bytes_comes_out_byte_exact() {
        let original = "From: a@x.com\r\nSubject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\u{c4}rger \u{fc}ber \u{f6}l\r\n\r\n";
        let raw = report("Sender: a@x.com\r\nTo: b@x.com", "Content-Transfer-Encoding: binary\r\n", original);
        let Unwrapped::Report(r) = unwrap(raw.as_bytes()) else { panic!("not unwrapped") };
        assert_eq!(r.original, original.as_bytes());
    }

    #[test]
    fn base64_encoded_original_is_decoded() {
        let raw = report(
            "Sender: a@x.com\r\nTo: b@x.com",
            "Content-Transfer-Encoding: base64\r\n",
            "U3ViamVjdDogaGkNCg0KYm9keQ0K",
        );
        let Unwrapped::Report(r) = unwrap(raw.as_bytes()) else { panic!("not unwrapped") };
        assert_eq!(r.original, b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn exchange_2003_report_is_recognised_by_content_identifier() {
        let raw = report("Sender: a@x.com\r\nRecipients: b@x.com, BCC: c@x.com", "", ORIGINAL)
            .replace("X-MS-Journal-Report: \r\n", "Content-Identifier: ExJournalReport\r\n");
        let Unwrapped::Report(r) = unwrap(raw.as_bytes()) else { panic!("not unwrapped") };
        assert_eq!(r.recipients[0].kind, RecipientKind::Recipient);
        assert_eq!(r.recipients[1].kind, RecipientKind::Bcc);
        assert_eq!(r.recipients[1].address, "c@x.com");
    }

    #[test]
    fn report_attached_to_a_bounce_is_found() {
        let inner = report("Sender: a@x.com\r\nBcc: hidden@x.com", "", ORIGINAL);
        let ndr = format!(
            "From: postmaster@contoso.com\r\nSubject: Undeliverable: Q3 numbers\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"ndr\"\r\n\r\n\
             --ndr\r\nContent-Type: text/plain\r\n\r\nDelivery has failed.\r\n\
             --ndr\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n\
             --ndr\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--ndr--\r\n"
        );
        let Unwrapped::Report(r) = unwrap(ndr.as_bytes()) else { panic!("not unwrapped") };
        assert_eq!(r.original, ORIGINAL.as_bytes());
        assert_eq!(r.recipients[0].address, "hidden@x.com");
    }

    #[test]
    fn the_report_marker_is_found_in_any_case() {
        let raw = report("Sender: a@x.com\r\nTo: b@x.com", "", ORIGINAL)
            .replace("X-MS-Journal-Report", "x-ms-JOURNAL-report");
        assert!(matches!(unwrap(raw.as_bytes()), Unwrapped::Report(_)));
    }

    #[test]
    fn report_without_original_is_malformed_and_plain_mail_is_not_a_report() {
        let raw = "X-MS-Journal-Report: \r\nContent-Type: text/plain\r\n\r\nSender: a@x.com\r\n";
        assert_eq!(unwrap(raw.as_bytes()), Unwrapped::Malformed);
        assert_eq!(unwrap(ORIGINAL.as_bytes()), Unwrapped::NotAReport);
    }
}

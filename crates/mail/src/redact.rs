//! The copy of a message a reader who may not see blind recipients gets: every header field that
//! names a Bcc or envelope recipient removed, in the message and in every message attached to it,
//! and marked as a redacted copy. The original bytes stay in the archive untouched; auditors and
//! administrators get those.

use mail_parser::{Encoding, Message, MessageParser, PartType};

/// Header fields that name blind or envelope recipients: the Bcc family, and the fields a
/// delivering server writes with the address it delivered to (which, on a Bcc'd recipient's
/// copy, names them).
pub const BLIND_FIELDS: &[&str] = &[
    "bcc",
    "resent-bcc",
    "x-original-bcc",
    "x-ms-exchange-organization-bcc",
    "delivered-to",
    "x-original-to",
    "x-envelope-to",
    "envelope-to",
    "x-rcpt-to",
    "x-apparently-to",
];

/// True for a header field a reader without the right to see blind recipients must not see. A
/// `Received:` field's `for <address>` clause names the envelope recipient too.
pub fn is_blind_field(name: &str, value: &[u8]) -> bool {
    let name = name.trim().to_ascii_lowercase();
    BLIND_FIELDS.contains(&name.as_str()) || (name == "received" && names_recipient(value))
}

fn names_recipient(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received).to_ascii_lowercase();
    text.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w[0] == "for" && w[1].contains('@'))
}

/// Nested messages deeper than this are left as they are (the parser stops there too).
const MAX_DEPTH: usize = 16;

/// The redacted copy of `raw`. Its first line says it is not the original, and which original
/// (`of`, e.g. its SHA-256), so the two can be tied together.
pub fn redact_blind(raw: &[u8], of: &str) -> Vec<u8> {
    let body = std::panic::catch_unwind(|| redact_message(raw, 0)).unwrap_or_else(|_| strip_top_fields(raw));
    let mut out =
        format!("X-Coffer-Redacted: a copy without blind-recipient fields; not the original ({of})\r\n").into_bytes();
    out.extend_from_slice(&body);
    out
}

fn redact_message(raw: &[u8], depth: usize) -> Vec<u8> {
    let Some(message) = MessageParser::default().parse(raw) else {
        return strip_top_fields(raw);
    };
    // (start, end, replacement) in `raw`, in order, not overlapping.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    collect(&message, raw, depth, &mut edits);
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (start, end, with) in edits {
        if start < at || end > raw.len() || start > end {
            continue;
        }
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(&with);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// Edits for one (possibly nested) message whose offsets point into `raw`.
fn collect(message: &Message, raw: &[u8], depth: usize, edits: &mut Vec<(usize, usize, Vec<u8>)>) {
    let Some(root) = message.parts.first() else { return };
    for h in &root.headers {
        let (start, end) = (h.offset_field as usize, line_end(raw, h.offset_end as usize));
        if let Some(value) = raw.get(h.offset_start as usize..end)
            && is_blind_field(h.name.as_str(), value)
        {
            edits.push((start, end, Vec::new()));
        }
    }
    if depth >= MAX_DEPTH {
        return;
    }
    for part in &message.parts {
        let PartType::Message(inner) = &part.body else { continue };
        // An attached message that is not transfer-encoded is parsed in place: its offsets point
        // into the same bytes.
        if inner.raw_message.as_ptr() == raw.as_ptr() {
            collect(inner, raw, depth + 1, edits);
        } else {
            // A transfer-encoded attached message: decode, redact, encode again as base64.
            let decoded: &[u8] = inner.raw_message.as_ref();
            let redacted = redact_message(decoded, depth + 1);
            if redacted != decoded && part.encoding == Encoding::Base64 {
                let (start, end) = (part.offset_body as usize, part.offset_end as usize);
                edits.push((start, end, base64_lines(&redacted)));
            }
        }
    }
}

/// The end of the header line (and its folded continuation lines) that `offset` lies on.
fn line_end(raw: &[u8], offset: usize) -> usize {
    let mut at = offset.min(raw.len());
    if at > 0 && raw[at - 1] == b'\n' {
        return at;
    }
    while at < raw.len() {
        if raw[at] == b'\n' {
            at += 1;
            if at < raw.len() && (raw[at] == b' ' || raw[at] == b'\t') {
                continue;
            }
            return at;
        }
        at += 1;
    }
    at
}

/// For input no parser understands: the blind fields of the first header block.
fn strip_top_fields(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    let mut dropping = false;
    while at < raw.len() {
        let end = raw[at..].iter().position(|&b| b == b'\n').map_or(raw.len(), |p| at + p + 1);
        let line = &raw[at..end];
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(&raw[at..]);
            return out;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            dropping = match line.iter().position(|&b| b == b':') {
                Some(colon) => is_blind_field(&String::from_utf8_lossy(&line[..colon]), &line[colon + 1..]),
                None => false,
            };
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        at = end;
    }
    out
}

fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 38 + 4);
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 { ALPHABET[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if chunk.len() > 2 { ALPHABET[n as usize & 63] } else { b'=' });
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(raw: &[u8]) -> String {
        String::from_utf8(redact_blind(raw, "abc")).unwrap()
    }

    #[test]
    fn a_sent_copy_loses_its_bcc_line_with_its_continuation() {
        let raw = b"From: alice@contoso.com\r\nTo: bob@contoso.com\r\nBcc: dave@contoso.com,\r\n erin@contoso.com\r\nSubject: hi\r\n\r\nBcc: this body line stays\r\n";
        let out = redacted(raw);
        assert!(out.starts_with("X-Coffer-Redacted: "), "{out}");
        assert!(!out.contains("dave@") && !out.contains("erin@"), "{out}");
        assert!(out.contains("To: bob@contoso.com\r\nSubject: hi\r\n\r\nBcc: this body line stays\r\n"), "{out}");
    }

    #[test]
    fn delivery_fields_and_received_for_clauses_go_too() {
        let raw = b"Received: from a by b for <dave@contoso.com>; Mon, 1 Jan 2024 00:00:00 +0000\r\nReceived: from c by d; Mon, 1 Jan 2024 00:00:00 +0000\r\nDelivered-To: dave@contoso.com\r\nX-Original-Bcc: dave@contoso.com\r\nResent-Bcc: dave@contoso.com\r\nFrom: alice@contoso.com\r\nSubject: x\r\n\r\nbody\r\n";
        let out = redacted(raw);
        assert!(!out.contains("dave@"), "{out}");
        assert!(out.contains("Received: from c by d;"), "{out}");
    }

    #[test]
    fn an_attached_message_loses_its_bcc_line_plain_or_base64() {
        let inner = "From: carol@fabrikam.com\r\nBcc: dave@contoso.com\r\nSubject: inner\r\n\r\ninner body\r\n";
        let plain = format!(
            "From: alice@contoso.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}--b--\r\n"
        );
        let out = redacted(plain.as_bytes());
        assert!(!out.contains("dave@"), "{out}");
        assert!(out.contains("From: carol@fabrikam.com\r\nSubject: inner\r\n"), "{out}");
        let encoded = base64_lines(inner.as_bytes());
        let b64 = format!(
            "From: alice@contoso.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
            String::from_utf8(encoded).unwrap()
        );
        let out = redact_blind(b64.as_bytes(), "abc");
        let parsed = MessageParser::default().parse(&out).unwrap();
        let attached = parsed.attachments().next().unwrap();
        let PartType::Message(m) = &attached.body else {
            panic!("the attached message is still a message: {attached:?}")
        };
        let text = String::from_utf8_lossy(m.raw_message.as_ref()).into_owned();
        assert!(!text.contains("dave@") && text.contains("inner body"), "{text}");
    }

    #[test]
    fn unparseable_input_loses_the_blind_fields_of_its_header() {
        let out = strip_top_fields(b"Bcc: dave@contoso.com\r\nX: y\r\n\r\nBcc: stays\r\n");
        assert_eq!(out, b"X: y\r\n\r\nBcc: stays\r\n");
    }
}

//! MIME → the archived document: the searchable view of one original message.

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

/// How much decoded text (body, and attachments together) one message contributes to the index.
/// Beyond it the text is cut and the document flagged [`Flags::TEXT_TRUNCATED`]; the original
/// bytes are always kept whole.
pub const MAX_TEXT: usize = 1 << 20;

/// Facts about a message that a reviewer may need to know; stored in the catalog with the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// No parser understood the bytes (no header block): stored as is, searchable only by its metadata.
    pub const UNPARSEABLE: Flags = Flags(1);
    /// Parsed, but some part had a broken encoding or structure.
    pub const MALFORMED: Flags = Flags(2);
    /// Archived from an Exchange journal report (the report's recipients are envelope recipients).
    pub const JOURNALED: Flags = Flags(4);
    /// The decoded text was longer than [`MAX_TEXT`] and only its start is indexed.
    pub const TEXT_TRUNCATED: Flags = Flags(8);
    /// Looked like a journal report but had no original message inside; archived as the report itself.
    pub const JOURNAL_MALFORMED: Flags = Flags(16);
    /// Rebuilt from an item of an Outlook data file (PST): its MIME is Coffer's, made from the
    /// item's properties and transport headers; the file's hash and the node id say where.
    pub const FROM_PST: Flags = Flags(32);
    /// Rebuilt from an Outlook item file (.msg).
    pub const FROM_MSG: Flags = Flags(64);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    /// Short names for display and JSON.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::UNPARSEABLE, "unparseable"),
            (Self::MALFORMED, "malformed"),
            (Self::JOURNALED, "journaled"),
            (Self::TEXT_TRUNCATED, "text-truncated"),
            (Self::JOURNAL_MALFORMED, "journal-malformed"),
            (Self::FROM_PST, "from-pst"),
            (Self::FROM_MSG, "from-msg"),
        ]
        .into_iter()
        .filter(|(f, _)| self.contains(*f))
        .map(|(_, n)| n)
        .collect()
    }
}

/// One address as written in a header: display name and address (case kept; compare lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: usize,
    /// Decoded text of text-like attachments (text/*, HTML, attached messages).
    pub text: Option<String>,
    /// A document the indexer reads the text of (not text, picture, sound or film), or an
    /// attached message that holds one.
    pub documents: bool,
}

/// The searchable view of one original message. Built by [`parse`]; the original bytes stay the
/// record of truth and this can be rebuilt from them at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedDocument {
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Unix seconds from the Date header, when it has a sensible one.
    pub date: Option<i64>,
    pub from: Vec<Mailbox>,
    pub sender: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: Option<String>,
    /// Plain text of the body parts (HTML converted to text), at most [`MAX_TEXT`] bytes.
    pub body: String,
    pub attachments: Vec<Attachment>,
    pub flags: Flags,
}

impl ArchivedDocument {
    pub fn has_attachments(&self) -> bool {
        !self.attachments.is_empty()
    }
}

/// Parses the original bytes of one message. Never fails: should the parser itself break on some
/// input, the message is flagged unparseable (and still archived by the caller).
pub fn parse(raw: &[u8]) -> ArchivedDocument {
    std::panic::catch_unwind(|| parse_unguarded(raw))
        .unwrap_or_else(|_| ArchivedDocument { flags: Flags::UNPARSEABLE, ..Default::default() })
}

/// A header sent as raw 8-bit bytes that are not UTF-8 (no encoded words: an old or careless
/// mailer), decoded in the charset it is most likely in: the one the message declares for its text,
/// else what `chardetng` finds in the bytes. None when the header is absent, UTF-8 or ASCII.
pub(crate) fn eight_bit_header(raw: &[u8], message: &mail_parser::Message, name: &str) -> Option<String> {
    let h = message.headers().iter().find(|h| h.name().eq_ignore_ascii_case(name))?;
    let bytes = raw.get(h.offset_start as usize..h.offset_end as usize)?;
    decode_eight_bit(bytes, message)
}

/// Raw header bytes that are not UTF-8, decoded as [`eight_bit_header`] says; unfolded, trimmed.
pub(crate) fn decode_eight_bit(bytes: &[u8], message: &mail_parser::Message) -> Option<String> {
    if std::str::from_utf8(bytes).is_ok() {
        return None;
    }
    let declared = message
        .parts
        .iter()
        .filter_map(|p| p.content_type()?.attribute("charset"))
        .filter_map(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes()))
        .find(|e| *e != encoding_rs::UTF_8);
    let encoding = declared.unwrap_or_else(|| {
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        detector.feed(bytes, true);
        detector.guess(None, chardetng::Utf8Detection::Deny)
    });
    let (text, _, _) = encoding.decode(bytes);
    let unfolded: String = text.split(['\r', '\n']).map(str::trim_start).collect::<Vec<_>>().join(" ");
    Some(unfolded.trim().to_owned())
}

fn parse_unguarded(raw: &[u8]) -> ArchivedDocument {
    let mut doc = ArchivedDocument::default();
    let Some(message) = MessageParser::default().parse(raw) else {
        doc.flags.insert(Flags::UNPARSEABLE);
        return doc;
    };
    if !message.headers().iter().any(|h| is_field_name(h.name())) {
        doc.flags.insert(Flags::UNPARSEABLE);
        return doc;
    }
    if message.parts.iter().any(|p| p.is_encoding_problem) {
        doc.flags.insert(Flags::MALFORMED);
    }
    doc.message_id = message.message_id().map(clean_id);
    doc.in_reply_to = id_list(message.in_reply_to());
    doc.references = id_list(message.references());
    // The Date header; when it is missing or broken, the newest Received header's date (when the
    // message was delivered) is the next best thing.
    let sane = |d: &mail_parser::DateTime| {
        // Years 1970..=9999: anything else is a broken header, not a date worth sorting by.
        Some(d.to_timestamp()).filter(|t| d.is_valid() && (0..253_402_300_800).contains(t))
    };
    doc.date =
        message.date().and_then(sane).or_else(|| message.received().and_then(|r| r.date()).and_then(|d| sane(&d)));
    doc.from = mailboxes(message.from());
    doc.sender = mailboxes(message.sender());
    doc.to = message.all_to().flat_map(|a| mailboxes(Some(a))).collect();
    doc.cc = message.all_cc().flat_map(|a| mailboxes(Some(a))).collect();
    doc.bcc = message.all_bcc().flat_map(|a| mailboxes(Some(a))).collect();
    doc.reply_to = mailboxes(message.reply_to());
    doc.subject = eight_bit_header(raw, &message, "Subject").or_else(|| message.subject().map(str::to_owned));

    // Parts a strict parser drops are read here for the index (the original bytes stay as they
    // are) and the message is flagged.
    let stray = stray_parts(raw, &message);
    let recovered = stray.as_ref().and_then(|s| MessageParser::default().parse(&s.wrapped[..]));
    let leaves = |p: &&mail_parser::MessagePart| !matches!(p.body, PartType::Multipart(_));
    let stray_leaves = recovered.as_ref().map_or(0, |r| r.parts.iter().skip(1).filter(leaves).count());
    if stray_leaves > 0 {
        doc.flags.insert(Flags::MALFORMED);
    }
    // The recovered structure's text parts are then the body, as they would have been.
    let structure = match (&stray, &recovered) {
        (Some(stray), Some(recovered)) if stray.replaces_structure(recovered) => recovered,
        _ => &message,
    };

    let mut budget = TextBudget::new();
    for i in 0..structure.text_body_count() {
        if let Some(text) = structure.body_text(i) {
            budget.push(&mut doc.body, &text);
        }
    }
    let inline = crate::view::inline_images(structure);
    for (_, part) in structure.attachments().enumerate().filter(|(i, _)| !inline.contains(i)) {
        doc.attachments.push(attachment(part, &mut budget));
    }
    if let (Some(stray), Some(recovered)) = (&stray, &recovered)
        && !stray.mismatched
    {
        for part in recovered.parts.iter().skip(1).filter(leaves) {
            doc.attachments.push(attachment(part, &mut budget));
        }
    }
    if budget.truncated {
        doc.flags.insert(Flags::TEXT_TRUNCATED);
    }
    doc
}

/// Parts of a multipart message that its declared boundary does not reach: written after its
/// closing delimiter, or delimited by a boundary other than the declared one (a common mailer
/// bug; strict parsers drop them, piler finds them).
pub(crate) struct StrayParts {
    /// The stray parts under a multipart/mixed header of their own boundary, ready to parse.
    pub wrapped: Vec<u8>,
    /// The declared boundary delimits nothing: these are all the message's parts.
    pub mismatched: bool,
}

impl StrayParts {
    /// Whether `recovered` (these parts, parsed) stands in for the message's own structure: under
    /// a mismatched boundary the parser missed all of it, so the recovered parts are the message.
    pub fn replaces_structure(&self, recovered: &mail_parser::Message) -> bool {
        self.mismatched && recovered.parts.iter().skip(1).any(|p| !matches!(p.body, PartType::Multipart(_)))
    }
}

/// The stray parts of a parsed message, if it has any.
pub(crate) fn stray_parts(raw: &[u8], message: &mail_parser::Message) -> Option<StrayParts> {
    let content_type = message.content_type()?;
    if !content_type.ctype().eq_ignore_ascii_case("multipart") {
        return None;
    }
    let declared = content_type.attribute("boundary")?;
    let open = format!("\n--{declared}");
    let body = raw.get(message.root_part().raw_body_offset() as usize..)?;
    let (boundary, parts, mismatched) = match memchr::memmem::find(body, open.as_bytes()) {
        None => {
            let (boundary, at) = body_boundary(body)?;
            (boundary, &body[at..], true)
        }
        Some(first) => {
            let close = format!("\n--{declared}--");
            let at = first + memchr::memmem::find(&body[first..], close.as_bytes())? + close.len();
            let rest = &body[at..];
            let start = memchr::memmem::find(rest, open.as_bytes())?;
            // The first delimiter line of the stray parts (a delimiter, not a second close).
            let after = rest.get(start + open.len()..)?;
            if !(after.starts_with(b"\r\n") || after.starts_with(b"\n")) {
                return None;
            }
            (declared.to_owned(), &rest[start..], false)
        }
    };
    let header = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
    Some(StrayParts { wrapped: [header.as_bytes(), parts].concat(), mismatched })
}

/// The boundary a body's delimiter lines use, and where the first of them starts (at its line
/// break): a line `--token` of boundary characters (RFC 2046) followed by a header field line, that
/// comes again later.
fn body_boundary(body: &[u8]) -> Option<(String, usize)> {
    let mut at = 0;
    // Each candidate is looked for again in the rest of the body: a few, so that a body of many
    // such lines costs a few passes, not one per line.
    let mut candidates = 0;
    // Only the first lines are looked at: a delimiter comes before the first part.
    for _ in 0..1000 {
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |n| at + n);
        let line = body[at..end].strip_suffix(b"\r").unwrap_or(&body[at..end]);
        if let Some(token) = line.strip_prefix(b"--") {
            let bchar = |b: &u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(b);
            let next_start = (end + 1).min(body.len());
            let next_end = memchr::memchr(b'\n', &body[next_start..]).map_or(body.len(), |n| next_start + n);
            let next = &body[next_start..next_end];
            let is_header = next
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|colon| std::str::from_utf8(&next[..colon]).is_ok_and(is_field_name));
            if (1..=70).contains(&token.len()) && token.iter().all(bchar) && !token.ends_with(b" ") && is_header {
                candidates += 1;
                if candidates > 8 {
                    return None;
                }
                // A boundary delimits more than once (the next part or the close): a one-off
                // line such as a forwarded message's "-----Original Message-----" is not one.
                if memchr::memmem::find(&body[end..], [b"\n", line].concat().as_slice()).is_some() {
                    // The delimiter starts at the line break before it (a body's first line has none).
                    let start = at.checked_sub(1).map_or(0, |n| if n > 0 && body[n - 1] == b'\r' { n - 1 } else { n });
                    return Some((String::from_utf8_lossy(token).into_owned(), start));
                }
            }
        }
        if end >= body.len() {
            return None;
        }
        at = end + 1;
    }
    None
}

/// One attachment as the index sees it: its name, type, size and the text it holds.
fn attachment(part: &mail_parser::MessagePart, budget: &mut TextBudget) -> Attachment {
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase();
    let mut name = part.attachment_name().map(str::to_owned);
    let mut text = None;
    let documents = is_document(part);
    match &part.body {
        PartType::Text(t) => text = Some(budget.take(t)),
        PartType::Html(h) => text = Some(budget.take(&mail_parser::decoders::html::html_to_text(h))),
        PartType::Message(inner) => {
            // An attached message is searchable by its subject and text, like MailStore does.
            let subject = inner.subject().unwrap_or_default();
            if name.is_none() && !subject.is_empty() {
                name = Some(format!("{subject}.eml"));
            }
            let mut inner_text = subject.to_owned();
            for i in 0..inner.text_body_count() {
                if let Some(t) = inner.body_text(i) {
                    inner_text.push('\n');
                    inner_text.push_str(&t);
                }
            }
            text = Some(budget.take(&inner_text));
        }
        _ => {}
    }
    Attachment { name, content_type, size: part.contents().len(), text: text.filter(|t| !t.is_empty()), documents }
}

/// Whether `part` is, or (as an attached message, [`crate::view::MAX_NESTED_MESSAGES`] deep)
/// holds, a document whose text only an extractor can read.
fn is_document(part: &mail_parser::MessagePart) -> bool {
    fn within(part: &mail_parser::MessagePart, depth: usize) -> bool {
        match &part.body {
            PartType::Text(_) | PartType::Html(_) | PartType::Multipart(_) => false,
            PartType::Message(inner) => {
                depth < crate::view::MAX_NESTED_MESSAGES && inner.attachments().any(|p| within(p, depth + 1))
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                let media = part
                    .content_type()
                    .is_some_and(|ct| ["image", "audio", "video"].iter().any(|m| ct.ctype().eq_ignore_ascii_case(m)));
                !media
            }
        }
    }
    within(part, 0)
}

/// RFC 5322 field names are printable ASCII without a colon; without one such header, what the
/// parser found is not a header block.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Shares [`MAX_TEXT`] between the body and the attachments of one message.
struct TextBudget {
    left: usize,
    truncated: bool,
}

impl TextBudget {
    fn new() -> Self {
        TextBudget { left: MAX_TEXT, truncated: false }
    }
    fn take(&mut self, text: &str) -> String {
        let mut out = String::new();
        self.push(&mut out, text);
        out
    }
    fn push(&mut self, out: &mut String, text: &str) {
        if text.len() + 1 > self.left {
            self.truncated = true;
            let cut = floor_char_boundary(text, self.left.saturating_sub(1));
            out.push_str(&text[..cut]);
            self.left = 0;
            return;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(text);
        self.left -= text.len() + 1;
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address()?.trim();
            if addr.is_empty() {
                return None;
            }
            Some(Mailbox {
                name: a.name().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
                address: addr.to_owned(),
            })
        })
        .collect()
}

fn id_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value {
        mail_parser::HeaderValue::Text(t) => vec![clean_id(t)],
        mail_parser::HeaderValue::TextList(list) => list.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
}

fn clean_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn a_part_written_after_the_closing_boundary_is_recovered_for_the_index_and_flagged() {
        let raw = b"From: a@contoso.com\r\nSubject: Stray part\r\nContent-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n\
--xyz\r\nContent-Type: text/plain\r\n\r\nThe body.\r\n\
--xyz\r\nContent-Type: text/plain; name=first.txt\r\nContent-Disposition: attachment; filename=first.txt\r\n\r\nfirst attachment\r\n\
--xyz--\r\n\
--xyz\r\nContent-Type: text/plain; name=second.txt\r\nContent-Disposition: attachment; filename=second.txt\r\n\r\nplatypusrecovered words\r\n\
--xyz--\r\n";
        let doc = parse(raw);
        let names: Vec<_> = doc.attachments.iter().filter_map(|a| a.name.as_deref()).collect();
        assert_eq!(names, ["first.txt", "second.txt"]);
        assert!(doc.attachments[1].text.as_deref().unwrap_or("").contains("platypusrecovered"), "{doc:?}");
        assert!(doc.flags.contains(Flags::MALFORMED));
        // A well-formed message recovers nothing.
        let cut = std::str::from_utf8(raw).unwrap().split("--xyz--\r\n").next().unwrap().to_owned() + "--xyz--\r\n";
        let doc = parse(cut.as_bytes());
        assert_eq!(doc.attachments.len(), 1);
        assert!(!doc.flags.contains(Flags::MALFORMED));
    }

    #[test]
    fn parts_under_a_boundary_other_than_the_declared_one_are_recovered_for_the_index_and_flagged() {
        // The header declares one boundary, the body delimits its parts with another (a mailer
        // that rewrote one and not the other): a strict parser sees one unreadable preamble.
        let raw = b"From: a@contoso.com\r\nSubject: Mismatched\r\nContent-Type: multipart/mixed; boundary=\"declared\"\r\n\r\n\
This is a multi-part message in MIME format.\r\n\
--actual\r\nContent-Type: text/plain\r\n\r\nThe quokkabody text.\r\n\
--actual\r\nContent-Type: text/plain; name=terms.txt\r\nContent-Disposition: attachment; filename=terms.txt\r\n\r\nwombatterms apply\r\n\
--actual--\r\n";
        let doc = parse(raw);
        let names: Vec<_> = doc.attachments.iter().filter_map(|a| a.name.as_deref()).collect();
        assert_eq!(names, ["terms.txt"], "{doc:?}");
        assert_eq!(doc.attachments.len(), 1, "{doc:?}");
        assert!(doc.attachments[0].text.as_deref().unwrap_or("").contains("wombatterms"), "{doc:?}");
        assert!(doc.body.contains("quokkabody"), "{doc:?}");
        assert!(!doc.body.contains("wombatterms"), "the attachment is not read as body: {doc:?}");
        assert!(doc.flags.contains(Flags::MALFORMED));
        // Nor is a forwarded message's separator, though a header line follows it: a boundary
        // delimits more than once (the parts, then the close).
        let raw = b"From: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=\"declared\"\r\n\r\n\
Please see below, kangaroopreamble.\r\n\r\n-----Original Message-----\r\nFrom: b@contoso.com\r\n\
Subject: older\r\n\r\nThe older text.\r\n";
        let doc = parse(raw);
        assert!(!doc.flags.contains(Flags::MALFORMED), "{doc:?}");
        let text: String = doc.attachments.iter().filter_map(|a| a.text.clone()).collect::<String>() + &doc.body;
        assert!(text.contains("kangaroopreamble"), "nothing is lost from the index: {doc:?}");
        // A line that merely starts with two dashes is not taken for a boundary.
        let raw = b"From: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=\"declared\"\r\n\r\n\
-- \r\nA signature, not a part.\r\n";
        let doc = parse(raw);
        assert!(!doc.flags.contains(Flags::MALFORMED), "{doc:?}");
        assert!(doc.attachments.iter().all(|a| a.name.is_none()), "{doc:?}");
    }

    #[test]
    fn an_eight_bit_subject_in_an_undeclared_charset_is_read_in_the_charset_it_is_in() {
        // GB2312 bytes, the body declaring its charset (the headers' is undeclared, as usual).
        let mut raw = b"From: a@contoso.cn\r\nSubject: ".to_vec();
        raw.extend(hex("bcbeb6c8b1a8b8e6bacdb2c6cef1cafdbedd"));
        raw.extend(b"\r\nContent-Type: text/plain; charset=gb2312\r\n\r\nbody\r\n");
        assert_eq!(parse(&raw).subject.as_deref(), Some("季度报告和财务数据"));
        // Big5 with no charset anywhere: detected.
        let mut raw = b"From: a@contoso.tw\r\nSubject: ".to_vec();
        raw.extend(hex("b77cc4b3b04fbffdbb50b05db0c8b3f8a769"));
        raw.extend(b"\r\n\r\nbody\r\n");
        assert_eq!(parse(&raw).subject.as_deref(), Some("會議記錄與財務報告"));
        // UTF-8 and encoded words are left as they are.
        let raw = "From: a@b.c\r\nSubject: Grüße =?UTF-8?Q?caf=C3=A9?=\r\n\r\nx\r\n";
        assert_eq!(parse(raw.as_bytes()).subject.as_deref(), Some("Grüße café"));
    }

    #[test]
    fn multipart_alternative_with_attachment_yields_text_and_attachment() {
        let raw = concat!(
            "From: \"Müller, Jörg\" <joerg.mueller@contoso.de>\r\n",
            "To: a@x.com, \"B\" <b@y.com>\r\nCc: c@z.com\r\nBcc: d@w.com\r\n",
            "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n",
            "Message-ID: <abc@contoso.de>\r\nDate: Tue, 05 Mar 2024 10:00:00 +0100\r\n",
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n",
            "--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n",
            "--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo Welt\r\n",
            "--b2\r\nContent-Type: text/html\r\n\r\n<p>Hallo <b>Welt</b></p>\r\n--b2--\r\n",
            "--b1\r\nContent-Type: text/csv; name=report.csv\r\n",
            "Content-Disposition: attachment; filename=report.csv\r\n\r\nq1,q2\r\n--b1--\r\n"
        );
        let doc = parse(raw.as_bytes());
        assert_eq!(doc.subject.as_deref(), Some("Grüße"));
        assert_eq!(doc.message_id.as_deref(), Some("abc@contoso.de"));
        assert_eq!(doc.date, Some(1_709_629_200));
        assert_eq!(doc.from[0].name.as_deref(), Some("Müller, Jörg"));
        assert_eq!(doc.to.len(), 2);
        assert_eq!(doc.bcc[0].address, "d@w.com");
        assert!(doc.body.contains("Hallo Welt"));
        assert_eq!(doc.attachments.len(), 1);
        assert_eq!(doc.attachments[0].name.as_deref(), Some("report.csv"));
        assert_eq!(doc.attachments[0].text.as_deref(), Some("q1,q2"));
        assert_eq!(doc.flags, Flags::default());
    }

    #[test]
    fn bytes_without_headers_are_flagged_unparseable() {
        for raw in [&b""[..], b"\x00\x01\x02\xff\xfe garbage", b"\r\n\r\n"] {
            assert!(parse(raw).flags.contains(Flags::UNPARSEABLE), "{raw:?}");
        }
    }

    #[test]
    fn date_without_zone_falls_back_to_the_received_header() {
        let doc = parse(
            b"Received: from x by y; Thu, 25 Jul 2002 19:06:35 +0000\r\nDate: Thu, 25 Jul 2002 19:06:35\r\n\r\nb",
        );
        assert_eq!(doc.date, Some(1_027_623_995));
    }

    #[test]
    fn absurd_date_is_dropped_rather_than_sorted_by() {
        let doc = parse(b"Subject: x\r\nDate: Mon, 1 Jan 99999 00:00:00 +0000\r\n\r\nx");
        assert_eq!(doc.date, None);
    }

    #[test]
    fn text_beyond_the_limit_is_cut_and_flagged() {
        let mut raw = b"Subject: big\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_TEXT + 10));
        let doc = parse(&raw);
        assert!(doc.flags.contains(Flags::TEXT_TRUNCATED));
        assert!(doc.body.len() <= MAX_TEXT);
    }
}

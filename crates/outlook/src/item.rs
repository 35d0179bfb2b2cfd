//! An Outlook item as MAPI properties — the one model both readers (PST, .msg) fill — and its
//! rebuilding as MIME. Where the item kept its transport headers (mail that came in over the
//! internet), they head the message; otherwise the headers are made from its properties.

use std::collections::HashMap;

use crate::mime::{Part, filename_params, mailbox, without_structure, word};
use coffer_extract::rtf::RtfBody;

/// A property's value, as far as rebuilding needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Int(i32),
    Bool(bool),
    /// FILETIME: 100-nanosecond intervals since 1601-01-01.
    Time(i64),
}

pub type Props = HashMap<u16, Value>;

/// A message, contact, appointment…: its properties, recipients and attachments.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub props: Props,
    /// The named properties rebuilding knows (`email1`, `start`, …; see `named`).
    pub named: HashMap<&'static str, Value>,
    pub recipients: Vec<Props>,
    pub attachments: Vec<Attached>,
}

impl Item {
    /// Keeps the named properties among `props` that `names` (the file's map) knows.
    pub fn name_properties(&mut self, names: &HashMap<u16, &'static str>) {
        for (id, v) in &self.props {
            if let Some(name) = names.get(id) {
                self.named.insert(name, v.clone());
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attached {
    pub props: Props,
    pub data: AttachedData,
}

#[derive(Debug, Clone)]
pub enum AttachedData {
    Bytes(Vec<u8>),
    Message(Box<Item>),
}

pub fn text(props: &Props, id: u16) -> Option<String> {
    match props.get(&id)? {
        Value::Text(t) => Some(t.trim_end_matches('\0').to_owned()),
        _ => None,
    }
}

fn int(props: &Props, id: u16) -> Option<i32> {
    match props.get(&id)? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn date(props: &Props, id: u16) -> Option<String> {
    let Value::Time(filetime) = props.get(&id)? else { return None };
    let secs = filetime / 10_000_000 - 11_644_473_600;
    let at = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    at.format(&time::format_description::well_known::Rfc2822).ok()
}

impl Item {
    /// The subject, without the prefix-length marker (0x01, length) it may start with.
    fn subject(&self) -> Option<String> {
        let subject = text(&self.props, 0x0037)?;
        Some(match subject.strip_prefix('\u{1}') {
            Some(rest) => rest.chars().skip(1).collect(),
            None => subject,
        })
    }

    /// The MAPI message class (`IPM.Note`, `IPM.Contact`, …).
    pub fn class(&self) -> String {
        text(&self.props, 0x001A).unwrap_or_else(|| "IPM.Note".into())
    }

    /// To (1), Cc (2) and Bcc (3) recipients as `Name <address>`.
    fn recipients(&self) -> [Vec<String>; 3] {
        let mut out: [Vec<String>; 3] = Default::default();
        for r in &self.recipients {
            let kind = int(r, 0x0C15).unwrap_or(1) & 0xF;
            let address = text(r, 0x39FE).or_else(|| text(r, 0x3003)).unwrap_or_default();
            let name = text(r, 0x3001).unwrap_or_default();
            if let Some(list) = out.get_mut((kind as usize).saturating_sub(1)) {
                list.push(mailbox(&name, &address));
            }
        }
        out
    }

    /// The header block: the transport headers it came with, or fields from its properties.
    fn head(&self) -> Vec<u8> {
        let p = &self.props;
        let [to, cc, bcc] = self.recipients();
        if let Some(transport) = text(p, 0x007D).filter(|h| h.contains(':')) {
            let mut head = without_structure(&transport);
            // A sent copy's Bcc recipients are only in its recipient table.
            let has_bcc = transport.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:"));
            if !bcc.is_empty() && !has_bcc {
                head.extend_from_slice(format!("Bcc: {}\r\n", bcc.join(",\r\n ")).as_bytes());
            }
            return head;
        }
        let mut fields: Vec<String> = Vec::new();
        let sender_name = text(p, 0x0042).or_else(|| text(p, 0x0C1A)).unwrap_or_default();
        let sender = text(p, 0x5D01)
            .or_else(|| text(p, 0x0065).filter(|a| a.contains('@')))
            .or_else(|| text(p, 0x0C1F).filter(|a| a.contains('@')))
            .unwrap_or_default();
        let from = mailbox(&sender_name, &sender);
        if !from.is_empty() {
            fields.push(format!("From: {from}"));
        }
        for (name, list) in [("To", &to), ("Cc", &cc), ("Bcc", &bcc)] {
            if !list.is_empty() {
                fields.push(format!("{name}: {}", list.join(",\r\n ")));
            }
        }
        if let Some(subject) = self.subject() {
            fields.push(format!("Subject: {}", word(&subject)));
        }
        if let Some(d) = date(p, 0x0039).or_else(|| date(p, 0x0E06)).or_else(|| date(p, 0x3007)) {
            fields.push(format!("Date: {d}"));
        }
        for (id, name) in [(0x1035, "Message-ID"), (0x1042, "In-Reply-To"), (0x1039, "References")] {
            if let Some(v) = text(p, id).filter(|v| !v.trim().is_empty()) {
                fields.push(format!("{name}: {}", v.replace(['\r', '\n'], " ")));
            }
        }
        let class = self.class();
        if class != "IPM.Note" {
            fields.push(format!("X-MS-Message-Class: {}", word(&class)));
        }
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The whole message as MIME; `boundary` makes its boundaries (unique per item, so the same
    /// item always makes the same bytes).
    pub fn mime(&self, boundary: &str) -> Vec<u8> {
        let p = &self.props;
        let mut plain = text(p, 0x1000).map(|t| Part::leaf("text/plain; charset=utf-8", Vec::new(), t.as_bytes()));
        let mut html = match p.get(&0x1013) {
            Some(Value::Bytes(b)) => {
                // Kept as bytes in the item's internet code page.
                let charset = int(p, 0x3FDE)
                    .and_then(|cp| coffer_extract::code_page(cp.into()))
                    .unwrap_or(encoding_rs::UTF_8)
                    .name();
                Some(Part::leaf(&format!("text/html; charset={charset}"), Vec::new(), b))
            }
            Some(Value::Text(h)) => Some(Part::leaf("text/html; charset=utf-8", Vec::new(), h.as_bytes())),
            _ => None,
        };
        // A body kept as compressed RTF gives the HTML it encapsulates, or its text.
        if let (Some(Value::Bytes(compressed)), true) = (p.get(&0x1009), html.is_none()) {
            match coffer_extract::rtf::compressed_body(compressed) {
                Some(RtfBody::Html(h)) => html = Some(Part::leaf("text/html; charset=utf-8", Vec::new(), h.as_bytes())),
                Some(RtfBody::Text(t)) if plain.is_none() => {
                    plain = Some(Part::leaf("text/plain; charset=utf-8", Vec::new(), t.as_bytes()))
                }
                _ => {}
            }
        }
        let class = self.class();
        let body = if class.starts_with("IPM.Contact") {
            Part::leaf("text/vcard; charset=utf-8", Vec::new(), self.vcard().as_bytes())
        } else if class.starts_with("IPM.Appointment") {
            Part::leaf("text/calendar; charset=utf-8; method=PUBLISH", Vec::new(), self.icalendar(boundary).as_bytes())
        } else {
            match (plain, html) {
                (Some(plain), Some(html)) => {
                    Part::multipart("alternative", &format!("=_alt_{boundary}"), vec![plain, html])
                }
                (Some(one), None) | (None, Some(one)) => one,
                (None, None) => Part::leaf("text/plain; charset=utf-8", Vec::new(), b""),
            }
        };
        let top = if self.attachments.is_empty() {
            body
        } else {
            let mut parts = vec![body];
            for (n, a) in self.attachments.iter().enumerate() {
                parts.push(a.part(&format!("{boundary}_{n}")));
            }
            Part::multipart("mixed", &format!("=_mix_{boundary}"), parts)
        };
        top.into_message(&self.head())
    }
}

/// A vCard or iCalendar text value, escaped.
fn escaped(v: &str) -> String {
    v.replace('\\', "\\\\").replace(';', "\\;").replace(',', "\\,").replace("\r\n", "\\n").replace('\n', "\\n")
}

fn utc(filetime: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(filetime / 10_000_000 - 11_644_473_600).ok()?;
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    at.format(&f).ok()
}

impl Item {
    fn named_text(&self, name: &str) -> Option<String> {
        match self.named.get(name)? {
            Value::Text(t) => Some(t.trim_end_matches('\0').to_owned()).filter(|t| !t.is_empty()),
            _ => None,
        }
    }

    fn named_time(&self, name: &str) -> Option<String> {
        match self.named.get(name)? {
            Value::Time(t) => utc(*t),
            _ => None,
        }
    }

    /// A contact as vCard 3.0 (RFC 2426).
    fn vcard(&self) -> String {
        let p = &self.props;
        let t = |id| text(p, id).unwrap_or_default();
        let name = text(p, 0x3001).or_else(|| self.subject()).unwrap_or_default();
        let mut lines = vec!["BEGIN:VCARD".to_owned(), "VERSION:3.0".into(), format!("FN:{}", escaped(&name))];
        lines.push(format!(
            "N:{};{};{};{};{}",
            escaped(&t(0x3A11)),
            escaped(&t(0x3A06)),
            escaped(&t(0x3A44)),
            escaped(&t(0x3A45)),
            escaped(&t(0x3A05))
        ));
        if let Some(org) = text(p, 0x3A16) {
            lines.push(format!("ORG:{}", escaped(&org)));
        }
        if let Some(title) = text(p, 0x3A17) {
            lines.push(format!("TITLE:{}", escaped(&title)));
        }
        for key in ["email1", "email2", "email3"] {
            if let Some(email) = self.named_text(key) {
                lines.push(format!("EMAIL;TYPE=INTERNET:{}", escaped(&email)));
            }
        }
        for (id, kind) in [(0x3A08, "WORK,VOICE"), (0x3A09, "HOME,VOICE"), (0x3A1C, "CELL"), (0x3A24, "WORK,FAX")] {
            if let Some(number) = text(p, id) {
                lines.push(format!("TEL;TYPE={kind}:{}", escaped(&number)));
            }
        }
        if let Some(note) = text(p, 0x1000).filter(|n| !n.trim().is_empty()) {
            lines.push(format!("NOTE:{}", escaped(&note)));
        }
        lines.push("END:VCARD".into());
        lines.join("\r\n") + "\r\n"
    }

    /// An appointment as an iCalendar event (RFC 5545); `uid` makes its UID when it has no
    /// Message-ID.
    fn icalendar(&self, uid: &str) -> String {
        let p = &self.props;
        let uid = text(p, 0x1035).unwrap_or_else(|| format!("{uid}@outlook-import.coffer"));
        let mut lines = vec![
            "BEGIN:VCALENDAR".to_owned(),
            "VERSION:2.0".into(),
            "PRODID:-//Coffer//Outlook import//EN".into(),
            "BEGIN:VEVENT".into(),
            format!("UID:{}", escaped(uid.trim_matches(['<', '>']))),
        ];
        if let Some(Value::Time(created)) = p.get(&0x3007)
            && let Some(stamp) = utc(*created)
        {
            lines.push(format!("DTSTAMP:{stamp}"));
        }
        if let Some(subject) = self.subject() {
            lines.push(format!("SUMMARY:{}", escaped(&subject)));
        }
        if let Some(location) = self.named_text("location") {
            lines.push(format!("LOCATION:{}", escaped(&location)));
        }
        for (key, field) in [("start", "DTSTART"), ("end", "DTEND")] {
            if let Some(at) = self.named_time(key) {
                lines.push(format!("{field}:{at}"));
            }
        }
        if let Some(body) = text(p, 0x1000).filter(|n| !n.trim().is_empty()) {
            lines.push(format!("DESCRIPTION:{}", escaped(&body)));
        }
        lines.extend(["END:VEVENT".into(), "END:VCALENDAR".into()]);
        lines.join("\r\n") + "\r\n"
    }
}

impl Attached {
    pub fn name(&self) -> Option<String> {
        text(&self.props, 0x3707).or_else(|| text(&self.props, 0x3704)).or_else(|| text(&self.props, 0x3001))
    }

    fn part(&self, boundary: &str) -> Part {
        let p = &self.props;
        let content_id = text(p, 0x3712).filter(|c| !c.trim().is_empty());
        let hidden = matches!(p.get(&0x7FFE), Some(Value::Bool(true)));
        let disposition = if content_id.is_some() && hidden { "inline" } else { "attachment" };
        let mut extra = Vec::new();
        let name = self.name();
        match &name {
            Some(n) => extra.push(format!("Content-Disposition: {disposition}; {}", filename_params(n))),
            None => extra.push(format!("Content-Disposition: {disposition}")),
        }
        if let Some(cid) = &content_id {
            let cid: String = cid.chars().filter(|c| !c.is_control() && !"<>".contains(*c)).collect();
            extra.push(format!("Content-ID: <{cid}>"));
        }
        match &self.data {
            AttachedData::Bytes(b) => {
                let mime_type = text(p, 0x370E)
                    .filter(|t| t.contains('/') && !t.contains(['\r', '\n', ';', '"']))
                    .unwrap_or_else(|| "application/octet-stream".into());
                let content_type = match &name {
                    Some(n) => format!("{mime_type}; name=\"{}\"", n.replace(['"', '\\', '\r', '\n'], "_")),
                    None => mime_type,
                };
                Part::leaf(&content_type, extra, b)
            }
            AttachedData::Message(inner) => Part::message(extra, inner.mime(boundary)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_without_transport_headers_gets_them_from_its_properties() {
        let mut item = Item::default();
        item.props.insert(0x0037, Value::Text("\u{1}\u{1}Plans".into()));
        item.props.insert(0x0C1A, Value::Text("Alice".into()));
        item.props.insert(0x5D01, Value::Text("alice@contoso.com".into()));
        item.props.insert(0x1000, Value::Text("Hello".into()));
        item.props.insert(0x0039, Value::Time(133_000_000_000_000_000));
        for (kind, addr) in [(1, "bob@contoso.com"), (3, "dave@contoso.com")] {
            let mut r = Props::new();
            r.insert(0x0C15, Value::Int(kind));
            r.insert(0x39FE, Value::Text(addr.into()));
            item.recipients.push(r);
        }
        let mime = String::from_utf8(item.mime("1")).unwrap();
        assert!(mime.starts_with("From: \"Alice\" <alice@contoso.com>\r\nTo: bob@contoso.com\r\nBcc: dave@contoso.com\r\nSubject: Plans\r\nDate: "), "{mime}");
        assert_eq!(item.mime("1"), item.mime("1"), "the same item makes the same bytes");
    }
}

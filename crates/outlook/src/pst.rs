//! Walking a PST: the folders under the IPM subtree (depth-first, each node once), every item of
//! each folder rebuilt as MIME.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use outlook_pst::ltp::prop_context::PropertyValue;
use outlook_pst::ltp::table_context::TableContext;
use outlook_pst::messaging::attachment::{Attachment, AttachmentData, UnicodeAttachment};
use outlook_pst::messaging::folder::Folder;
use outlook_pst::messaging::message::{Message, UnicodeMessage};
use outlook_pst::messaging::store::{Store, UnicodeStore};
use outlook_pst::ndb::node_id::NodeId;
use outlook_pst::{AnsiPstFile, UnicodePstFile};

use crate::OutlookError;
use crate::mime::{Part, filename_params, mailbox, without_structure, word};

/// Folders nest at most this deep; a deeper (or looping) hierarchy is damaged.
const MAX_DEPTH: usize = 64;

/// One item of the file, rebuilt as a message.
#[derive(Debug, Clone)]
pub struct PstItem {
    /// Its folder's path below the store's top, `/`-separated (e.g. `Inbox/Projects`).
    pub folder: String,
    /// Its node id in the file: with the file's hash, where it came from.
    pub node: u32,
    /// The MAPI message class (`IPM.Note`, `IPM.Contact`, …).
    pub class: String,
    pub mime: Vec<u8>,
    /// What of the item could not be read (an attachment, say); the rest came in.
    pub problems: Vec<String>,
}

pub enum PstEvent {
    /// First: the store's own name (Outlook shows it as the top folder).
    Store {
        display_name: String,
    },
    Item(PstItem),
    /// A folder or item that could not be read; the others are.
    Damaged {
        folder: String,
        node: Option<u32>,
        why: String,
    },
}

/// Reads the file, telling `on` of each item as it is read; `on` answers false to stop.
pub fn read_pst(path: &Path, on: &mut dyn FnMut(PstEvent) -> bool) -> Result<(), OutlookError> {
    let file = match UnicodePstFile::open(path) {
        Ok(f) => f,
        Err(e) if AnsiPstFile::open(path).is_ok() => {
            let _ = e;
            return Err(OutlookError::Ansi);
        }
        Err(e) => return Err(OutlookError::Unreadable(e.to_string())),
    };
    let store = UnicodeStore::read(Rc::new(file)).map_err(|e| OutlookError::Unreadable(e.to_string()))?;
    let display_name = store.properties().display_name().unwrap_or_default();
    if !on(PstEvent::Store { display_name }) {
        return Ok(());
    }
    let top = store
        .properties()
        .ipm_sub_tree_entry_id()
        .and_then(|id| store.open_folder(&id))
        .map_err(|e| OutlookError::Unreadable(format!("its top folder (the IPM subtree): {e}")))?;
    let mut seen = HashSet::new();
    walk(&store, top.as_ref(), "", 0, &mut seen, on);
    Ok(())
}

/// One folder's items, then its subfolders; false when `on` asked to stop.
fn walk(
    store: &Rc<UnicodeStore>,
    folder: &dyn Folder,
    path: &str,
    depth: usize,
    seen: &mut HashSet<u32>,
    on: &mut dyn FnMut(PstEvent) -> bool,
) -> bool {
    if let Some(contents) = folder.contents_table() {
        for row in contents.rows_matrix() {
            let node = u32::from(row.id());
            let event = match item(store, node) {
                Ok((class, mime, problems)) => {
                    PstEvent::Item(PstItem { folder: path.to_owned(), node, class, mime, problems })
                }
                Err(why) => PstEvent::Damaged { folder: path.to_owned(), node: Some(node), why },
            };
            if !on(event) {
                return false;
            }
        }
    }
    let Some(hierarchy) = folder.hierarchy_table() else { return true };
    for row in hierarchy.rows_matrix() {
        let node = u32::from(row.id());
        if depth >= MAX_DEPTH || !seen.insert(node) {
            let why = "the folder hierarchy loops or nests too deep; this branch is left out".to_owned();
            if !on(PstEvent::Damaged { folder: path.to_owned(), node: Some(node), why }) {
                return false;
            }
            continue;
        }
        let opened = store.properties().make_entry_id(NodeId::from(node)).and_then(|id| store.open_folder(&id));
        let sub = match opened {
            Ok(sub) => sub,
            Err(e) => {
                let why = format!("a subfolder cannot be read: {e}");
                if !on(PstEvent::Damaged { folder: path.to_owned(), node: Some(node), why }) {
                    return false;
                }
                continue;
            }
        };
        let name = sub.properties().display_name().unwrap_or_else(|_| format!("folder {node}"));
        let name = name.replace('/', "∕");
        let child = if path.is_empty() { name } else { format!("{path}/{name}") };
        if !walk(store, sub.as_ref(), &child, depth + 1, seen, on) {
            return false;
        }
    }
    true
}

/// One item, read and rebuilt: its class, its MIME, and what of it could not be read.
fn item(store: &Rc<UnicodeStore>, node: u32) -> Result<(String, Vec<u8>, Vec<String>), String> {
    let id = store.properties().make_entry_id(NodeId::from(node)).map_err(|e| e.to_string())?;
    let message = UnicodeMessage::read(store.clone(), &id, None).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let attachments = attachments(&message, &format!("{node:x}"), &mut problems);
    let class = text(message.properties().get(0x001A)).unwrap_or_else(|| "IPM.Note".into());
    Ok((class, build(message.as_ref(), attachments, &format!("{node:x}")), problems))
}

fn text(v: Option<&PropertyValue>) -> Option<String> {
    match v? {
        PropertyValue::Unicode(u) => Some(u.to_string()),
        PropertyValue::String8(s) => Some(s.to_string()),
        _ => None,
    }
    .map(|s| s.trim_end_matches('\0').to_owned())
}

fn time(v: Option<&PropertyValue>) -> Option<String> {
    let PropertyValue::Time(filetime) = v? else { return None };
    // 100-nanosecond intervals since 1601-01-01.
    let secs = filetime / 10_000_000 - 11_644_473_600;
    let at = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    at.format(&time::format_description::well_known::Rfc2822).ok()
}

/// A table's rows as property id → value.
fn rows(table: &dyn TableContext) -> Vec<(u32, HashMap<u16, PropertyValue>)> {
    let context = table.context();
    table
        .rows_matrix()
        .map(|row| {
            let mut values = HashMap::new();
            if let Ok(columns) = row.columns(context) {
                for (column, value) in context.columns().iter().zip(columns) {
                    if let Some(value) = value
                        && let Ok(v) = table.read_column(&value, column.prop_type())
                    {
                        values.insert(column.prop_id(), v);
                    }
                }
            }
            (u32::from(row.id()), values)
        })
        .collect()
}

/// To (1), Cc (2) and Bcc (3) recipients as `Name <address>`.
fn recipients(message: &dyn Message) -> [Vec<String>; 3] {
    let mut out: [Vec<String>; 3] = Default::default();
    let Some(table) = message.recipient_table() else { return out };
    for (_, r) in rows(table.as_ref()) {
        let kind = match r.get(&0x0C15) {
            Some(PropertyValue::Integer32(k)) => *k & 0xF,
            _ => 1,
        };
        let address = text(r.get(&0x39FE)).or_else(|| text(r.get(&0x3003))).unwrap_or_default();
        let name = text(r.get(&0x3001)).unwrap_or_default();
        if let Some(list) = out.get_mut((kind as usize).saturating_sub(1)) {
            list.push(mailbox(&name, &address));
        }
    }
    out
}

/// The header block of the rebuilt message: the transport headers it came with, or fields made
/// from its properties.
fn head(message: &dyn Message) -> Vec<u8> {
    let p = message.properties();
    let [to, cc, bcc] = recipients(message);
    if let Some(transport) = text(p.get(0x007D)).filter(|h| h.contains(':')) {
        let mut head = without_structure(&transport);
        // A sent copy's Bcc recipients are only in its recipient table.
        let has_bcc = transport.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:"));
        if !bcc.is_empty() && !has_bcc {
            head.extend_from_slice(format!("Bcc: {}\r\n", bcc.join(",\r\n ")).as_bytes());
        }
        return head;
    }
    let mut fields: Vec<String> = Vec::new();
    let sender_name = text(p.get(0x0042)).or_else(|| text(p.get(0x0C1A))).unwrap_or_default();
    let sender = text(p.get(0x5D01))
        .or_else(|| text(p.get(0x0065)).filter(|a| a.contains('@')))
        .or_else(|| text(p.get(0x0C1F)).filter(|a| a.contains('@')))
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
    if let Some(subject) = text(p.get(0x0037)) {
        // An ANSI-era subject may start with a prefix-length marker (0x01, length).
        let subject = match subject.strip_prefix('\u{1}') {
            Some(rest) => rest.chars().skip(1).collect(),
            None => subject,
        };
        fields.push(format!("Subject: {}", word(&subject)));
    }
    if let Some(date) = time(p.get(0x0039)).or_else(|| time(p.get(0x0E06))).or_else(|| time(p.get(0x3007))) {
        fields.push(format!("Date: {date}"));
    }
    for (id, name) in [(0x1035, "Message-ID"), (0x1042, "In-Reply-To"), (0x1039, "References")] {
        if let Some(v) = text(p.get(id)).filter(|v| !v.trim().is_empty()) {
            fields.push(format!("{name}: {}", v.replace(['\r', '\n'], " ")));
        }
    }
    let class = text(p.get(0x001A)).unwrap_or_else(|| "IPM.Note".into());
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

/// The charset of an HTML body kept as bytes, from the item's internet code page.
fn charset(code_page: Option<&PropertyValue>) -> &'static str {
    match code_page {
        Some(PropertyValue::Integer32(cp)) => match cp {
            1250 => "windows-1250",
            1251 => "windows-1251",
            1252 => "windows-1252",
            1253 => "windows-1253",
            1254 => "windows-1254",
            1255 => "windows-1255",
            1256 => "windows-1256",
            932 => "shift_jis",
            936 => "gb2312",
            949 => "ks_c_5601-1987",
            950 => "big5",
            20127 => "us-ascii",
            28591 => "iso-8859-1",
            28592 => "iso-8859-2",
            28605 => "iso-8859-15",
            50220..=50222 => "iso-2022-jp",
            51932 => "euc-jp",
            _ => "utf-8",
        },
        _ => "utf-8",
    }
}

/// The message: head, then body (plain and HTML as alternatives) and attachments.
fn build(message: &dyn Message, attachments: Vec<Part>, boundary: &str) -> Vec<u8> {
    let p = message.properties();
    let plain = text(p.get(0x1000)).map(|t| Part::leaf("text/plain; charset=utf-8", Vec::new(), t.as_bytes()));
    let html = match p.get(0x1013) {
        Some(PropertyValue::Binary(b)) => {
            let charset = charset(p.get(0x3FDE));
            Some(Part::leaf(&format!("text/html; charset={charset}"), Vec::new(), b.buffer()))
        }
        other => text(other).map(|h| Part::leaf("text/html; charset=utf-8", Vec::new(), h.as_bytes())),
    };
    let body = match (plain, html) {
        (Some(plain), Some(html)) => Part::multipart("alternative", &format!("=_alt_{boundary}"), vec![plain, html]),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => Part::leaf("text/plain; charset=utf-8", Vec::new(), b""),
    };
    let top = if attachments.is_empty() {
        body
    } else {
        let mut parts = vec![body];
        parts.extend(attachments);
        Part::multipart("mixed", &format!("=_mix_{boundary}"), parts)
    };
    top.into_message(&head(message))
}

/// The attachments of a message read from the file, as parts; an attached message is rebuilt
/// the same way (without its own attachments: `outlook-pst` hands an attached message over
/// without the means to read them). One that cannot be read is left out and said so.
fn attachments(message: &Rc<UnicodeMessage>, boundary: &str, problems: &mut Vec<String>) -> Vec<Part> {
    let Some(table) = message.attachment_table() else { return Vec::new() };
    let mut parts = Vec::new();
    for (row, listed) in rows(table.as_ref()) {
        let attachment = match UnicodeAttachment::read(message.clone(), NodeId::from(row), None) {
            Ok(a) => a,
            Err(e) => {
                // What the attachment table says of it, so the summary can name it.
                let name = text(listed.get(&0x3707)).or_else(|| text(listed.get(&0x3704)));
                let what = match listed.get(&0x3705) {
                    Some(PropertyValue::Integer32(5)) => "an attached message".to_owned(),
                    _ => name.map_or_else(|| format!("attachment {row:x}"), |n| format!("attachment {n}")),
                };
                problems.push(format!("{what} could not be read ({e}); the message came in without it"));
                continue;
            }
        };
        let p = attachment.properties();
        let name = text(p.get(0x3707))
            .or_else(|| text(p.get(0x3704)))
            .or_else(|| text(p.get(0x3001)))
            .unwrap_or_else(|| format!("attachment-{row:x}"));
        let content_id = text(p.get(0x3712)).filter(|c| !c.trim().is_empty());
        let hidden = matches!(p.get(0x7FFE), Some(PropertyValue::Boolean(true)));
        let disposition = if content_id.is_some() && hidden { "inline" } else { "attachment" };
        let mut extra = vec![format!("Content-Disposition: {disposition}; {}", filename_params(&name))];
        if let Some(cid) = &content_id {
            extra.push(format!("Content-ID: <{}>", cid.trim_matches(['<', '>'])));
        }
        match attachment.data() {
            Some(AttachmentData::Binary(b)) => {
                let mime_type = text(p.get(0x370E))
                    .filter(|t| t.contains('/') && !t.contains(['\r', '\n', ';']))
                    .unwrap_or_else(|| "application/octet-stream".into());
                parts.push(Part::leaf(
                    &format!("{mime_type}; name=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_")),
                    extra,
                    b.buffer(),
                ));
            }
            Some(AttachmentData::Message(inner)) => {
                let inner_boundary = format!("{boundary}_{row:x}");
                parts.push(Part::message(extra, build(inner.as_ref(), Vec::new(), &inner_boundary)));
            }
            None => problems.push(format!("attachment {name} holds no data; the message came in without it")),
        }
    }
    parts
}

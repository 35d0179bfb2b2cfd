//! Walking a PST: the folders under the IPM subtree (depth-first, each node once), every item of
//! each folder read into an [`Item`] and rebuilt as MIME.

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
use crate::item::{Attached, AttachedData, Item, Props, Value, text};

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
    /// First: the store's own name (Outlook shows it as the top folder) and how many items its
    /// folders list (for progress).
    Store {
        display_name: String,
        items: usize,
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
    let top = store
        .properties()
        .ipm_sub_tree_entry_id()
        .and_then(|id| store.open_folder(&id))
        .map_err(|e| OutlookError::Unreadable(format!("its top folder (the IPM subtree): {e}")))?;
    let items = count(&store, top.as_ref(), 0, &mut HashSet::new());
    if !on(PstEvent::Store { display_name, items }) {
        return Ok(());
    }
    // The map of named properties (a contact's addresses, an appointment's times): without it,
    // items still come in, without those.
    let names = store
        .named_property_map()
        .map(|map| {
            let stream = |id| match map.properties().get(id) {
                Some(PropertyValue::Binary(b)) => b.buffer().to_vec(),
                _ => Vec::new(),
            };
            crate::named::resolve(&stream(0x0002), &stream(0x0003))
        })
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    walk(&Reader { store, size, names }, top.as_ref(), "", 0, &mut seen, on);
    Ok(())
}

/// The items the folders list, counted from their contents tables alone.
fn count(store: &Rc<UnicodeStore>, folder: &dyn Folder, depth: usize, seen: &mut HashSet<u32>) -> usize {
    let mut n = folder.contents_table().map_or(0, |t| t.rows_matrix().count());
    let Some(hierarchy) = folder.hierarchy_table() else { return n };
    for row in hierarchy.rows_matrix() {
        let node = u32::from(row.id());
        if depth >= MAX_DEPTH || !seen.insert(node) {
            continue;
        }
        let opened = store.properties().make_entry_id(NodeId::from(node)).and_then(|id| store.open_folder(&id));
        if let Ok(sub) = opened {
            n += count(store, sub.as_ref(), depth + 1, seen);
        }
    }
    n
}

/// The open file, its size and its map of named properties.
struct Reader {
    store: Rc<UnicodeStore>,
    size: u64,
    names: HashMap<u16, &'static str>,
}

/// One folder's items, then its subfolders; false when `on` asked to stop.
fn walk(
    reader: &Reader,
    folder: &dyn Folder,
    path: &str,
    depth: usize,
    seen: &mut HashSet<u32>,
    on: &mut dyn FnMut(PstEvent) -> bool,
) -> bool {
    if let Some(contents) = folder.contents_table() {
        for row in contents.rows_matrix() {
            let node = u32::from(row.id());
            let event = match item(reader, node) {
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
        let store = &reader.store;
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
        // A folder's name as a path component: no separator, no controls, at most 255 characters
        // (the file says what it likes; the placement's path stays bounded, MAX_DEPTH deep).
        let name: String =
            name.chars().filter(|c| !c.is_control()).map(|c| if c == '/' { '∕' } else { c }).take(255).collect();
        let child = if path.is_empty() { name } else { format!("{path}/{name}") };
        if !walk(reader, sub.as_ref(), &child, depth + 1, seen, on) {
            return false;
        }
    }
    true
}

/// One item, read and rebuilt: its class, its MIME, and what of it could not be read.
fn item(reader: &Reader, node: u32) -> Result<(String, Vec<u8>, Vec<String>), String> {
    let store = &reader.store;
    let id = store.properties().make_entry_id(NodeId::from(node)).map_err(|e| e.to_string())?;
    let message = UnicodeMessage::read(store.clone(), &id, None).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let mut item = plain_item(message.as_ref(), &reader.names);
    item.attachments = attachments(&message, reader, &mut problems);
    Ok((item.class(), item.mime(&format!("{node:x}")), problems))
}

fn value(v: &PropertyValue) -> Option<Value> {
    Some(match v {
        PropertyValue::Unicode(u) => Value::Text(u.to_string()),
        PropertyValue::String8(s) => Value::Text(s.to_string()),
        PropertyValue::Binary(b) => Value::Bytes(b.buffer().to_vec()),
        PropertyValue::Integer32(i) => Value::Int(*i),
        PropertyValue::Boolean(b) => Value::Bool(*b),
        PropertyValue::Time(t) => Value::Time(*t),
        _ => return None,
    })
}

/// A table's rows as their ids and properties.
fn rows(table: &dyn TableContext) -> Vec<(u32, Props)> {
    let context = table.context();
    table
        .rows_matrix()
        .map(|row| {
            let mut values = Props::new();
            if let Ok(columns) = row.columns(context) {
                for (column, cell) in context.columns().iter().zip(columns) {
                    if let Some(cell) = cell
                        && let Ok(v) = table.read_column(&cell, column.prop_type())
                        && let Some(v) = value(&v)
                    {
                        values.insert(column.prop_id(), v);
                    }
                }
            }
            (u32::from(row.id()), values)
        })
        .collect()
}

/// A message's properties and recipients (its attachments are read apart: see `attachments`).
fn plain_item(message: &dyn Message, names: &HashMap<u16, &'static str>) -> Item {
    let props = message.properties().iter().filter_map(|(id, v)| Some((*id, value(v)?))).collect();
    let recipients = message.recipient_table().map(|t| rows(t.as_ref()).into_iter().map(|(_, r)| r).collect());
    let mut item = Item { props, recipients: recipients.unwrap_or_default(), ..Default::default() };
    item.name_properties(names);
    item
}

/// The attachments of a message read from the file. One that cannot be read is left out and said
/// so. An attached message (method 5) is not opened: `outlook-pst` 1.2 reads it while holding its
/// file lock and would wait on itself for ever (microsoft/outlook-pst-rs#65), so it is named as
/// left out instead.
fn attachments(message: &Rc<UnicodeMessage>, reader: &Reader, problems: &mut Vec<String>) -> Vec<Attached> {
    let names = &reader.names;
    let Some(table) = message.attachment_table() else { return Vec::new() };
    let mut out = Vec::new();
    for (row, listed) in rows(table.as_ref()) {
        if listed.get(&0x3705) == Some(&Value::Int(5)) {
            problems.push(
                "an attached message (an Outlook item attached to it) is not read yet; the message came in without it"
                    .to_owned(),
            );
            continue;
        }
        // An attachment cannot be larger than the file that holds it: one that says so is not read.
        if let Some(Value::Int(size)) = listed.get(&0x0E20)
            && u64::try_from(*size).is_ok_and(|size| size > reader.size)
        {
            problems.push(format!("attachment {row:x} claims {size} bytes, more than the file holds; left out"));
            continue;
        }
        let attachment = match UnicodeAttachment::read(message.clone(), NodeId::from(row), None) {
            Ok(a) => a,
            Err(e) => {
                // What the attachment table says of it, so the summary can name it.
                let what = match listed.get(&0x3705) {
                    Some(Value::Int(5)) => "an attached message".to_owned(),
                    _ => text(&listed, 0x3707)
                        .or_else(|| text(&listed, 0x3704))
                        .map_or_else(|| format!("attachment {row:x}"), |n| format!("attachment {n}")),
                };
                problems.push(format!("{what} could not be read ({e}); the message came in without it"));
                continue;
            }
        };
        let props: Props = attachment.properties().iter().filter_map(|(id, v)| Some((*id, value(v)?))).collect();
        let data = match attachment.data() {
            Some(AttachmentData::Binary(b)) => AttachedData::Bytes(b.buffer().to_vec()),
            Some(AttachmentData::Message(inner)) => AttachedData::Message(Box::new(plain_item(inner.as_ref(), names))),

            None => {
                let name = text(&props, 0x3707).unwrap_or_else(|| format!("{row:x}"));
                problems.push(format!("attachment {name} holds no data; the message came in without it"));
                continue;
            }
        };
        out.push(Attached { props, data });
    }
    out
}

//! Outlook items saved as `.msg` ([MS-OXMSG]): a compound file whose storages hold the
//! message's properties (fixed-size ones in `__properties_version1.0`, the others each in a
//! `__substg1.0_IIIITTTT` stream), its recipients (`__recip_version1.0_#n`) and attachments
//! (`__attach_version1.0_#n`; an attached message is a storage of its own), read into an
//! [`Item`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::OutlookError;
use crate::item::{Attached, AttachedData, Item, Props, Value};

/// A property stream larger than this is not read (a message is at most the archive's limit).
const MAX_STREAM: u64 = 256 << 20;
/// Attached messages inside attached messages, at most this deep.
const MAX_DEPTH: usize = 8;
/// At most this many recipients or attachments per storage.
const MAX_CHILDREN: usize = 100_000;

type Compound = cfb::CompoundFile<std::fs::File>;

/// Whether the file is an Outlook item (a compound file with a message's property stream).
pub fn is_msg(path: &Path) -> bool {
    cfb::open(path).is_ok_and(|c| c.is_stream("/__properties_version1.0"))
}

/// Reads a `.msg` file: its class and its MIME.
pub fn read_msg(path: &Path) -> Result<(String, Vec<u8>), OutlookError> {
    let mut file = cfb::open(path).map_err(|e| OutlookError::Unreadable(e.to_string()))?;
    // Named properties (a contact's addresses, an appointment's times), mapped once per file.
    let mut stream =
        |name: &str| read_stream(&mut file, &Path::new("/__nameid_version1.0").join(name)).unwrap_or_default();
    let names = crate::named::resolve(&stream("__substg1.0_00020102"), &stream("__substg1.0_00030102"));
    // The top message's property stream has a 32-byte header.
    let item = storage(&mut file, Path::new("/"), 32, 0, None, &names)?;
    Ok((item.class(), item.mime("msg")))
}

fn unreadable(e: impl std::fmt::Display) -> OutlookError {
    OutlookError::Unreadable(e.to_string())
}

fn read_stream(file: &mut Compound, path: &Path) -> Result<Vec<u8>, OutlookError> {
    let stream = file.open_stream(path).map_err(unreadable)?;
    let mut data = Vec::new();
    stream.take(MAX_STREAM).read_to_end(&mut data).map_err(unreadable)?;
    Ok(data)
}

/// Strings in 8-bit code pages: the message's code page, or Windows-1252.
fn decode8(bytes: &[u8], code_page: Option<i32>) -> String {
    let encoding = code_page.and_then(|cp| crate::item::code_page(cp.into())).unwrap_or(encoding_rs::WINDOWS_1252);
    encoding.decode(bytes).0.trim_end_matches('\0').to_owned()
}

/// One storage's properties, and for a message its recipients and attachments.
/// `header` is the length of the property stream's header (32 for the top message, 24 for an
/// attached one, 8 for a recipient or an attachment).
fn storage(
    file: &mut Compound,
    dir: &Path,
    header: usize,
    depth: usize,
    code_page: Option<i32>,
    names: &HashMap<u16, &'static str>,
) -> Result<Item, OutlookError> {
    let mut props = Props::new();
    // Fixed-size values: 16-byte entries (tag, flags, 8 bytes of value) after the header.
    let fixed = read_stream(file, &dir.join("__properties_version1.0"))?;
    for entry in fixed.get(header..).unwrap_or_default().chunks_exact(16) {
        let tag = u32::from_le_bytes(entry[0..4].try_into().unwrap_or_default());
        let (id, kind) = ((tag >> 16) as u16, (tag & 0xFFFF) as u16);
        let value = &entry[8..16];
        let v = match kind {
            0x0003 => Value::Int(i32::from_le_bytes(value[0..4].try_into().unwrap_or_default())),
            0x000B => Value::Bool(value[0] != 0),
            0x0040 => Value::Time(i64::from_le_bytes(value.try_into().unwrap_or_default())),
            _ => continue,
        };
        props.insert(id, v);
    }
    let code_page = match (props.get(&0x3FFD), props.get(&0x3FDE)) {
        (Some(Value::Int(cp)), _) | (None, Some(Value::Int(cp))) => Some(*cp),
        _ => code_page,
    };
    let mut recipients = Vec::new();
    let mut attachments: Vec<(PathBuf, Props)> = Vec::new();
    let entries: Vec<(String, PathBuf, bool)> = file
        .read_storage(dir)
        .map_err(unreadable)?
        .map(|e| (e.name().to_owned(), e.path().to_owned(), e.is_stream()))
        .take(MAX_CHILDREN * 2)
        .collect();
    for (name, path, is_stream) in entries {
        if let Some(tag) = name.strip_prefix("__substg1.0_") {
            let Ok(tag) = u32::from_str_radix(tag.get(..8).unwrap_or(""), 16) else { continue };
            let (id, kind) = ((tag >> 16) as u16, (tag & 0xFFFF) as u16);
            // A storage here is an attached message's own (read with its attachment, below).
            if !is_stream {
                continue;
            }
            let data = read_stream(file, &path)?;
            let v = match kind {
                0x001F => Value::Text(String::from_utf16_lossy(
                    &data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(),
                )),
                0x001E => Value::Text(decode8(&data, code_page)),
                0x0102 => Value::Bytes(data),
                _ => continue,
            };
            props.insert(
                id,
                match v {
                    Value::Text(t) => Value::Text(t.trim_end_matches('\0').to_owned()),
                    other => other,
                },
            );
        } else if name.starts_with("__recip_version1.0_#") && recipients.len() < MAX_CHILDREN {
            recipients.push(storage(file, &path, 8, depth, code_page, names)?.props);
        } else if name.starts_with("__attach_version1.0_#") && attachments.len() < MAX_CHILDREN {
            attachments.push((path.clone(), storage(file, &path, 8, depth, code_page, names)?.props));
        }
    }
    let mut item = Item { props, recipients, ..Default::default() };
    item.name_properties(names);
    for (path, props) in attachments {
        let data = match (props.get(&0x3701), depth < MAX_DEPTH) {
            (Some(Value::Bytes(b)), _) => AttachedData::Bytes(b.clone()),
            (_, true) if file.is_storage(path.join("__substg1.0_3701000D")) => {
                let inner = storage(file, &path.join("__substg1.0_3701000D"), 24, depth + 1, code_page, names)?;
                AttachedData::Message(Box::new(inner))
            }
            _ => continue,
        };
        item.attachments.push(Attached { props, data });
    }
    Ok(item)
}

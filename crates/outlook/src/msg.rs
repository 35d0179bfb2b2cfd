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

/// An open `.msg` and what may still be read from it: its streams together may hold at most
/// twice the file's size (a crafted file can point many streams at the same sectors).
struct Compound {
    file: cfb::CompoundFile<std::io::Cursor<Vec<u8>>>,
    budget: u64,
}

/// What a compound (OLE) file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompoundKind {
    /// An Outlook item: a message's property stream at the top.
    OutlookItem,
    /// Another compound document (an old Office file, say).
    Other,
    /// Its directory cannot be read.
    Damaged,
}

pub fn compound_kind(path: &Path) -> CompoundKind {
    match cfb::open(path) {
        Ok(c) if c.is_stream("/__properties_version1.0") => CompoundKind::OutlookItem,
        Ok(_) => CompoundKind::Other,
        Err(_) => CompoundKind::Damaged,
    }
}

/// Reads a `.msg` file: its class and its MIME.
pub fn read_msg(path: &Path) -> Result<(String, Vec<u8>), OutlookError> {
    read_msg_bytes(std::fs::read(path).map_err(unreadable)?)
}

/// Reads a `.msg` held in memory (an attachment): its class and its MIME.
pub fn read_msg_bytes(data: Vec<u8>) -> Result<(String, Vec<u8>), OutlookError> {
    let size = data.len() as u64;
    let file = cfb::CompoundFile::open(std::io::Cursor::new(data)).map_err(unreadable)?;
    let mut file = Compound { file, budget: size.saturating_mul(2) + (64 << 10) };
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
    let stream = file.file.open_stream(path).map_err(unreadable)?;
    if stream.len() > file.budget.min(MAX_STREAM) {
        return Err(OutlookError::Unreadable(format!(
            "{} claims {} bytes, more than the file holds",
            path.display(),
            stream.len()
        )));
    }
    let mut data = Vec::new();
    stream.take(MAX_STREAM).read_to_end(&mut data).map_err(unreadable)?;
    file.budget -= data.len() as u64;
    Ok(data)
}

/// Strings in 8-bit code pages: the message's code page, or Windows-1252.
fn decode8(bytes: &[u8], code_page: Option<i32>) -> String {
    let encoding = code_page.and_then(|cp| coffer_extract::code_page(cp.into())).unwrap_or(encoding_rs::WINDOWS_1252);
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
        .file
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
            (_, true) if file.file.is_storage(path.join("__substg1.0_3701000D")) => {
                let inner = storage(file, &path.join("__substg1.0_3701000D"), 24, depth + 1, code_page, names)?;
                AttachedData::Message(Box::new(inner))
            }
            _ => continue,
        };
        item.attachments.push(Attached { props, data });
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A property stream: `header` bytes, then one fixed-size property per (tag, value).
    fn properties(header: usize, fixed: &[(u32, [u8; 8])]) -> Vec<u8> {
        let mut out = vec![0u8; header];
        for (tag, value) in fixed {
            out.extend(tag.to_le_bytes());
            out.extend(6u32.to_le_bytes());
            out.extend(value);
        }
        out
    }

    fn write(c: &mut cfb::CompoundFile<std::fs::File>, path: &str, data: &[u8]) {
        c.create_stream(path).unwrap().write_all(data).unwrap();
    }

    #[test]
    fn a_msg_gives_its_sender_recipients_bcc_body_attachment_and_attached_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("item.msg");
        let mut c = cfb::create(&path).unwrap();
        write(
            &mut c,
            "/__properties_version1.0",
            &properties(32, &[(0x0E06_0040, 133_000_000_000_000_000i64.to_le_bytes())]),
        );
        write(&mut c, "/__substg1.0_001A001F", &utf16("IPM.Note"));
        write(&mut c, "/__substg1.0_0037001F", &utf16("Prüfbericht Q3"));
        write(&mut c, "/__substg1.0_0C1A001F", &utf16("Alice"));
        write(&mut c, "/__substg1.0_5D01001F", &utf16("alice@contoso.com"));
        write(&mut c, "/__substg1.0_1000001F", &utf16("The numbers are in."));
        for (n, (kind, address)) in [(1, "bob@contoso.com"), (3, "dave@contoso.com")].iter().enumerate() {
            let r = format!("/__recip_version1.0_#{n:08X}");
            c.create_storage(&r).unwrap();
            write(
                &mut c,
                &format!("{r}/__properties_version1.0"),
                &properties(8, &[(0x0C15_0003, (*kind as i64).to_le_bytes())]),
            );
            write(&mut c, &format!("{r}/__substg1.0_39FE001F"), &utf16(address));
        }
        let a = "/__attach_version1.0_#00000000";
        c.create_storage(a).unwrap();
        write(&mut c, &format!("{a}/__properties_version1.0"), &properties(8, &[(0x3705_0003, 1i64.to_le_bytes())]));
        write(&mut c, &format!("{a}/__substg1.0_3707001F"), &utf16("q3.csv"));
        write(&mut c, &format!("{a}/__substg1.0_370E001F"), &utf16("text/csv"));
        write(&mut c, &format!("{a}/__substg1.0_37010102"), b"region,total\r\nnorth,42\r\n");
        // An Outlook item attached to it: its own storage, with a 24-byte property header.
        let e = "/__attach_version1.0_#00000001";
        c.create_storage(e).unwrap();
        write(&mut c, &format!("{e}/__properties_version1.0"), &properties(8, &[(0x3705_0003, 5i64.to_le_bytes())]));
        let inner = format!("{e}/__substg1.0_3701000D");
        c.create_storage(&inner).unwrap();
        write(&mut c, &format!("{inner}/__properties_version1.0"), &properties(24, &[]));
        write(&mut c, &format!("{inner}/__substg1.0_0037001F"), &utf16("Inner plans"));
        write(&mut c, &format!("{inner}/__substg1.0_1000001F"), &utf16("Forwarded as an item."));
        c.flush().unwrap();
        drop(c);

        assert_eq!(compound_kind(&path), CompoundKind::OutlookItem);
        let (class, mime) = read_msg(&path).unwrap();
        let text = String::from_utf8(mime).unwrap();
        assert_eq!(class, "IPM.Note");
        assert!(text.starts_with("From: \"Alice\" <alice@contoso.com>\r\nTo: bob@contoso.com\r\nBcc: dave@contoso.com\r\nSubject: =?UTF-8?B?"), "{text}");
        assert!(text.contains("Content-Type: text/csv; name=\"q3.csv\""), "{text}");
        assert!(text.contains("cmVnaW9uLHRvdGFsDQpub3J0aCw0Mg0K"), "the attachment's bytes, in base64: {text}");
        let attached = text.split("Content-Type: message/rfc822").nth(1).expect("the attached item is a message part");
        assert!(attached.contains("Subject: Inner plans\r\n"), "{attached}");
    }
}

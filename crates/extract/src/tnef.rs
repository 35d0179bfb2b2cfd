//! TNEF ([MS-OXTNEF]): the `winmail.dat` (application/ms-tnef) Outlook and Exchange attach in
//! place of a message's own attachments and rich body. A stream of attributes, each with its
//! level, id, length and checksum; the attachments' names and data and the message's body come
//! from the attributes themselves or from the MAPI property lists some of them hold. Every length
//! and count is checked against what is left of the data before anything is read, so a hostile
//! stream can claim any size and no allocation follows it.

/// The stream's first four bytes.
pub const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

/// What a TNEF stream holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tnef {
    pub attachments: Vec<Attachment>,
    pub body: Option<Body>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The long file name, else the 8.3 title; None when the sender gave neither.
    pub name: Option<String>,
    pub data: Vec<u8>,
}

/// The message's body, the richest one found.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// `PidTagRtfCompressed`, as stored ([`crate::rtf::decompress`] reads it).
    CompressedRtf(Vec<u8>),
    Html(Vec<u8>),
    Text(String),
}

// Attribute ids ([MS-OXTNEF] 2.1.3.3), type in the high word.
const ATT_BODY: u32 = 0x0002_800C;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;
const ATT_MSG_PROPS: u32 = 0x0006_9003;

// MAPI property ids.
const PID_BODY: u16 = 0x1000;
const PID_RTF_COMPRESSED: u16 = 0x1009;
const PID_BODY_HTML: u16 = 0x1013;
const PID_ATTACH_DATA: u16 = 0x3701;
const PID_ATTACH_LONG_FILENAME: u16 = 0x3707;

/// The attachments and body of a TNEF stream. Reading stops at the first attribute that runs
/// past the end (a cut or padded stream gives what came before it); a stream that is not TNEF
/// at all is an error.
pub fn read(data: &[u8]) -> Result<Tnef, String> {
    let mut r = Reader { data, pos: 0 };
    if r.bytes(4)? != SIGNATURE {
        return Err("not a TNEF stream".into());
    }
    r.u16()?; // the legacy attachment key
    let mut tnef = Tnef::default();
    let mut html = None;
    let mut text = None;
    while r.left() > 0 {
        let Ok(attribute) = r.attribute() else { break };
        let (id, value) = attribute;
        let current = tnef.attachments.last_mut();
        match (id, current) {
            (ATT_ATTACH_REND_DATA, _) => tnef.attachments.push(Attachment::default()),
            (ATT_ATTACH_TITLE, Some(a)) if a.name.is_none() => a.name = Some(string8(value)).filter(|n| !n.is_empty()),
            (ATT_ATTACH_DATA, Some(a)) => a.data = value.to_vec(),
            (ATT_ATTACHMENT, Some(a)) => {
                let mut embedded = None;
                for (pid, v) in properties(value)? {
                    match (pid, v) {
                        (PID_ATTACH_LONG_FILENAME, Value::Text(name)) if !name.is_empty() => a.name = Some(name),
                        // An attached message is a TNEF stream of its own, beside the note
                        // Outlook puts in the attachment's data for readers that cannot open it.
                        (PID_ATTACH_DATA, Value::Object(bytes)) if bytes.starts_with(&IID_IMESSAGE) => {
                            embedded = Some(bytes[IID_IMESSAGE.len()..].to_vec())
                        }
                        (PID_ATTACH_DATA, Value::Binary(bytes) | Value::Object(bytes)) if a.data.is_empty() => {
                            a.data = bytes
                        }
                        _ => {}
                    }
                }
                if let Some(data) = embedded {
                    tnef.attachments.push(Attachment { name: None, data });
                }
            }
            (ATT_MSG_PROPS, _) => {
                for (pid, v) in properties(value)? {
                    match (pid, v) {
                        (PID_RTF_COMPRESSED, Value::Binary(bytes)) => tnef.body = Some(Body::CompressedRtf(bytes)),
                        (PID_BODY_HTML, Value::Binary(bytes)) => html = Some(bytes),
                        (PID_BODY_HTML, Value::Text(t)) => html = Some(t.into_bytes()),
                        (PID_BODY, Value::Text(t)) => text = Some(t),
                        _ => {}
                    }
                }
            }
            (ATT_BODY, _) => text = text.or(Some(string8(value))),
            _ => {}
        }
    }
    if tnef.body.is_none() {
        tnef.body = html.map(Body::Html).or(text.map(Body::Text));
    }
    Ok(tnef)
}

/// The interface an attached object's data starts with when it is a message (IID_IMessage).
const IID_IMESSAGE: [u8; 16] = [0x07, 0x03, 0x02, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46];

/// A MAPI property value, as far as the index needs one.
enum Value {
    Text(String),
    Binary(Vec<u8>),
    /// An object's data: the interface's 16-byte id, then the object.
    Object(Vec<u8>),
    Other,
}

/// A MAPI property list (`MsgPropertyList`, [MS-OXTNEF] 2.1.3.4): single values of variable
/// length are counted too; names of named properties are skipped.
fn properties(data: &[u8]) -> Result<Vec<(u16, Value)>, String> {
    let mut r = Reader { data, pos: 0 };
    let count = r.u32()? as usize;
    // Every property takes at least 8 bytes: a count beyond that is a lie.
    if count > r.left() / 8 {
        return Err("a property list counts more properties than it holds".into());
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let kind = r.u16()?;
        let id = r.u16()?;
        if id >= 0x8000 {
            r.bytes(16)?; // the property set's GUID
            match r.u32()? {
                0 => {
                    r.u32()?;
                }
                _ => {
                    let len = r.u32()? as usize;
                    r.padded(len)?;
                }
            }
        }
        let multi = kind & 0x1000 != 0;
        let value = match kind & !0x1000 {
            0x001E | 0x001F | 0x0102 | 0x000D => {
                let values = r.u32()? as usize;
                if values > r.left() / 4 {
                    return Err("a property counts more values than it holds".into());
                }
                let mut first = None;
                for _ in 0..values {
                    let len = r.u32()? as usize;
                    let bytes = r.padded(len)?;
                    first.get_or_insert(bytes);
                }
                match (kind & !0x1000, first) {
                    (0x001E, Some(b)) => Value::Text(string8(b)),
                    (0x001F, Some(b)) => Value::Text(unicode(b)),
                    (0x000D, Some(b)) => Value::Object(b.to_vec()),
                    (_, Some(b)) => Value::Binary(b.to_vec()),
                    (_, None) => Value::Other,
                }
            }
            fixed => {
                let size = match fixed {
                    0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => 4,
                    0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => 8,
                    0x0048 => 16,
                    other => return Err(format!("a property of unknown type {other:#06x}")),
                };
                let values = if multi { r.u32()? as usize } else { 1 };
                if values > r.left() / size {
                    return Err("a property counts more values than it holds".into());
                }
                r.bytes(values * size)?;
                Value::Other
            }
        };
        out.push((id, value));
    }
    Ok(out)
}

/// An 8-bit string (Windows-1252 unless the stream says otherwise), up to its NUL.
fn string8(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    encoding_rs::WINDOWS_1252.decode(&bytes[..end]).0.into_owned()
}

fn unicode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err("cut short".into());
        }
        self.pos += n;
        Ok(&self.data[self.pos - n..self.pos])
    }

    /// `n` bytes, then the padding to the next multiple of four.
    fn padded(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self.bytes(n)?;
        // The last value of a stream may come without its padding.
        let padding = ((4 - n % 4) % 4).min(self.left());
        self.bytes(padding)?;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("four bytes")))
    }

    /// One attribute: its id and data (its level and checksum are not needed here).
    fn attribute(&mut self) -> Result<(u32, &'a [u8]), String> {
        self.bytes(1)?;
        let id = self.u32()?;
        let len = self.u32()? as usize;
        let value = self.bytes(len)?;
        self.u16()?;
        Ok((id, value))
    }
}

//! The text of legacy Office files, which are OLE compound files: Word 97–2003 (`WordDocument`:
//! the pieces its piece table names, [MS-DOC] 2.8.35), Excel 97–2003 (`Workbook`, through
//! calamine: every cell's value) and PowerPoint 97–2003 (`PowerPoint Document`: the text atoms
//! of its slides and notes, [MS-PPT] 2.3). The compound file's reader and calamine trust the
//! sizes a file claims: only called in the limited worker process.

use std::io::{Cursor, Read};

use crate::MAX_TEXT;

type Ole<'a> = cfb::CompoundFile<Cursor<&'a [u8]>>;

/// The type and text of an OLE compound file; `ole` (named only) when it is none of the three;
/// `msg` (an Outlook item, with no text: the caller reads it) when it holds a message's
/// properties.
pub fn extract(data: &[u8]) -> (&'static str, Result<String, String>) {
    let mut ole = match cfb::CompoundFile::open(Cursor::new(data)) {
        Ok(ole) => ole,
        Err(e) => return ("ole", Err(format!("not a readable compound file: {e}"))),
    };
    if ole.is_stream("/__properties_version1.0") {
        ("msg", Ok(String::new()))
    } else if ole.is_stream("/WordDocument") {
        ("doc", word(&mut ole))
    } else if ole.is_stream("/Workbook") || ole.is_stream("/Book") {
        ("xls", excel(data))
    } else if ole.is_stream("/PowerPoint Document") {
        ("ppt", powerpoint(&mut ole))
    } else {
        ("ole", Ok(String::new()))
    }
}

fn stream(ole: &mut Ole, name: &str) -> Result<Vec<u8>, String> {
    let mut stream = ole.open_stream(name).map_err(|e| format!("{name}: {e}"))?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
    Ok(out)
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, String> {
    data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(|| "cut short".to_owned())
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| "cut short".to_owned())
}

/// A Word document's text: the File Information Block names the piece table (in the `0Table`
/// or `1Table` stream), whose pieces are runs of Windows-1252 bytes or UTF-16 in `WordDocument`.
fn word(ole: &mut Ole) -> Result<String, String> {
    let doc = stream(ole, "/WordDocument")?;
    if u16_at(&doc, 0)? != 0xA5EC {
        return Err("not a Word 97–2003 document".into());
    }
    let flags = u16_at(&doc, 0x0A)?;
    if flags & 0x0100 != 0 {
        return Err("the document is encrypted".into());
    }
    let table = stream(ole, if flags & 0x0200 != 0 { "/1Table" } else { "/0Table" })?;
    // FibBase (32 bytes), then three counted arrays; the piece table's place is the 34th pair.
    let csw = u16_at(&doc, 32)? as usize;
    let cslw = u16_at(&doc, 34 + csw * 2)? as usize;
    let fc_lcb = 34 + csw * 2 + 2 + cslw * 4 + 2;
    let (fc_clx, lcb_clx) = (u32_at(&doc, fc_lcb + 33 * 8)? as usize, u32_at(&doc, fc_lcb + 33 * 8 + 4)? as usize);
    let clx = table.get(fc_clx..fc_clx.saturating_add(lcb_clx)).ok_or("the piece table lies outside its stream")?;
    // Formatting (Prc) comes first, then the piece table (Pcdt).
    let mut at = 0;
    while clx.get(at) == Some(&1) {
        at += 3 + u16_at(clx, at + 1)? as usize;
    }
    if clx.get(at) != Some(&2) {
        return Err("no piece table".into());
    }
    let lcb = u32_at(clx, at + 1)? as usize;
    let plc = clx.get(at + 5..at + 5 + lcb).ok_or("the piece table is cut short")?;
    let pieces = plc.len().saturating_sub(4) / 12;
    let mut text = String::new();
    for i in 0..pieces {
        let (start, end) = (u32_at(plc, i * 4)? as usize, u32_at(plc, i * 4 + 4)? as usize);
        let chars = end.checked_sub(start).ok_or("a piece ends before it starts")?;
        let fc = u32_at(plc, (pieces + 1) * 4 + i * 8 + 2)?;
        let piece = if fc & 0x4000_0000 != 0 {
            let offset = ((fc & 0x3FFF_FFFF) / 2) as usize;
            let bytes = doc.get(offset..offset.saturating_add(chars)).ok_or("a piece lies outside the document")?;
            encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned()
        } else {
            let offset = fc as usize;
            let bytes = doc
                .get(offset..offset.saturating_add(chars.saturating_mul(2)))
                .ok_or("a piece lies outside the document")?;
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units)
        };
        text.push_str(&piece);
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Ok(plain(&text))
}

/// Word's control characters as text: paragraph and cell marks become line breaks and tabs, a
/// field's instructions (between its begin and separator marks) are dropped, its result kept.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut instructions = 0usize;
    for c in text.chars() {
        match c {
            '\u{13}' => instructions += 1,
            '\u{14}' | '\u{15}' => instructions = instructions.saturating_sub(1),
            _ if instructions > 0 => {}
            '\r' | '\u{0b}' | '\u{0c}' => out.push('\n'),
            '\u{07}' => out.push('\t'),
            c if c < ' ' && c != '\t' && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// Every cell of every sheet, a row to a line.
fn excel(data: &[u8]) -> Result<String, String> {
    use calamine::Reader;
    let mut book: calamine::Xls<_> =
        calamine::open_workbook_from_rs(Cursor::new(data)).map_err(|e| format!("not a readable workbook: {e}"))?;
    let mut text = String::new();
    for name in book.sheet_names() {
        let Ok(range) = book.worksheet_range(&name) else { continue };
        text.push_str(&name);
        text.push('\n');
        for row in range.rows() {
            for cell in row.iter().filter(|c| !matches!(c, calamine::Data::Empty)) {
                text.push_str(&cell.to_string());
                text.push('\t');
            }
            text.push('\n');
            if text.len() >= MAX_TEXT {
                return Ok(text);
            }
        }
    }
    Ok(text)
}

const MAIN_MASTER: u16 = 0x03F8;

/// The text atoms of a presentation's records, in file order: slides and notes.
fn powerpoint(ole: &mut Ole) -> Result<String, String> {
    let data = stream(ole, "/PowerPoint Document")?;
    let mut text = String::new();
    let mut at = 0;
    while at + 8 <= data.len() && text.len() < MAX_TEXT {
        let version = u16_at(&data, at)? & 0x000F;
        let kind = u16_at(&data, at + 2)?;
        let len = u32_at(&data, at + 4)? as usize;
        at += 8;
        // A container's records follow its header: read on into them, except for a master's
        // (its placeholder text is not the author's).
        if version == 0x000F && kind != MAIN_MASTER {
            continue;
        }
        let body = data.get(at..at.saturating_add(len)).ok_or("a record runs past the end of the stream")?;
        match kind {
            // TextCharsAtom: UTF-16.
            0x0FA0 => {
                let units: Vec<u16> = body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                let atom = String::from_utf16_lossy(&units);
                // `*` stands for the slide number in headers and footers.
                if atom != "*" {
                    text.push_str(&atom);
                    text.push('\n');
                }
            }
            // TextBytesAtom: the low bytes of UTF-16 code units (Latin-1).
            0x0FA8 => {
                text.extend(body.iter().map(|&b| b as char));
                text.push('\n');
            }
            _ => {}
        }
        at += len;
    }
    Ok(text.replace(['\r', '\u{0b}'], "\n"))
}

//! The text of attached documents, for the index (never on the acknowledgement path: the indexer
//! calls this). A document's type is detected by its content, not its name: Office Open XML
//! (DOCX, XLSX, PPTX) and OpenDocument (ODT, ODS, ODP) are zips of XML; a plain zip's entries are
//! read in turn (documents in it too, [`MAX_NESTING`] deep); RTF through [`rtf`]; PDF through
//! `pdf-extract`. Zips are read with hard limits on entries and expanded size, so a zip bomb is
//! refused, not expanded. The PDF parser has no such limits and can loop, exhaust memory or
//! crash on a hostile file, so it runs only in a [`worker`] process with time and memory limits;
//! in-process ([`extract`]) a PDF is only named (`filetype:`).

use std::io::{Cursor, Read};

mod office;
pub mod rtf;
pub mod tnef;
pub mod worker;

pub use worker::{ExtractConfig, Extractor};

/// The encoding of a Windows code page Outlook records (`PidTagInternetCodepage`,
/// `PidTagMessageCodepage`, RTF's `\ansicpg`); None for one not known here.
pub fn code_page(code_page: i64) -> Option<&'static encoding_rs::Encoding> {
    Some(match code_page {
        65001 => encoding_rs::UTF_8,
        1250 => encoding_rs::WINDOWS_1250,
        1251 => encoding_rs::WINDOWS_1251,
        1252 | 28591 | 20127 => encoding_rs::WINDOWS_1252,
        1253 => encoding_rs::WINDOWS_1253,
        1254 => encoding_rs::WINDOWS_1254,
        1255 => encoding_rs::WINDOWS_1255,
        1256 => encoding_rs::WINDOWS_1256,
        932 => encoding_rs::SHIFT_JIS,
        936 => encoding_rs::GBK,
        949 => encoding_rs::EUC_KR,
        950 => encoding_rs::BIG5,
        28592 => encoding_rs::ISO_8859_2,
        28605 => encoding_rs::ISO_8859_15,
        50220..=50222 => encoding_rs::ISO_2022_JP,
        20932 | 51932 => encoding_rs::EUC_JP,
        _ => return None,
    })
}

/// How far a document's zip is read.
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: usize,
    /// Bytes expanded from one entry, and from all read together.
    entry: u64,
    total: u64,
    /// In a worker process, where the parsers without limits of their own (PDF) may run.
    isolated: bool,
    /// Turns an Outlook item (`.msg`) into MIME; given by the worker's caller, which knows how.
    outlook: Option<OutlookReader>,
}

/// Turns an Outlook item (`.msg`) into its MIME, None when it cannot.
pub type OutlookReader = fn(&[u8]) -> Option<Vec<u8>>;

const LIMITS: Limits = Limits { entries: 10_000, entry: 64 << 20, total: 128 << 20, isolated: false, outlook: None };
/// Zips inside zips, at most this deep.
const MAX_NESTING: usize = 3;
/// At most this much text per document (the indexer caps it again).
const MAX_TEXT: usize = 4 << 20;

/// What was found in one attachment.
#[derive(Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The detected type: `docx`, `xlsx`, `pptx`, `odt`, `ods`, `odp`, `pdf`, `zip`, …
    pub filetype: &'static str,
    /// The text, or why it could not be had (the attachment is then tagged `extraction-failed`).
    pub text: Result<String, String>,
}

/// The type and text of `data`; None when it is of no type known here. In this process: a PDF
/// is named, not read (see [`Extractor`] for the worker that reads it).
pub fn extract(data: &[u8]) -> Option<Extracted> {
    extract_within(data, LIMITS, 0, &mut LIMITS.total.clone())
}

/// As [`extract`], PDFs, OLE files and Outlook items read too: only for a process the caller
/// has limited ([`worker::serve`]).
fn extract_isolated(data: &[u8], outlook: OutlookReader) -> Option<Extracted> {
    let limits = Limits { isolated: true, outlook: Some(outlook), ..LIMITS };
    extract_within(data, limits, 0, &mut limits.total.clone())
}

/// The type `data` shows in its first bytes, without parsing it: what a worker is asked to read.
fn sniff(data: &[u8]) -> Option<&'static str> {
    [
        (&b"{\\rtf"[..], "rtf"),
        (b"%PDF-", "pdf"),
        (&OLE_MAGIC[..], "ole"),
        (b"PK\x03\x04", "zip"),
        (&tnef::SIGNATURE, "tnef"),
        (&GZIP_MAGIC, "gzip"),
    ]
    .into_iter()
    .find(|(magic, _)| data.starts_with(magic))
    .map(|(_, filetype)| filetype)
    .or(is_tar(data).then_some("tar"))
}

const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// Whether a PDF whose text is `text` is a scan (pictures of pages, no text to speak of).
pub fn scanned(text: &str) -> bool {
    text.chars().filter(|c| c.is_alphanumeric()).nth(15).is_none()
}

/// The picture format `data` is in, by its first bytes: what OCR may read.
pub fn picture(data: &[u8]) -> Option<&'static str> {
    let riff_webp = data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP");
    [
        (&b"\x89PNG\r\n\x1a\n"[..], "png"),
        (b"\xFF\xD8\xFF", "jpeg"),
        (b"II*\0", "tiff"),
        (b"MM\0*", "tiff"),
        (b"GIF8", "gif"),
        (b"BM", "bmp"),
    ]
    .into_iter()
    .find(|(magic, _)| data.starts_with(magic))
    .map(|(_, kind)| kind)
    .or(riff_webp.then_some("webp"))
}

/// A tar archive's first header names its format at byte 257 (POSIX `ustar`, GNU `ustar  `).
fn is_tar(data: &[u8]) -> bool {
    data.get(257..262) == Some(b"ustar")
}

const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Every type [`Extracted::filetype`] may hold.
const FILETYPES: [&str; 17] = [
    "docx", "xlsx", "pptx", "odt", "ods", "odp", "doc", "xls", "ppt", "msg", "rtf", "pdf", "zip", "tar", "gzip", "ole",
    "tnef",
];

/// `budget`: the bytes that may still be expanded for the whole attachment, zips inside it
/// included (a zip of zips shares one budget, so nesting cannot multiply it).
fn extract_within(data: &[u8], limits: Limits, depth: usize, budget: &mut u64) -> Option<Extracted> {
    if data.starts_with(b"{\\rtf") {
        let text = match rtf::convert(&String::from_utf8_lossy(data)) {
            rtf::RtfBody::Html(html) => mail_parser::decoders::html::html_to_text(&html),
            rtf::RtfBody::Text(text) => text,
        };
        return Some(Extracted { filetype: "rtf", text: Ok(text) });
    }
    if data.starts_with(b"%PDF-") {
        let text = if limits.isolated { pdf_text(data) } else { Ok(String::new()) };
        return Some(Extracted { filetype: "pdf", text });
    }
    if data.starts_with(&tnef::SIGNATURE) {
        return Some(Extracted { filetype: "tnef", text: tnef_text(data, limits, depth, budget) });
    }
    if data.starts_with(&OLE_MAGIC) {
        if !limits.isolated {
            return Some(Extracted { filetype: "ole", text: Ok(String::new()) });
        }
        let (filetype, text) = office::extract(data);
        if filetype == "msg" {
            let text = match limits.outlook.and_then(|read| read(data)) {
                Some(mime) => message_text(&mime, limits, depth, budget),
                None => Err("not a readable Outlook item".into()),
            };
            return Some(Extracted { filetype, text });
        }
        return Some(Extracted { filetype, text });
    }
    if data.starts_with(&GZIP_MAGIC) {
        return Some(Extracted { filetype: "gzip", text: gzip_text(data, limits, depth, budget) });
    }
    if is_tar(data) {
        return Some(Extracted { filetype: "tar", text: tar_text(data, limits, depth, budget) });
    }
    if !data.starts_with(b"PK\x03\x04") {
        return None;
    }
    let mut zip = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) => return Some(Extracted { filetype: "zip", text: Err(format!("not a readable zip: {e}")) }),
    };
    if zip.len() > limits.entries {
        let why = format!("{} entries, more than {}", zip.len(), limits.entries);
        return Some(Extracted { filetype: "zip", text: Err(why) });
    }
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let has = |n: &str| names.iter().any(|e| e == n);
    let (filetype, parts): (&'static str, Vec<String>) = if has("word/document.xml") {
        let mut parts = vec!["word/document.xml".to_owned()];
        parts.extend(sorted(&names, |n| {
            n.starts_with("word/header")
                || n.starts_with("word/footer")
                || n == "word/footnotes.xml"
                || n == "word/endnotes.xml"
        }));
        ("docx", parts)
    } else if has("xl/workbook.xml") {
        let mut parts = sorted(&names, |n| n == "xl/sharedStrings.xml");
        parts.extend(sorted(&names, |n| n.starts_with("xl/worksheets/sheet") && n.ends_with(".xml")));
        ("xlsx", parts)
    } else if has("ppt/presentation.xml") {
        let slides = |n: &str| {
            (n.starts_with("ppt/slides/slide") || n.starts_with("ppt/notesSlides/notesSlide")) && n.ends_with(".xml")
        };
        ("pptx", sorted(&names, slides))
    } else if has("mimetype") && has("content.xml") {
        let mimetype = match read(&mut zip, "mimetype", limits.entry, budget) {
            Ok(m) => String::from_utf8_lossy(&m).trim().to_owned(),
            Err(e) => return Some(Extracted { filetype: "zip", text: Err(e) }),
        };
        let filetype = match mimetype.as_str() {
            "application/vnd.oasis.opendocument.text" => "odt",
            "application/vnd.oasis.opendocument.spreadsheet" => "ods",
            "application/vnd.oasis.opendocument.presentation" => "odp",
            _ => return Some(Extracted { filetype: "zip", text: Ok(String::new()) }),
        };
        (filetype, vec!["content.xml".to_owned()])
    } else {
        return Some(Extracted { filetype: "zip", text: entries(&mut zip, &names, limits, depth, budget) });
    };
    let mut text = String::new();
    for part in parts {
        let xml = match read(&mut zip, &part, limits.entry, budget) {
            Ok(x) => x,
            Err(e) => return Some(Extracted { filetype, text: Err(e) }),
        };
        if let Err(e) = xml_text(&xml, filetype == "xlsx", &mut text) {
            return Some(Extracted { filetype, text: Err(format!("{part}: {e}")) });
        }
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Some(Extracted { filetype, text: Ok(text) })
}

/// A plain zip's entries in turn: documents (and zips, [`MAX_NESTING`] deep) by their text, text
/// files as they are, the rest by nothing; the limits hold for all of them together.
fn entries(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    limits: Limits,
    depth: usize,
    budget: &mut u64,
) -> Result<String, String> {
    let mut text = String::new();
    for name in names.iter().filter(|n| !n.ends_with('/')) {
        let data = read(zip, name, limits.entry, budget)?;
        contained(&data, limits, depth, budget, &mut text).map_err(|e| format!("{name}: {e}"))?;
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Ok(text)
}

/// A file inside another (a zip's entry, a TNEF attachment): a document or a zip by its text
/// ([`MAX_NESTING`] deep), a text file as it is, anything else by nothing.
fn contained(data: &[u8], limits: Limits, depth: usize, budget: &mut u64, text: &mut String) -> Result<(), String> {
    let inner = if depth < MAX_NESTING { extract_within(data, limits, depth + 1, budget) } else { None };
    match inner {
        Some(Extracted { text: Ok(t), .. }) => text.push_str(&t),
        Some(Extracted { text: Err(e), .. }) => return Err(e),
        None if !data[..data.len().min(1024)].contains(&0) => text.push_str(&String::from_utf8_lossy(data)),
        None => {}
    }
    text.push('\n');
    Ok(())
}

/// An attached message's text: its subject, sender and recipients, body, and attachments as
/// [`contained`] reads them (attached messages within it in turn).
fn message_text(mime: &[u8], limits: Limits, depth: usize, budget: &mut u64) -> Result<String, String> {
    use mail_parser::MimeHeaders;
    let message = mail_parser::MessageParser::default().parse(mime).ok_or("the item's message cannot be parsed")?;
    let mut text = String::new();
    text.push_str(message.subject().unwrap_or_default());
    text.push('\n');
    for address in [message.from(), message.to(), message.cc()].into_iter().flatten() {
        for a in address.iter() {
            for part in [a.name(), a.address()].into_iter().flatten() {
                text.push_str(part);
                text.push(' ');
            }
        }
    }
    text.push('\n');
    for i in 0..message.text_body_count() {
        if let Some(body) = message.body_text(i) {
            text.push_str(&body);
            text.push('\n');
        }
    }
    for part in message.attachments() {
        if let Some(name) = part.attachment_name() {
            text.push_str(name);
            text.push('\n');
        }
        let bytes = match &part.body {
            mail_parser::PartType::Message(inner) => inner.raw_message(),
            _ => part.contents(),
        };
        match &part.body {
            mail_parser::PartType::Message(_) if depth < MAX_NESTING => {
                text.push_str(&message_text(bytes, limits, depth + 1, budget)?)
            }
            mail_parser::PartType::Text(t) => text.push_str(t),
            mail_parser::PartType::Html(h) => text.push_str(&mail_parser::decoders::html::html_to_text(h)),
            _ => contained(bytes, limits, depth, budget, &mut text)?,
        }
        text.push('\n');
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Ok(text)
}

/// A gzip stream's content, expanded within the attachment's budget, read as [`contained`] reads
/// a file (a tar inside it, most often).
fn gzip_text(data: &[u8], limits: Limits, depth: usize, budget: &mut u64) -> Result<String, String> {
    let limit = limits.entry.min(*budget);
    let mut content = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("not a readable gzip stream: {e}"))?;
    if content.len() as u64 > limit {
        return Err(format!("expands past {limit} bytes (a gzip bomb?): not read"));
    }
    *budget -= content.len() as u64;
    let mut text = String::new();
    contained(&content, limits, depth, budget, &mut text)?;
    Ok(text)
}

/// A tar archive's files in turn, as [`contained`] reads them, within the zip limits.
fn tar_text(data: &[u8], limits: Limits, depth: usize, budget: &mut u64) -> Result<String, String> {
    let mut archive = tar::Archive::new(data);
    let mut text = String::new();
    let entries = archive.entries().map_err(|e| format!("not a readable tar archive: {e}"))?;
    for (i, entry) in entries.enumerate() {
        if i >= limits.entries {
            return Err(format!("more than {} entries", limits.entries));
        }
        let mut entry = entry.map_err(|e| format!("not a readable tar archive: {e}"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        // The entry is read from the attachment itself: its size is bounded by it.
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| format!("{name}: {e}"))?;
        text.push_str(&name);
        text.push('\n');
        contained(&content, limits, depth, budget, &mut text).map_err(|e| format!("{name}: {e}"))?;
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Ok(text)
}

/// A TNEF stream's body and its attachments: their names, and their text as [`contained`] reads it.
fn tnef_text(data: &[u8], limits: Limits, depth: usize, budget: &mut u64) -> Result<String, String> {
    let found = tnef::read(data)?;
    let mut text = match found.body {
        Some(tnef::Body::CompressedRtf(compressed)) => match rtf::compressed_body(&compressed) {
            Some(rtf::RtfBody::Html(html)) => mail_parser::decoders::html::html_to_text(&html),
            Some(rtf::RtfBody::Text(text)) => text,
            None => String::new(),
        },
        Some(tnef::Body::Html(html)) => mail_parser::decoders::html::html_to_text(&String::from_utf8_lossy(&html)),
        Some(tnef::Body::Text(text)) => text,
        None => String::new(),
    };
    text.push('\n');
    for attachment in &found.attachments {
        if let Some(name) = &attachment.name {
            text.push_str(name);
            text.push('\n');
        }
        let name = attachment.name.as_deref().unwrap_or("an attachment");
        contained(&attachment.data, limits, depth, budget, &mut text).map_err(|e| format!("{name}: {e}"))?;
        if text.len() >= MAX_TEXT {
            break;
        }
    }
    Ok(text)
}

/// A PDF's text, page by page. Its parser allocates what the file claims and follows its
/// references without bounds: call only where the process is limited.
fn pdf_text(data: &[u8]) -> Result<String, String> {
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(data))
        .map_err(|_| "the PDF parser failed on this file".to_owned())?
        .map_err(|e| format!("not a readable PDF: {e}"))?;
    let mut text = String::new();
    for page in pages {
        if text.len() + page.len() > MAX_TEXT {
            break;
        }
        text.push_str(&page);
        text.push('\n');
    }
    Ok(text)
}

fn sorted(names: &[String], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = names.iter().filter(|n| keep(n)).cloned().collect();
    // slide2 before slide10.
    out.sort_by_key(|n| (n.len(), n.clone()));
    out
}

/// One entry, expanded within the limits.
fn read(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    entry_limit: u64,
    budget: &mut u64,
) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let limit = entry_limit.min(*budget);
    let mut out = Vec::new();
    entry.take(limit + 1).read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("{name} expands past {limit} bytes (a zip bomb?): not read"));
    }
    *budget -= out.len() as u64;
    Ok(out)
}

/// The text of an XML part: text nodes, a line break after each paragraph or row. In a
/// spreadsheet's sheets, a cell's value is text unless it points into the shared strings.
fn xml_text(xml: &[u8], sheet: bool, out: &mut String) -> Result<(), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut shared_index = false;
    loop {
        match reader.read_event_into(&mut buf).map_err(|e| e.to_string())? {
            Event::Eof => return Ok(()),
            Event::Start(e) if sheet && e.local_name().as_ref() == b"c" => {
                shared_index = e.attributes().flatten().any(|a| a.key.as_ref() == b"t" && a.value.as_ref() == b"s");
            }
            Event::Text(t) if !(sheet && shared_index) => {
                let text = t.unescape().map_err(|e| e.to_string())?;
                out.push_str(&text);
                out.push(' ');
            }
            Event::End(e) => {
                let name = e.local_name();
                if matches!(name.as_ref(), b"p" | b"row" | b"tr" | b"h") {
                    out.push('\n');
                }
                if name.as_ref() == b"c" {
                    shared_index = false;
                }
            }
            _ => {}
        }
        buf.clear();
        if out.len() >= MAX_TEXT {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn a_spreadsheet_gives_its_shared_strings_and_values_not_the_string_indexes() {
        let xlsx = zip_of(&[
            ("xl/workbook.xml", b"<workbook/>"),
            ("xl/sharedStrings.xml", b"<sst><si><t>Revenue &amp; costs</t></si></sst>"),
            (
                "xl/worksheets/sheet1.xml",
                b"<worksheet><sheetData><row><c t=\"s\"><v>0</v></c><c><v>4242</v></c></row></sheetData></worksheet>",
            ),
        ]);
        let found = extract(&xlsx).unwrap();
        assert_eq!(found.filetype, "xlsx");
        let text = found.text.unwrap();
        assert!(text.contains("Revenue & costs") && text.contains("4242") && !text.contains(" 0 "), "{text:?}");
    }

    #[test]
    fn an_entry_that_expands_past_the_limit_is_refused_not_read() {
        let bomb = zip_of(&[("word/document.xml", &vec![b' '; 2 << 20])]);
        assert!(bomb.len() < 64 << 10, "it compresses well: {}", bomb.len());
        let limits = Limits { entries: 10, entry: 1 << 20, total: 4 << 20, ..LIMITS };
        let found = extract_within(&bomb, limits, 0, &mut limits.total.clone()).unwrap();
        assert_eq!(found.filetype, "docx");
        assert!(found.text.unwrap_err().contains("zip bomb"));
        let many: Vec<(String, Vec<u8>)> = (0..11).map(|i| (format!("f{i}"), Vec::new())).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        assert!(
            extract_within(&zip_of(&many), limits, 0, &mut limits.total.clone())
                .unwrap()
                .text
                .unwrap_err()
                .contains("entries")
        );
    }

    #[test]
    fn every_type_the_reader_knows_is_sent_to_the_worker_and_gzip_and_tar_are_read_in_turn() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(9);
        header.set_cksum();
        tar.append_data(&mut header, "a.txt", &b"wombattar"[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let samples: [&[u8]; 8] = [
            b"{\\rtf1 text}",
            b"%PDF-1.4 broken",
            &OLE_MAGIC,
            &zip_of(&[("a.txt", b"x")]),
            &[tnef::SIGNATURE.as_slice(), &[0, 0]].concat(),
            &gz,
            &tar,
            b"plain text",
        ];
        for data in samples {
            // What the worker would find, the parent must send it (the type it names is a guess
            // for when the worker fails: `ole` for a Word file).
            let found = extract_isolated(data, |_| None);
            assert_eq!(sniff(data).is_some(), found.is_some(), "{:?}", &data[..data.len().min(8)]);
        }
        for data in [&gz, &tar] {
            assert!(extract_isolated(data, |_| None).unwrap().text.unwrap().contains("wombattar"));
        }
    }

    #[test]
    fn zips_inside_a_zip_share_one_budget() {
        let inner = zip_of(&[("big.txt", &vec![b' '; 3 << 19])]);
        let outer = zip_of(&[("a.zip", &inner), ("b.zip", &inner), ("c.zip", &inner)]);
        let limits = Limits { entries: 10, entry: 2 << 20, total: 4 << 20, ..LIMITS };
        let found = extract_within(&outer, limits, 0, &mut limits.total.clone()).unwrap();
        assert!(found.text.unwrap_err().contains("zip bomb"), "three 1.5 MiB entries pass a 4 MiB budget only once");
    }
}

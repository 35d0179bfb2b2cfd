//! Search inside attached documents (Office Open XML, OpenDocument, RTF in a non-Latin code page,
//! a zip holding a DOCX and a text file): the test's documents each carry a unique word;
//! each word finds exactly its message, by a bare search and by `attachment:`, and `filetype:`
//! counts are exact; a document that cannot be read is tagged and its message still found; a part
//! written after the closing boundary is found by its text.

mod common;

use std::io::Write;

use base64::Engine;
use common::Coffer;

fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(data.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// A message with one attachment of `content_type`, named `name`.
fn message(subject: &str, name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!(
        "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: {subject}\r\nMessage-ID: <{name}@contoso.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         See attached.\r\n--b\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; \
         filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[test]
fn words_in_attached_office_and_opendocument_files_find_their_message_and_filetype_counts_are_exact() {
    const OOXML: &str = "application/vnd.openxmlformats-officedocument";
    let docx = zip_of(&[
        ("[Content_Types].xml", "<Types/>"),
        ("word/document.xml", "<w:document><w:body><w:p><w:r><w:t>quokkadocx</w:t></w:r></w:p></w:body></w:document>"),
        ("word/footer1.xml", "<w:ftr><w:p><w:r><w:t>footerpotoroo</w:t></w:r></w:p></w:ftr>"),
    ]);
    let xlsx = zip_of(&[
        ("xl/workbook.xml", "<workbook/>"),
        ("xl/sharedStrings.xml", "<sst><si><t>wombatcell</t></si></sst>"),
        (
            "xl/worksheets/sheet1.xml",
            "<worksheet><sheetData><row><c t=\"s\"><v>0</v></c><c><v>987654</v></c></row></sheetData></worksheet>",
        ),
    ]);
    let pptx = zip_of(&[
        ("ppt/presentation.xml", "<presentation/>"),
        ("ppt/slides/slide1.xml", "<p:sld><a:p><a:r><a:t>numbatslide</a:t></a:r></a:p></p:sld>"),
        ("ppt/notesSlides/notesSlide1.xml", "<p:notes><a:p><a:r><a:t>bilbynote</a:t></a:r></a:p></p:notes>"),
    ]);
    let odt = zip_of(&[
        ("mimetype", "application/vnd.oasis.opendocument.text"),
        (
            "content.xml",
            "<office:document-content><office:text><text:p>dingoodt</text:p></office:text></office:document-content>",
        ),
    ]);
    // A DOCX and a text file inside a zip; an RTF in a Greek code page.
    let inner_docx = zip_of(&[("word/document.xml", "<w:t>kookaburrazip</w:t>")]);
    let mut archive = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut archive);
        zip.start_file("contracts/inner.docx", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&inner_docx).unwrap();
        zip.start_file("readme.txt", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(b"wallabytxt").unwrap();
        zip.finish().unwrap();
    }
    let rtf =
        br"{\rtf1\ansi\ansicpg1253{\fonttbl{\f0 Arial;}}\f0 \'ca\'e1\'eb\'e7\'ec\'dd\'f1\'e1 report\par}".to_vec();
    let c = Coffer::new();
    let dir = c.dir.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    let messages = [
        ("Contract draft", "contract.docx", format!("{OOXML}.wordprocessingml.document"), docx),
        ("Budget figures", "budget.xlsx", format!("{OOXML}.spreadsheetml.sheet"), xlsx),
        ("Board slides", "board.pptx", format!("{OOXML}.presentationml.presentation"), pptx),
        ("Minutes", "minutes.odt", "application/vnd.oasis.opendocument.text".into(), odt),
        // Named as a document, but not a readable zip: tagged, and found by its other fields.
        (
            "Broken attachment",
            "broken.docx",
            "application/octet-stream".into(),
            b"PK\x03\x04 not really a zip".to_vec(),
        ),
        // The type comes from the content, not the name.
        (
            "Renamed",
            "notes.txt.bin",
            "application/octet-stream".into(),
            zip_of(&[("word/document.xml", "<w:t>echidnarenamed</w:t>")]),
        ),
        ("Archive", "bundle.zip", "application/zip".into(), archive.into_inner()),
        ("Greek memo", "memo.rtf", "application/rtf".into(), rtf),
    ];
    for (i, (subject, name, content_type, data)) in messages.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), message(subject, name, content_type, data)).unwrap();
    }
    // A mailer's bug: the second attachment after the closing boundary.
    std::fs::write(
        dir.join("stray.eml"),
        "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Stray part\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=xyz\r\n\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nBody.\r\n\
         --xyz--\r\n--xyz\r\nContent-Type: text/plain; name=late.txt\r\nContent-Disposition: attachment; \
         filename=late.txt\r\n\r\nplatypuslate\r\n--xyz--\r\n",
    )
    .unwrap();
    c.ok(&["import", "--no-journal", dir.to_str().unwrap()]);
    let late = c.json("attachment:platypuslate", 10);
    assert_eq!((late.len(), late[0]["subject"].as_str()), (1, Some("Stray part")), "recovered for the index");

    for (word, subject) in [
        ("quokkadocx", "Contract draft"),
        ("footerpotoroo", "Contract draft"),
        ("wombatcell", "Budget figures"),
        ("987654", "Budget figures"),
        ("numbatslide", "Board slides"),
        ("bilbynote", "Board slides"),
        ("dingoodt", "Minutes"),
        ("echidnarenamed", "Renamed"),
        ("kookaburrazip", "Archive"),
        ("wallabytxt", "Archive"),
        ("καλημέρα", "Greek memo"),
    ] {
        for query in [word.to_owned(), format!("attachment:{word}")] {
            let found = c.json(&query, 10);
            assert_eq!(found.len(), 1, "{query}");
            assert_eq!(found[0]["subject"], subject, "{query}");
        }
    }
    assert_eq!(c.count("0 subject:budget"), 0, "a shared-string index is not text");
    // By content: the renamed document is a docx; the broken one is only a zip.
    for (filetype, n) in [("docx", 2), ("xlsx", 1), ("pptx", 1), ("odt", 1), ("zip", 2), ("rtf", 1), ("pdf", 0)] {
        assert_eq!(c.count(&format!("filetype:{filetype}")), n, "filetype:{filetype}");
    }
    let failed = c.json("tag:extraction-failed", 10);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["subject"], "Broken attachment");
}

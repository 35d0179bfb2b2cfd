//! Search inside attached documents (Office Open XML, OpenDocument, RTF in a non-Latin code page,
//! a zip holding a DOCX and a text file, PDFs — one printed by Chromium inside an attached
//! message —, a real winmail.dat): the test's documents each carry a unique word; each word finds
//! exactly its message, by a bare search and by `attachment:`, and `filetype:` counts are exact; a
//! document that cannot be read (a broken zip, a PDF bomb, a PDF that crashes or loops its parser)
//! is tagged and its message still found; a part written after the closing boundary, or under a
//! boundary other than the declared one, is found by its text.

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
    // A gzipped tar, as GNU tar writes it, of a text file and a DOCX.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("b")).unwrap();
    std::fs::write(work.path().join("b/notes.txt"), "numbattar").unwrap();
    std::fs::write(work.path().join("b/offer.docx"), zip_of(&[("word/document.xml", "<w:t>bettongtgz</w:t>")]))
        .unwrap();
    let tar =
        std::process::Command::new("tar").arg("czf").arg("bundle.tar.gz").arg("b").current_dir(work.path()).status();
    assert!(tar.unwrap().success());
    let tarball = std::fs::read(work.path().join("bundle.tar.gz")).unwrap();
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
        ("Tarball", "bundle.tar.gz", "application/gzip".into(), tarball),
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
    // Another: the header declares one boundary, the body uses another; a DOCX under it.
    let docx = base64::engine::general_purpose::STANDARD
        .encode(zip_of(&[("word/document.xml", "<w:document><w:t>quolldocx</w:t></w:document>")]));
    std::fs::write(
        dir.join("mismatched.eml"),
        format!(
            "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Mismatched boundary\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=declared\r\n\r\nThis is a multi-part message.\r\n\
             --actual\r\nContent-Type: text/plain\r\n\r\nquollbody\r\n--actual\r\nContent-Type: application/octet-stream; \
             name=terms.docx\r\nContent-Disposition: attachment; filename=terms.docx\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{docx}\r\n--actual--\r\n"
        ),
    )
    .unwrap();
    c.ok(&["import", "--no-journal", dir.to_str().unwrap()]);
    let late = c.json("attachment:platypuslate", 10);
    assert_eq!((late.len(), late[0]["subject"].as_str()), (1, Some("Stray part")), "recovered for the index");
    for query in ["quollbody", "attachment:quolldocx", "filename:terms.docx"] {
        let found = c.json(query, 10);
        assert_eq!(found.len(), 1, "{query}");
        assert_eq!(found[0]["subject"], "Mismatched boundary", "{query}");
    }
    assert_eq!(c.count("tag:malformed"), 2, "both recovered messages are flagged");

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
        ("numbattar", "Tarball"),
        ("bettongtgz", "Tarball"),
    ] {
        for query in [word.to_owned(), format!("attachment:{word}")] {
            let found = c.json(&query, 10);
            assert_eq!(found.len(), 1, "{query}");
            assert_eq!(found[0]["subject"], subject, "{query}");
        }
    }
    assert_eq!(c.count("0 subject:budget"), 0, "a shared-string index is not text");
    // By content: the renamed document is a docx; the broken one is only a zip.
    for (filetype, n) in
        [("docx", 3), ("xlsx", 1), ("pptx", 1), ("odt", 1), ("zip", 2), ("rtf", 1), ("gzip", 1), ("pdf", 0)]
    {
        assert_eq!(c.count(&format!("filetype:{filetype}")), n, "filetype:{filetype}");
    }
    let failed = c.json("tag:extraction-failed", 10);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["subject"], "Broken attachment");
}

/// A PDF of one page whose content stream is `content`; `objects` follow as objects 5, 6, ….
fn pdf(content: &[u8], resources: &str, objects: &[Vec<u8>]) -> Vec<u8> {
    let mut objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources {resources} >>")
            .into_bytes(),
        pdf_stream(content, ""),
    ];
    objs.extend_from_slice(objects);
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).as_bytes(),
    );
    out
}

/// A Flate-compressed stream object with `dictionary` entries beside its length and filter.
fn pdf_stream(data: &[u8], dictionary: &str) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).unwrap();
    let z = z.finish().unwrap();
    let mut out = format!("<< /Length {} /Filter /FlateDecode {dictionary}>>\nstream\n", z.len()).into_bytes();
    out.extend_from_slice(&z);
    out.extend_from_slice(b"\nendstream");
    out
}

/// A form that paints the form `next` twice (the last paints nothing): `depth` of them paint
/// 2^depth times, a loop in all but name.
fn laughing_forms(depth: usize) -> Vec<Vec<u8>> {
    const FORM: &str = "/Type /XObject /Subtype /Form /BBox [0 0 10 10] ";
    (0..depth)
        .map(|i| match i + 1 == depth {
            true => pdf_stream(b"q Q", FORM),
            false => pdf_stream(b"/X Do /X Do", &format!("{FORM}/Resources << /XObject << /X {} 0 R >> >> ", i + 6)),
        })
        .collect()
}

/// A message whose only attachment is the message `inner`.
fn forwarding(subject: &str, inner: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: carol@contoso.com\r\nTo: dave@contoso.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\n\
         Forwarded.\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(inner);
    out.extend_from_slice(b"\r\n--outer--\r\n");
    out
}

#[test]
fn pdfs_are_searched_in_a_limited_worker_and_pdf_and_zip_bombs_a_crash_and_a_loop_are_stopped_and_tagged() {
    // A PDF as browsers write them (fonts embedded, text through a ToUnicode map), inside an
    // attached message.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("report.html"), "<h1>Quarterly report</h1><p>The echidnapdf clause.</p>").unwrap();
    let printed = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--print-to-pdf={}", work.path().join("report.pdf").display()))
        .arg(work.path().join("report.html"))
        .output()
        .expect("Debian's chromium (scripts/test-env.sh installs it)");
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let report = std::fs::read(work.path().join("report.pdf")).unwrap();
    let helvetica = "<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>";
    let plain = pdf(b"BT /F1 12 Tf 72 700 Td (platypuspdf here) Tj ET", helvetica, &[]);
    // 768 MiB of spaces in a file of less than 1 MB: past the worker's memory.
    let bomb =
        pdf(&[b"BT /F1 12 Tf 72 700 Td (bomb) Tj ET\n".as_slice(), &vec![b' '; 3 << 28]].concat(), helvetica, &[]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    // A form that paints itself: the parser recurses until its stack runs out.
    let recursive = pdf(
        b"/X Do",
        "<< /XObject << /X 5 0 R >> >>",
        &[pdf_stream(
            b"/X Do",
            "/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /X 5 0 R >> >> ",
        )],
    );
    // Forty forms, each painting the next twice: 2^40 paints in a few kilobytes.
    let looping = pdf(b"/X Do", "<< /XObject << /X 5 0 R >> >>", &laughing_forms(40));
    // A zip whose one entry expands to 100 MiB: past the 64 MiB an entry may expand to.
    let zip_bomb = {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        zip.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    };
    assert!(zip_bomb.len() < 1 << 20, "{}", zip_bomb.len());

    let c = Coffer::new();
    let dir = c.dir.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    let inner = message("Quarterly report", "report.pdf", "application/pdf", &report);
    std::fs::write(dir.join("0.eml"), forwarding("Fwd: the report", &inner)).unwrap();
    for (i, (subject, data)) in [
        ("Signed scan", &plain),
        ("Bomb", &bomb),
        ("Recursive", &recursive),
        ("Looping", &looping),
        ("Zipped", &zip_bomb),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            dir.join(format!("{}.eml", i + 1)),
            message(subject, &format!("{i}.pdf"), "application/pdf", data),
        )
        .unwrap();
    }
    std::fs::write(dir.join("9.eml"), message("After them", "notes.pdf", "application/pdf", &plain)).unwrap();
    let out = c
        .command()
        .env("COFFER_EXTRACT__TIME_LIMIT_SECONDS", "2")
        .env("COFFER_EXTRACT__MEMORY_LIMIT_MIB", "512")
        .args(["import", "--no-journal", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (query, subjects) in [
        ("echidnapdf", vec!["Fwd: the report"]),
        ("attachment:echidnapdf", vec!["Fwd: the report"]),
        ("platypuspdf", vec!["After them", "Signed scan"]),
        ("attachment:platypuspdf", vec!["After them", "Signed scan"]),
    ] {
        let mut found: Vec<String> =
            c.json(query, 10).iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect();
        found.sort();
        assert_eq!(found, subjects, "{query}");
    }
    assert_eq!(c.count("filetype:pdf"), 6);
    // Each stopped by a limit, tagged, and still found by its subject; the indexer went on.
    let mut failed: Vec<String> =
        c.json("tag:extraction-failed", 10).iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect();
    failed.sort();
    assert_eq!(failed, ["Bomb", "Looping", "Recursive", "Zipped"]);
    for subject in ["bomb", "looping", "recursive", "zipped"] {
        assert_eq!(c.count(&format!("subject:{subject}")), 1, "{subject}");
    }
}

#[test]
fn a_winmail_dat_and_an_attached_outlook_item_are_opened_and_what_they_hold_is_found() {
    // A real TNEF stream from MimeKit's tests: an RTF body and a Word file, a PDF and a web page;
    // a real .msg from ruby-msg's.
    let corpus = std::env::var("COFFER_CORPUS_DIR").expect("COFFER_CORPUS_DIR (scripts/test-env.sh sets it)");
    let corpus = std::path::Path::new(&corpus);
    let tnef = std::fs::read(corpus.join("mimekit/UnitTests/TestData/tnef/MAPI_ATTACH_DATA_OBJ.tnef")).unwrap();
    let item = std::fs::read(corpus.join("msg/ruby-msg__test_Blammo.msg")).unwrap();
    let c = Coffer::new();
    let dir = c.dir.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0.eml"), message("VIA Nytt", "winmail.dat", "application/ms-tnef", &tnef)).unwrap();
    std::fs::write(dir.join("2.eml"), message("Forwarded item", "Blammo.msg", "application/vnd.ms-outlook", &item))
        .unwrap();
    std::fs::write(dir.join("1.eml"), message("Unrelated", "notes.txt", "text/plain", b"nothing to see")).unwrap();
    c.ok(&["import", "--no-journal", dir.to_str().unwrap()]);
    for query in [
        // The RTF body.
        "plisséskjørt",
        // The PDF's text (the web page has it too).
        "attachment:oljemessen",
        // An attachment's name inside the stream.
        "attachment:VIA_Nytt_1402.pdf",
        "filetype:tnef",
    ] {
        let found = c.json(query, 10);
        assert_eq!(found.len(), 1, "{query}");
        assert_eq!(found[0]["subject"], "VIA Nytt", "{query}");
    }
    // The Outlook item: its sender, subject and body.
    for query in ["attachment:triplenickel", "attachment:blammoblammo", "attachment:blam", "filetype:msg"] {
        let found = c.json(query, 10);
        assert_eq!(found.len(), 1, "{query}");
        assert_eq!(found[0]["subject"], "Forwarded item", "{query}");
    }
}

/// `source` (named `name`) converted by LibreOffice to `format` (`doc`, `xls`, `ppt`).
fn libreoffice(dir: &std::path::Path, name: &str, source: &str, format: &str) -> Vec<u8> {
    std::fs::write(dir.join(name), source).unwrap();
    let filter = match format {
        "doc" => "doc:MS Word 97",
        "xls" => "xls:MS Excel 97",
        _ => "ppt:MS PowerPoint 97",
    };
    let out = std::process::Command::new("soffice")
        .args(["--headless", "--convert-to", filter, "--outdir"])
        .arg(dir)
        .arg(dir.join(name))
        .env("HOME", dir)
        .output()
        .expect("LibreOffice (scripts/test-env.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stem = name.rsplit_once('.').unwrap().0;
    std::fs::read(dir.join(format!("{stem}.{format}"))).unwrap()
}

#[test]
fn words_in_legacy_word_excel_and_powerpoint_files_find_their_message() {
    let work = tempfile::tempdir().unwrap();
    let doc = libreoffice(
        work.path(),
        "letter.html",
        "<html><body><p>The bandicootdoc clause.</p><p>Zahlung für Straße.</p></body></html>",
        "doc",
    );
    let xls = libreoffice(work.path(), "figures.csv", "region,amount\ncapybaraxls,314159\n", "xls");
    let ppt = libreoffice(
        work.path(),
        "deck.fodp",
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.2"
 office:mimetype="application/vnd.oasis.opendocument.presentation"><office:body><office:presentation>
<draw:page draw:name="one"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm">
<draw:text-box><text:p>The pangolinppt slide</text:p></draw:text-box></draw:frame>
<presentation:notes><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm">
<draw:text-box><text:p>A quollnote in the notes</text:p></draw:text-box></draw:frame></presentation:notes>
</draw:page></office:presentation></office:body></office:document>"#,
        "ppt",
    );
    let c = Coffer::new();
    let dir = c.dir.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (subject, name, data)) in
        [("Letter", "letter.doc", &doc), ("Figures", "figures.xls", &xls), ("Deck", "deck.ppt", &ppt)]
            .iter()
            .enumerate()
    {
        std::fs::write(dir.join(format!("{i}.eml")), message(subject, name, "application/octet-stream", data)).unwrap();
    }
    c.ok(&["import", "--no-journal", dir.to_str().unwrap()]);
    for (word, subject) in [
        ("bandicootdoc", "Letter"),
        ("straße", "Letter"),
        ("capybaraxls", "Figures"),
        ("314159", "Figures"),
        ("pangolinppt", "Deck"),
        ("quollnote", "Deck"),
    ] {
        for query in [word.to_owned(), format!("attachment:{word}")] {
            let found = c.json(&query, 10);
            assert_eq!(found.len(), 1, "{query}");
            assert_eq!(found[0]["subject"], subject, "{query}");
        }
    }
    for filetype in ["doc", "xls", "ppt"] {
        assert_eq!(c.count(&format!("filetype:{filetype}")), 1, "filetype:{filetype}");
    }
    assert_eq!(c.count("click"), 0, "a master slide's placeholder text is not the author's");
}

#[test]
fn with_ocr_on_the_text_of_a_picture_and_of_a_scanned_pdf_is_found_after_plain_indexing_and_kept() {
    // A picture of text, as Chromium draws it.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("scan.html"),
        "<body style=\"margin:40px;font:48px sans-serif\">The wombatscan invoice 4711</body>",
    )
    .unwrap();
    let drawn = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,200"])
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--screenshot={}", work.path().join("scan.png").display()))
        .arg(work.path().join("scan.html"))
        .output()
        .expect("Debian's chromium (scripts/test-env.sh installs it)");
    assert!(drawn.status.success(), "{}", String::from_utf8_lossy(&drawn.stderr));
    let png = std::fs::read(work.path().join("scan.png")).unwrap();
    // A scanned letter: a PDF whose page is a picture of text (another one), no text in it.
    std::fs::write(
        work.path().join("letter.html"),
        "<body style=\"margin:40px;font:48px sans-serif\">Dear bilbyscan committee</body>",
    )
    .unwrap();
    let page = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,200"])
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--screenshot={}", work.path().join("letter.png").display()))
        .arg(work.path().join("letter.html"))
        .output()
        .unwrap();
    assert!(page.status.success());
    std::fs::write(
        work.path().join("scan.html"),
        "<body style=\"margin:0\"><img src=\"letter.png\" width=\"700\"></body>",
    )
    .unwrap();
    let printed = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--print-to-pdf={}", work.path().join("scan.pdf").display()))
        .arg(work.path().join("scan.html"))
        .output()
        .unwrap();
    assert!(printed.status.success());
    let scanned = std::fs::read(work.path().join("scan.pdf")).unwrap();

    let c = Coffer::new();
    let dir = c.dir.path().join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0.eml"), message("Scanned invoice", "scan.png", "image/png", &png)).unwrap();
    std::fs::write(dir.join("1.eml"), message("Scanned letter", "letter.pdf", "application/pdf", &scanned)).unwrap();
    c.ok(&["import", "--no-journal", dir.to_str().unwrap()]);
    assert_eq!(c.count("subject:invoice"), 1);
    assert_eq!(c.count("wombatscan"), 0, "OCR is off by default");
    assert_eq!(c.count("bilbyscan"), 0, "the scan's PDF holds no text");

    let reindex = |ocr: &str| {
        let out = c.command().env("COFFER_EXTRACT__OCR", ocr).args(["reindex"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    reindex("true");
    for (query, subject) in [
        ("wombatscan", "Scanned invoice"),
        ("attachment:wombatscan", "Scanned invoice"),
        ("attachment:4711", "Scanned invoice"),
        ("attachment:bilbyscan", "Scanned letter"),
    ] {
        let found = c.json(query, 10);
        assert_eq!(found.len(), 1, "{query}");
        assert_eq!(found[0]["subject"], subject, "{query}");
    }
    // What OCR read is kept: indexed again with OCR off, the picture's words are still found.
    reindex("false");
    assert_eq!(c.count("wombatscan"), 1);

    let bad = c.command().env("COFFER_EXTRACT__OCR_LANGUAGES", "eng -psm 0").args(["reindex"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ocr_languages"), "{}", String::from_utf8_lossy(&bad.stderr));
}

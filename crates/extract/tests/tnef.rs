//! TNEF against MimeKit's test streams (`$COFFER_CORPUS_DIR/mimekit/UnitTests/TestData/tnef`): for
//! each stream, the attachments' names and bytes and the message's body are those MimeKit's
//! tests expect (the files beside each stream).

use std::collections::HashMap;
use std::path::PathBuf;

use coffer_extract::tnef::{self, Body};

fn corpus() -> PathBuf {
    let dir = std::env::var("COFFER_CORPUS_DIR")
        .expect("COFFER_CORPUS_DIR names the shared corpora (scripts/test-env.sh sets it)");
    PathBuf::from(dir).join("mimekit/UnitTests/TestData/tnef")
}

/// Equal, or equal once CRLF becomes LF: the expected text files lost their CRs in MimeKit's
/// repository.
fn same(found: &[u8], want: &[u8]) -> bool {
    let without_crs: Vec<u8> = found
        .iter()
        .enumerate()
        .filter(|&(i, &b)| !(b == b'\r' && found.get(i + 1) == Some(&b'\n')))
        .map(|(_, &b)| b)
        .collect();
    found == want || without_crs == want
}

#[test]
fn every_stream_gives_the_attachments_and_body_mimekit_expects() {
    let dir = corpus();
    let mut streams: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tnef"))
        .collect();
    streams.sort();
    assert!(streams.len() >= 19, "{streams:?}");
    let mut attachments_checked = 0;
    for stream in &streams {
        let stem = stream.file_stem().unwrap().to_str().unwrap();
        let data = std::fs::read(stream).unwrap();
        let found = tnef::read(&data).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // The files MimeKit's tests expect, beside the stream; a name that repeats is numbered
        // (`Untitled Attachment.1`, `.2`, in the stream's order).
        let mut expected: Vec<String> = std::fs::read_dir(dir.join(stem))
            .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        expected.sort();
        let body = expected.iter().find(|n| n.starts_with("message.")).cloned();
        expected.retain(|n| !n.starts_with("message."));
        let base = |file: &str| -> String {
            match file.rsplit_once('.') {
                Some((b, n))
                    if n.parse::<u32>().is_ok() && expected.iter().filter(|f| f.starts_with(b)).count() > 1 =>
                {
                    b.to_owned()
                }
                _ => file.to_owned(),
            }
        };
        let mut want_names: Vec<String> = expected.iter().map(|f| base(f)).collect();
        let mut names: Vec<String> =
            found.attachments.iter().map(|a| a.name.clone().unwrap_or_else(|| "Untitled Attachment".into())).collect();
        let in_order = names.clone();
        want_names.sort();
        names.sort();
        assert_eq!(names, want_names, "{stem}: attachment names");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (a, name) in found.attachments.iter().zip(&in_order) {
            let n = seen.entry(name).or_default();
            *n += 1;
            let file = match expected.contains(name) {
                true => name.clone(),
                false => format!("{name}.{n}"),
            };
            let path = dir.join(stem).join(&file);
            let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(same(&a.data, &want), "{stem}: {file}: {} bytes, expected {}", a.data.len(), want.len());
            attachments_checked += 1;
        }

        match (body.as_deref(), &found.body) {
            (Some("message.rtf"), Some(Body::CompressedRtf(compressed))) => {
                let rtf = coffer_extract::rtf::decompress(compressed).unwrap_or_else(|| panic!("{stem}: RTF"));
                let want = std::fs::read(dir.join(stem).join("message.rtf")).unwrap();
                // MimeKit keeps the NUL that ends the decompressed text.
                let want = want.strip_suffix(&[0]).unwrap_or(&want);
                assert!(same(rtf.as_bytes(), want), "{stem}: RTF body of {} bytes, expected {}", rtf.len(), want.len());
            }
            (Some("message.html"), Some(Body::Html(html))) => {
                let want = std::fs::read(dir.join(stem).join("message.html")).unwrap();
                assert!(same(html, &want), "{stem}: HTML body of {} bytes, expected {}", html.len(), want.len());
            }
            (None, _) => {}
            (want, got) => panic!("{stem}: body {want:?}, found {:?}", got.as_ref().map(std::mem::discriminant)),
        }
    }
    assert!(attachments_checked >= 25, "{attachments_checked}");
}

#[test]
fn a_stream_cut_anywhere_gives_what_came_before_the_cut_and_never_panics() {
    let data = std::fs::read(corpus().join("christmas.tnef")).unwrap();
    let whole = tnef::read(&data).unwrap();
    for cut in (6..data.len()).step_by(997) {
        let part = tnef::read(&data[..cut]).unwrap();
        assert!(part.attachments.len() <= whole.attachments.len());
        for (a, w) in part.attachments.iter().zip(&whole.attachments) {
            assert!(a.data.is_empty() || a.data == w.data, "cut at {cut}");
        }
    }
    assert!(tnef::read(b"not tnef").is_err());
}

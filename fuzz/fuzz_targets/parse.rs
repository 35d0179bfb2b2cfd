#![no_main]
// Any bytes: a document comes out, nothing panics.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let doc = coffer_mail::parse(data);
    assert!(doc.body.len() <= coffer_mail::MAX_TEXT);
});

#![no_main]
// Any text: a syntax tree or an error, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = coffer_index::query::parse(text);
    }
});

#![no_main]
// Splitting never loses more than the postmarks, separators and quoting it removes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let total: usize = coffer_mail::mbox::Mbox::new(data).map(|m| m.len()).sum();
    assert!(total <= data.len());
});

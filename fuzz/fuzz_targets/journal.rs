#![no_main]
// An unwrapped original is always a part of the input's bytes or a decoding of them.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let coffer_mail::journal::Unwrapped::Report(r) = coffer_mail::journal::unwrap(data) {
        assert!(r.original.len() <= data.len() * 2);
    }
});

//! Arbitrary bytes as a client certificate whose subject alternative names the HTTP server
//! reads for `client_allowed_sans`: never a panic, and whatever it returns is the same on a
//! second read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let sans = strata_fuzz::client_cert_der::subject_alt_names(data);
    assert_eq!(sans, strata_fuzz::client_cert_der::subject_alt_names(data));
    if let Some((_, value, rest)) = strata_fuzz::client_cert_der::tlv(data) {
        assert!(value.len() + rest.len() < data.len());
    }
});

//! Fuzz the Serf RPC request decoder (`haserf::rpc::codec`): `decode_request` must never
//! panic, never claim more bytes than it was given, and whatever decodes must re-encode and
//! decode to the same request; the client-side `decode_header` must never panic either.
//!
//! Run (needs nightly + cargo-fuzz): `cd fuzz && cargo +nightly fuzz run decode_rpc`, or
//! `scripts/fuzz.sh` for every target.
#![no_main]

use haserf::rpc::codec::{decode_header, decode_request, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((req, used))) = decode_request(data) {
        assert!(used <= data.len());
        let again = encode_request(&req);
        match decode_request(&again) {
            Ok(Some((r2, n))) => {
                assert_eq!(n, again.len());
                assert_eq!(r2, req);
            }
            other => panic!("re-encoded request does not decode: {other:?}"),
        }
    }
    let _ = decode_header(data);
});

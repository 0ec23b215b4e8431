//! Fuzz the gossip wire decoders: `decode_packet` and `decode_stream`, with and without a
//! keyring, must never panic; whatever decodes must re-encode and decode to the same
//! messages (decode → encode → compare, as rustls' message fuzzer does).
//!
//! Run (needs nightly + cargo-fuzz): `cd fuzz && cargo +nightly fuzz run decode_packet`
//! Seed corpus: `mkdir -p corpus/decode_packet && for f in ../tests/fixtures/gossip/*/*.hex;
//! do xxd -r -p "$f" > corpus/decode_packet/$(basename "$f" .hex); done`
#![no_main]

use haserf::gossip::wire::*;
use libfuzzer_sys::fuzz_target;

const K1: &str = "HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=";

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::from_base64(&[K1.to_owned()]).unwrap();
    for keyring in [None, Some(&ring)] {
        if let Ok(p) = decode_packet(data, keyring) {
            let parts: Vec<Vec<u8>> = p.messages.iter().map(encode_message).collect();
            let opts = PacketOptions {
                keyring,
                crc: p.had_crc,
                compress: true,
                label: p.label.as_deref(),
            };
            // Re-encoding may grow a little (str8 → str16): near the size limits the
            // re-encoded packet may be refused as too large, which is fine.
            if parts.iter().all(|m| m.len() <= u16::MAX as usize) {
                match decode_packet(&encode_packet(&parts, &opts), keyring) {
                    Ok(again) => assert_eq!(again.messages, p.messages),
                    Err(WireError::TooLarge { .. }) => {}
                    Err(e) => panic!("re-encoded packet does not decode: {e}"),
                }
            }
        }
        if let Ok(Some((m, used))) = decode_stream(data, keyring) {
            assert!(used <= data.len());
            let opts = PacketOptions {
                keyring,
                crc: false,
                compress: true,
                label: None,
            };
            let b = encode_stream(&m, &opts);
            match decode_stream(&b, keyring) {
                Ok(Some((again, n))) => {
                    assert_eq!(n, b.len());
                    assert_eq!(again, m);
                }
                Err(WireError::TooLarge { .. }) => {}
                other => panic!("re-encoded stream does not decode: {other:?}"),
            }
        }
    }
    let _ = decode_message(data);
    let _ = decode_serf_message(data);
    let _ = decode_tags(data);
    let _ = lzw_decompress(data, 1 << 20);
});

//! Behaviour of the gossip wire codec on hand-made input: Go's msgpack tolerances,
//! framing rules, limits and the specific error of each kind of bad input.

use std::collections::BTreeMap;
use std::net::IpAddr;

use haserf::gossip::wire::*;

fn ping() -> Message {
    Message::Ping(Ping {
        node: "n1".into(),
        seq_no: 1,
        source_addr: Some(IpAddr::from([127, 0, 0, 12])),
        source_node: "n2".into(),
        source_port: 7946,
    })
}

fn ring(b: u8) -> Keyring {
    Keyring::new(vec![b; 32]).unwrap()
}

#[test]
fn the_worked_ping_example_encodes_byte_for_byte() {
    let expected = "0085a44e6f6465a26e31a55365714e6f01aa536f7572636541646472a47f00000c\
                    aa536f757263654e6f6465a26e32aa536f75726365506f7274cd1f0a";
    let ours: String = encode_message(&ping())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(ours, expected);
}

#[test]
fn a_ping_without_source_fields_omits_them() {
    let m = Message::Ping(Ping {
        node: "n1".into(),
        seq_no: 7,
        ..Ping::default()
    });
    let b = encode_message(&m);
    assert_eq!(b[1], 0x82, "map of 2: Node, SeqNo");
    assert_eq!(decode_message(&b).unwrap(), m);
}

#[test]
fn new_spec_msgpack_forms_from_a_foreign_encoder_are_accepted() {
    // ping: SourceAddr as bin8, SourceNode as str8, SeqNo as int16 (signed form).
    let mut b = vec![0x00, 0x84];
    b.extend_from_slice(b"\xa4Node\xa2n1");
    b.extend_from_slice(b"\xa5SeqNo\xd1\x01\x00");
    b.extend_from_slice(b"\xaaSourceAddr\xc4\x04\x7f\x00\x00\x0c");
    b.extend_from_slice(b"\xaaSourceNode\xd9\x02n2");
    let Message::Ping(p) = decode_message(&b).unwrap() else {
        panic!()
    };
    assert_eq!(p.seq_no, 256);
    assert_eq!(p.source_addr, Some(IpAddr::from([127, 0, 0, 12])));
    assert_eq!(p.source_node, "n2");
}

#[test]
fn byte_fields_accept_an_array_of_small_ints() {
    let mut b = vec![0x02, 0x82];
    b.extend_from_slice(b"\xa7Payload\x93\x01\x02\xcc\xff");
    b.extend_from_slice(b"\xa5SeqNo\x05");
    assert_eq!(
        decode_message(&b).unwrap(),
        Message::Ack(Ack {
            seq_no: 5,
            payload: Some(vec![1, 2, 255])
        })
    );
}

#[test]
fn unknown_fields_are_skipped_and_missing_ones_are_zero() {
    let mut b = vec![0x03, 0x82];
    b.extend_from_slice(b"\xa4Node\xa2n3");
    b.extend_from_slice(b"\xa5Extra\x92\x81\xa1x\xc3\xcb\x00\x00\x00\x00\x00\x00\x00\x00");
    assert_eq!(
        decode_message(&b).unwrap(),
        Message::Suspect(Suspect {
            incarnation: 0,
            node: "n3".into(),
            from: String::new()
        })
    );
}

#[test]
fn an_alive_without_addr_is_a_missing_field() {
    let mut b = vec![0x04, 0x81];
    b.extend_from_slice(b"\xa4Node\xa2n3");
    assert_eq!(
        decode_message(&b).unwrap_err(),
        WireError::MissingField("Addr")
    );
}

#[test]
fn a_string_field_holding_an_integer_is_a_wrong_type() {
    let mut b = vec![0x05, 0x81];
    b.extend_from_slice(b"\xa4Node\x05");
    let e = decode_message(&b).unwrap_err();
    assert_eq!(e.kind(), "wrong_msgpack_type");
    assert!(e.to_string().contains("Node"), "{e}");
}

#[test]
fn a_negative_value_in_an_unsigned_field_is_bad_msgpack() {
    let mut b = vec![0x0b, 0x81];
    b.extend_from_slice(b"\xa5SeqNo\xff");
    assert_eq!(decode_message(&b).unwrap_err().kind(), "bad_msgpack");
}

#[test]
fn an_ip_of_five_bytes_is_bad_msgpack() {
    let mut b = vec![0x04, 0x81];
    b.extend_from_slice(b"\xa4Addr\xa5\x01\x02\x03\x04\x05");
    assert_eq!(decode_message(&b).unwrap_err().kind(), "bad_msgpack");
}

#[test]
fn an_unknown_message_type_is_reported_with_its_number() {
    assert_eq!(
        decode_message(&[0x63, 0x80]).unwrap_err(),
        WireError::UnknownMessageType(0x63)
    );
    assert_eq!(
        decode_packet(&[0x63, 0x80], None).unwrap_err(),
        WireError::UnknownMessageType(0x63)
    );
}

#[test]
fn a_packet_with_a_wrong_crc_is_bad_crc() {
    let mut b = encode_packet(
        &[encode_message(&ping())],
        &PacketOptions {
            crc: true,
            ..Default::default()
        },
    );
    let last = b.len() - 1;
    b[last] ^= 1;
    assert_eq!(decode_packet(&b, None).unwrap_err().kind(), "bad_crc");
}

#[test]
fn a_compound_keeps_its_good_parts_and_reports_the_bad_ones() {
    let good = encode_message(&ping());
    let bad = vec![0x03, 0x81, 0xa4, b'N', b'o', b'd', b'e', 0x05];
    let crc_inside = vec![0x0c, 0, 0, 0, 0, 0x0b, 0x80];
    let b = encode_compound(&[good.clone(), bad, crc_inside, good]);
    let p = decode_packet(&b, None).unwrap();
    assert_eq!(p.messages, vec![ping(), ping()]);
    assert_eq!(p.errors.len(), 2);
    assert_eq!(p.errors[0].kind(), "wrong_msgpack_type");
    assert_eq!(p.errors[1], WireError::UnexpectedMessageType(0x0c));
}

#[test]
fn a_truncated_compound_keeps_the_complete_leading_parts() {
    let good = encode_message(&ping());
    let b = encode_compound(&[good.clone(), good]);
    let p = decode_packet(&b[..b.len() - 3], None).unwrap();
    assert_eq!(p.messages, vec![ping()]);
    assert_eq!(p.errors, vec![WireError::Truncated]);
}

#[test]
fn more_than_255_messages_go_in_nested_compounds() {
    let msgs: Vec<Vec<u8>> = (0..300u32)
        .map(|i| encode_message(&Message::Nack(Nack { seq_no: i })))
        .collect();
    let b = encode_packet(&msgs, &PacketOptions::default());
    assert_eq!(b[0], 0x07);
    let p = decode_packet(&b, None).unwrap();
    assert_eq!(p.messages.len(), 300);
    assert_eq!(p.messages[299], Message::Nack(Nack { seq_no: 299 }));
}

#[test]
fn compression_is_used_only_when_strictly_smaller() {
    let small = encode_message(&ping());
    let opts = PacketOptions {
        compress: true,
        ..Default::default()
    };
    assert_eq!(encode_packet(std::slice::from_ref(&small), &opts), small);
    let big = encode_message(&Message::User(vec![b'a'; 500]));
    let c = encode_packet(std::slice::from_ref(&big), &opts);
    assert_eq!(c[0], 0x09);
    assert!(c.len() < big.len());
    assert_eq!(
        decode_packet(&c, None).unwrap().messages,
        vec![Message::User(vec![b'a'; 500])]
    );
}

#[test]
fn a_compress_with_an_unknown_algorithm_is_unsupported_compression() {
    let mut b = vec![0x09, 0x82];
    b.extend_from_slice(b"\xa4Algo\x01\xa3Buf\xa0");
    assert_eq!(
        decode_packet(&b, None).unwrap_err(),
        WireError::UnsupportedCompression(1)
    );
}

#[test]
fn corrupt_lzw_in_a_packet_is_bad_lzw() {
    let mut b = vec![0x09, 0x82];
    b.extend_from_slice(b"\xa4Algo\x00\xa3Buf\xa2\xff\xff");
    assert_eq!(decode_packet(&b, None).unwrap_err().kind(), "bad_lzw");
}

#[test]
fn a_decompression_bomb_in_a_packet_is_too_large() {
    let inner = encode_message(&Message::User(vec![0; 2 << 20]));
    let bomb = encode_compress(&inner);
    assert!(bomb.len() < 65536, "bomb fits a datagram: {}", bomb.len());
    assert_eq!(decode_packet(&bomb, None).unwrap_err().kind(), "too_large");
}

#[test]
fn deeply_nested_compress_containers_are_refused() {
    let mut b = encode_message(&ping());
    for _ in 0..8 {
        b = encode_compress(&b);
    }
    assert_eq!(decode_packet(&b, None).unwrap_err(), WireError::TooDeep);
}

#[test]
fn push_pull_and_err_are_not_accepted_in_packets() {
    let pp = encode_message(&Message::PushPull(PushPull {
        join: false,
        nodes: vec![],
        user_state: vec![],
    }));
    assert_eq!(
        decode_packet(&pp, None).unwrap_err(),
        WireError::UnexpectedMessageType(6)
    );
}

#[test]
fn an_encryption_version_above_one_is_unsupported() {
    let r = ring(1);
    let mut b = r.encrypt(&encode_message(&ping()), b"");
    b[0] = 0x37; // not a memberlist message type either
    assert_eq!(
        decode_packet(&b, Some(&r)).unwrap_err(),
        WireError::UnsupportedEncryptionVersion(0x37)
    );
}

#[test]
fn version_zero_packets_from_old_members_are_accepted() {
    let r = ring(1);
    let sealed = r.encrypt_with_nonce(0, &[9; 12], &encode_message(&ping()), b"");
    assert_eq!(sealed[0], 0);
    let p = decode_packet(&sealed, Some(&r)).unwrap();
    assert_eq!(p.messages, vec![ping()]);
}

#[test]
fn a_labeled_packet_uses_the_label_as_additional_data() {
    let r = ring(2);
    let opts = PacketOptions {
        keyring: Some(&r),
        label: Some(b"dc1"),
        ..Default::default()
    };
    let b = encode_packet(&[encode_message(&ping())], &opts);
    assert_eq!(&b[..5], b"\xf4\x03dc1");
    let p = decode_packet(&b, Some(&r)).unwrap();
    assert_eq!(p.label.as_deref(), Some(&b"dc1"[..]));
    assert_eq!(p.messages, vec![ping()]);
    // Same ciphertext under another label does not authenticate.
    let mut other = b.clone();
    other[2..5].copy_from_slice(b"dc2");
    assert_eq!(
        decode_packet(&other, Some(&r)).unwrap_err(),
        WireError::NoKeyDecrypts
    );
}

#[test]
fn an_encrypted_frame_announcing_more_than_20_mib_is_refused_before_buffering() {
    let b = [0x0a, 0x01, 0x40, 0x00, 0x01];
    assert_eq!(
        decode_stream(&b, Some(&ring(1))).unwrap_err().kind(),
        "too_large"
    );
}

#[test]
fn a_push_pull_announcing_huge_counts_waits_or_is_refused_without_allocating() {
    // Within limits but not there yet: need more bytes.
    let mut b = vec![0x06, 0x83];
    b.extend_from_slice(
        b"\xa4Join\xc2\xa5Nodes\xce\x00\x0f\x00\x00\xacUserStateLen\xce\x01\x00\x00\x00",
    );
    assert_eq!(decode_stream(&b, None).unwrap(), None);
    // Beyond the caps: refused.
    let mut c = vec![0x06, 0x83];
    c.extend_from_slice(b"\xa4Join\xc2\xa5Nodes\xce\xff\x00\x00\x00\xacUserStateLen\x00");
    assert_eq!(decode_stream(&c, None).unwrap_err().kind(), "too_large");
    let mut d = vec![0x06, 0x83];
    d.extend_from_slice(b"\xa4Join\xc2\xa5Nodes\x00\xacUserStateLen\xce\x7f\x00\x00\x00");
    assert_eq!(decode_stream(&d, None).unwrap_err().kind(), "too_large");
}

#[test]
fn a_huge_announced_array_in_a_packet_is_truncated_not_allocated() {
    let mut b = vec![0x04, 0x81];
    b.extend_from_slice(b"\xa4Meta\xdd\xff\xff\xff\xff\x01");
    assert_eq!(decode_message(&b).unwrap_err(), WireError::Truncated);
}

#[test]
fn streams_are_always_compressed_when_asked_even_if_larger() {
    let m = Message::Ack(Ack {
        seq_no: 3,
        payload: None,
    });
    let opts = PacketOptions {
        compress: true,
        ..Default::default()
    };
    let b = encode_stream(&m, &opts);
    assert_eq!(b[0], 0x09);
    assert!(b.len() > encode_message(&m).len());
    assert_eq!(decode_stream(&b, None).unwrap(), Some((m, b.len())));
}

#[test]
fn a_user_message_on_a_stream_uses_the_user_msg_len_header() {
    let m = Message::User(encode_serf_message(&SerfMessage::Join(JoinIntent {
        ltime: 1,
        node: "x".into(),
    })));
    let b = encode_stream(&m, &PacketOptions::default());
    assert_eq!(&b[..13], b"\x08\x81\xaaUserMsgLen");
    assert_eq!(b[13] as usize, b.len() - 14);
    assert_eq!(decode_stream(&b, None).unwrap(), Some((m, b.len())));
}

#[test]
fn an_err_reply_on_a_stream_decodes() {
    let m = Message::Err("Encryption is configured but remote state is not encrypted".into());
    let b = encode_stream(&m, &PacketOptions::default());
    assert_eq!(decode_stream(&b, None).unwrap(), Some((m, b.len())));
}

#[test]
fn an_indirect_ping_on_a_stream_is_unexpected() {
    let b = encode_message(&Message::Nack(Nack { seq_no: 1 }));
    assert_eq!(
        decode_stream(&b, None).unwrap_err(),
        WireError::UnexpectedMessageType(11)
    );
}

#[test]
fn legacy_meta_without_the_magic_byte_is_the_role_tag() {
    let t = decode_tags(b"web").unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t["role"], "web");
    assert_eq!(decode_tags(b"").unwrap()["role"], "");
}

#[test]
fn tags_above_512_bytes_are_meta_too_large() {
    let mut t = BTreeMap::new();
    t.insert("k".to_owned(), "v".repeat(600));
    assert_eq!(encode_tags(&t).unwrap_err().kind(), "meta_too_large");
}

#[test]
fn tags_encode_in_key_order_every_time() {
    let mut t = BTreeMap::new();
    t.insert("role".to_owned(), "web".to_owned());
    t.insert("port".to_owned(), "3000".to_owned());
    let a = encode_tags(&t).unwrap();
    assert_eq!(a, encode_tags(&t.clone()).unwrap());
    assert_eq!(&a[..8], b"\xff\x82\xa4port\xa4"[..8].as_ref());
}

#[test]
fn a_conflict_answer_matches_go_field_order() {
    let m = ConflictMember {
        name: "n1".into(),
        addr: IpAddr::from([127, 0, 0, 11]),
        port: 7946,
        tags: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
        status: 1,
        vsn: Vsn::SERF,
    };
    let b = encode_conflict_response(Some(&m));
    let keys: Vec<&str> = [
        "Addr",
        "DelegateCur",
        "DelegateMax",
        "DelegateMin",
        "Name",
        "Port",
        "ProtocolCur",
        "ProtocolMax",
        "ProtocolMin",
        "Status",
        "Tags",
    ]
    .to_vec();
    let mut last = 0;
    for k in keys {
        let pos = b
            .windows(k.len())
            .position(|w| w == k.as_bytes())
            .unwrap_or_else(|| panic!("{k} missing"));
        assert!(pos > last, "{k} out of order");
        last = pos;
    }
    assert_eq!(decode_conflict_response(&b).unwrap(), Some(m));
    assert_eq!(encode_conflict_response(None), vec![0x06, 0xc0]);
}

#[test]
fn serf_types_six_to_eight_are_refused_by_the_serf_message_decoder() {
    let b = encode_key_request(&KeyRequest { key: vec![] });
    assert_eq!(
        decode_serf_message(&b).unwrap_err(),
        WireError::UnexpectedMessageType(7)
    );
}

#[test]
fn error_kinds_are_distinct_snake_case_labels() {
    let errs = [
        WireError::Truncated,
        WireError::UnknownMessageType(1),
        WireError::UnexpectedMessageType(1),
        WireError::BadMsgpack {
            field: "f",
            reason: "r",
        },
        WireError::WrongType {
            field: "f",
            expected: "e",
            marker: 0,
        },
        WireError::MissingField("f"),
        WireError::BadCrc {
            expected: 0,
            actual: 1,
        },
        WireError::NoKeyDecrypts,
        WireError::PlaintextOnEncrypted,
        WireError::EncryptedWithoutKeyring,
        WireError::UnsupportedEncryptionVersion(2),
        WireError::UnsupportedCompression(1),
        WireError::BadLzw("x"),
        WireError::TooLarge {
            what: "x",
            len: 1,
            max: 0,
        },
        WireError::MetaTooLarge(600),
        WireError::BadKeySize(3),
        WireError::BadBase64,
        WireError::Keyring("x"),
        WireError::KeyringFile {
            path: "p".into(),
            reason: "r".into(),
        },
        WireError::EncryptFailed,
        WireError::TooDeep,
        WireError::BadLabel,
    ];
    let mut kinds: Vec<&str> = errs.iter().map(WireError::kind).collect();
    assert!(kinds.iter().all(|k| k
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), errs.len());
}

#[test]
fn keyring_from_base64_rejects_bad_base64_and_bad_sizes() {
    assert_eq!(
        Keyring::from_base64(&["***".into()]).unwrap_err(),
        WireError::BadBase64
    );
    assert_eq!(
        Keyring::from_base64(&["AAAA".into()]).unwrap_err(),
        WireError::BadKeySize(3)
    );
    let r = Keyring::from_base64(&["HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=".into()]).unwrap();
    assert_eq!(r.primary().len(), 32);
    assert_eq!(
        r.list_base64(),
        vec!["HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=".to_owned()]
    );
    assert!(
        !format!("{r:?}").contains("HkSA"),
        "Debug must not leak keys"
    );
}

#[test]
fn many_large_messages_nest_in_compounds_under_the_u16_part_limit() {
    let msgs: Vec<Vec<u8>> = (0..300u32)
        .map(|i| encode_message(&Message::User(vec![(i % 251) as u8; 1000])))
        .collect();
    let opts = PacketOptions {
        compress: true,
        ..Default::default()
    };
    let b = encode_packet(&msgs, &opts);
    assert!(b.len() < 65536, "compressed: {}", b.len());
    let p = decode_packet(&b, None).unwrap();
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.messages.len(), 300);
    assert_eq!(
        p.messages[299],
        Message::User(vec![(299 % 251) as u8; 1000])
    );
}

#[test]
fn compress_parts_of_one_compound_share_one_decompression_budget() {
    // Each part alone expands to 600 KiB (under the 1 MiB limit); two together do not fit.
    let part = encode_compress(&encode_message(&Message::User(vec![0; 600 << 10])));
    let b = encode_compound(&[part.clone(), part]);
    let p = decode_packet(&b, None).unwrap();
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].kind(), "too_large");
}

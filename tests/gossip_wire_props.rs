//! Property tests of the gossip wire codec: decoders never panic on arbitrary or mutated
//! input, and encode → decode round-trips arbitrary messages through every layer.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use haserf::gossip::wire::*;
use proptest::prelude::*;

// ------------------------------------------------------------------ strategies

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,12}",
        any::<String>(),
        "[a-z]{30,70}", // str16 form
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..400),
    ]
}

fn vsn() -> impl Strategy<Value = Option<Vsn>> {
    proptest::option::of(any::<[u8; 6]>().prop_map(|b| Vsn {
        pmin: b[0],
        pmax: b[1],
        pcur: b[2],
        dmin: b[3],
        dmax: b[4],
        dcur: b[5],
    }))
}

fn state() -> impl Strategy<Value = NodeStateKind> {
    prop_oneof![
        Just(NodeStateKind::Alive),
        Just(NodeStateKind::Suspect),
        Just(NodeStateKind::Dead),
        Just(NodeStateKind::Left),
    ]
}

fn node_state() -> impl Strategy<Value = PushNodeState> {
    (
        name(),
        ip(),
        any::<u16>(),
        bytes(),
        any::<u32>(),
        state(),
        vsn(),
    )
        .prop_map(
            |(name, addr, port, meta, incarnation, state, vsn)| PushNodeState {
                name,
                addr,
                port,
                meta,
                incarnation,
                state,
                vsn,
            },
        )
}

/// Messages that can travel in a UDP packet.
fn packet_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            name(),
            any::<u32>(),
            proptest::option::of(ip()),
            name(),
            any::<u16>()
        )
            .prop_map(|(node, seq_no, source_addr, source_node, source_port)| {
                Message::Ping(Ping {
                    node,
                    seq_no,
                    source_addr,
                    source_node,
                    source_port,
                })
            }),
        (
            (any::<bool>(), name(), any::<u16>(), any::<u32>()),
            (proptest::option::of(ip()), name(), any::<u16>(), ip())
        )
            .prop_map(|((nack, node, port, seq_no), (sa, sn, sp, target))| {
                Message::IndirectPing(IndirectPing {
                    nack,
                    node,
                    port,
                    seq_no,
                    source_addr: sa,
                    source_node: sn,
                    source_port: sp,
                    target,
                })
            }),
        (any::<u32>(), proptest::option::of(bytes()))
            .prop_map(|(seq_no, payload)| Message::Ack(Ack { seq_no, payload })),
        any::<u32>().prop_map(|seq_no| Message::Nack(Nack { seq_no })),
        (any::<u32>(), name(), name()).prop_map(|(incarnation, node, from)| {
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }),
        (any::<u32>(), name(), name()).prop_map(|(incarnation, node, from)| {
            Message::Dead(Dead {
                incarnation,
                node,
                from,
            })
        }),
        (any::<u32>(), name(), ip(), any::<u16>(), bytes(), vsn()).prop_map(
            |(incarnation, node, addr, port, meta, vsn)| Message::Alive(Alive {
                incarnation,
                node,
                addr,
                port,
                meta,
                vsn
            })
        ),
        bytes().prop_map(Message::User),
    ]
}

/// Messages that can travel on a TCP stream.
fn stream_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<bool>(),
            proptest::collection::vec(node_state(), 0..20),
            bytes()
        )
            .prop_map(|(join, nodes, user_state)| Message::PushPull(PushPull {
                join,
                nodes,
                user_state
            })),
        packet_message().prop_filter("stream types", |m| matches!(
            m,
            Message::Ping(_) | Message::Ack(_) | Message::User(_)
        )),
        name().prop_map(Message::Err),
    ]
}

fn serf_message() -> impl Strategy<Value = SerfMessage> {
    let ring_slot = (
        any::<u64>(),
        proptest::collection::vec(
            (name(), bytes()).prop_map(|(name, payload)| RingEvent { name, payload }),
            0..3,
        ),
    )
        .prop_map(|(ltime, events)| RingSlot { ltime, events });
    prop_oneof![
        (any::<u64>(), name(), any::<bool>()).prop_map(|(ltime, node, prune)| SerfMessage::Leave(
            LeaveIntent { ltime, node, prune }
        )),
        (any::<u64>(), name())
            .prop_map(|(ltime, node)| SerfMessage::Join(JoinIntent { ltime, node })),
        (
            any::<u64>(),
            proptest::collection::btree_map(name(), any::<u64>(), 0..5),
            proptest::collection::vec(name(), 0..4),
            any::<u64>(),
            proptest::collection::vec(proptest::option::of(ring_slot), 0..40),
            any::<u64>()
        )
            .prop_map(
                |(ltime, status_ltimes, left_members, event_ltime, events, query_ltime)| {
                    SerfMessage::PushPull(SerfPushPull {
                        ltime,
                        status_ltimes,
                        left_members,
                        event_ltime,
                        events,
                        query_ltime,
                    })
                }
            ),
        (any::<u64>(), name(), bytes(), any::<bool>()).prop_map(|(ltime, name, payload, cc)| {
            SerfMessage::UserEvent(UserEvent {
                ltime,
                name,
                payload,
                cc,
            })
        }),
        (
            (any::<u64>(), any::<u32>(), ip(), any::<u16>(), name()),
            (
                proptest::collection::vec(bytes(), 0..3),
                any::<u32>(),
                any::<u8>(),
                any::<i64>(),
                name(),
                bytes()
            )
        )
            .prop_map(
                |(
                    (ltime, id, addr, port, source_node),
                    (filters, flags, rf, timeout_ns, name, payload),
                )| {
                    SerfMessage::Query(Query {
                        ltime,
                        id,
                        addr,
                        port,
                        source_node,
                        filters,
                        flags,
                        relay_factor: rf,
                        timeout_ns,
                        name,
                        payload,
                    })
                }
            ),
        (
            any::<u64>(),
            any::<u32>(),
            name(),
            any::<u32>(),
            proptest::option::of(bytes())
        )
            .prop_map(
                |(ltime, id, from, flags, payload)| SerfMessage::QueryResponse(QueryResponse {
                    ltime,
                    id,
                    from,
                    flags,
                    payload
                })
            ),
        (
            ip(),
            any::<u16>(),
            name(),
            name(),
            proptest::collection::vec(any::<u8>(), 1..50)
        )
            .prop_map(|(dest_addr, dest_port, dest_zone, dest_name, inner)| {
                SerfMessage::Relay(Relay {
                    dest_addr,
                    dest_port,
                    dest_zone,
                    dest_name,
                    inner,
                })
            }),
    ]
}

fn keyring() -> impl Strategy<Value = Keyring> {
    prop_oneof![Just(16usize), Just(24), Just(32)]
        .prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
        .prop_map(|k| Keyring::new(k).unwrap())
}

/// Every captured fixture (UDP and TCP), for mutation.
fn fixture_bytes() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(load_fixtures)
}

fn load_fixtures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gossip");
    let mut out = Vec::new();
    for d in ["plain", "encrypted", "keys", "interop"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "hex") {
                let s: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                out.push(
                    (0..s.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                        .collect(),
                );
            }
        }
    }
    out
}

fn k1() -> Keyring {
    Keyring::from_base64(&["HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=".into()]).unwrap()
}

/// Run every decoder on `b`; only panics would fail.
fn decode_everything(b: &[u8]) {
    let ring = k1();
    let _ = decode_packet(b, None);
    let _ = decode_packet(b, Some(&ring));
    let _ = decode_stream(b, None);
    let _ = decode_stream(b, Some(&ring));
    let _ = decode_message(b);
    let _ = decode_serf_message(b);
    let _ = decode_tags(b);
    let _ = decode_conflict_response(b);
    let _ = decode_key_request(b);
    let _ = decode_query_filter(b);
    let _ = decode_key_response(b);
    let _ = lzw_decompress(b, 1 << 20);
}

// ------------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&b);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes_behind_a_valid_type_byte(
        t in prop_oneof![0u8..14, Just(244u8)],
        b in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut v = vec![t];
        v.extend_from_slice(&b);
        decode_everything(&v);
    }

    #[test]
    fn decoders_never_panic_on_mutated_fixtures(
        idx in any::<prop::sample::Index>(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let all = fixture_bytes();
        let mut b = all[idx.index(all.len())].clone();
        for (at, v) in muts {
            let i = at.index(b.len());
            b[i] = v;
        }
        decode_everything(&b);
        decode_everything(&b[..cut.index(b.len() + 1)]);
    }

    #[test]
    fn lzw_round_trips_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
        prop_assert_eq!(lzw_decompress(&lzw_compress(&b), b.len()).unwrap(), b);
    }

    #[test]
    fn tags_round_trip(tags in proptest::collection::btree_map("[a-z]{1,8}", ".{0,10}", 0..6)) {
        let meta = encode_tags(&tags).unwrap();
        prop_assert_eq!(meta[0], 0xff);
        prop_assert_eq!(decode_tags(&meta).unwrap(), tags);
    }

    #[test]
    fn memberlist_messages_round_trip(m in prop_oneof![packet_message(), stream_message()]) {
        prop_assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
    }

    #[test]
    fn serf_messages_round_trip(m in serf_message()) {
        let b = encode_serf_message(&m);
        prop_assert_eq!(decode_serf_message(&b).unwrap(), m.clone());
        let u = encode_user_message(&m);
        prop_assert_eq!(decode_message(&u).unwrap(), Message::User(b));
    }

    #[test]
    fn packets_round_trip_through_every_layer(
        msgs in proptest::collection::vec(packet_message(), 1..6),
        ring in proptest::option::of(keyring()),
        crc in any::<bool>(),
        compress in any::<bool>(),
        label in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..20)),
    ) {
        let enc: Vec<Vec<u8>> = msgs.iter().map(encode_message).collect();
        let opts = PacketOptions { keyring: ring.as_ref(), crc, compress, label: label.as_deref() };
        let p = decode_packet(&encode_packet(&enc, &opts), ring.as_ref()).unwrap();
        prop_assert_eq!(p.messages, msgs);
        prop_assert!(p.errors.is_empty());
        prop_assert_eq!(p.encrypted, ring.is_some());
        prop_assert_eq!(p.had_crc, crc);
        prop_assert_eq!(p.label, label);
    }

    #[test]
    fn streams_round_trip_through_every_layer(
        m in stream_message(),
        ring in proptest::option::of(keyring()),
        compress in any::<bool>(),
        label in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..20)),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let opts = PacketOptions { keyring: ring.as_ref(), crc: false, compress, label: label.as_deref() };
        let mut b = encode_stream(&m, &opts);
        let n = b.len();
        // Strict prefixes need more bytes; a full frame followed by anything is one message.
        prop_assert_eq!(decode_stream(&b[..n / 2], ring.as_ref()).unwrap(), None);
        b.extend_from_slice(&extra);
        let (back, used) = decode_stream(&b, ring.as_ref()).unwrap().unwrap();
        prop_assert_eq!(back, m);
        prop_assert_eq!(used, n);
    }

    #[test]
    fn conflict_and_key_payloads_round_trip(
        name in name(), addr in ip(), port in any::<u16>(), status in any::<i64>(),
        tags in proptest::collection::btree_map(name(), name(), 0..4), vsn in vsn(),
        key in bytes(), keys in proptest::option::of(proptest::collection::vec(name(), 0..4)),
        result in any::<bool>(), message in name(), primary_key in name(),
    ) {
        let m = ConflictMember { name, addr, port, tags, status, vsn: vsn.unwrap_or(Vsn::SERF) };
        prop_assert_eq!(decode_conflict_response(&encode_conflict_response(Some(&m))).unwrap(), Some(m));
        prop_assert_eq!(decode_conflict_response(&encode_conflict_response(None)).unwrap(), None);
        let req = KeyRequest { key };
        prop_assert_eq!(decode_key_request(&encode_key_request(&req)).unwrap(), req);
        let resp = KeyResponse { result, message, keys, primary_key };
        prop_assert_eq!(decode_key_response(&encode_key_response(&resp)).unwrap(), resp);
    }
}

#[test]
fn empty_tag_map_round_trips() {
    let t = BTreeMap::new();
    assert_eq!(decode_tags(&encode_tags(&t).unwrap()).unwrap(), t);
}

//! SPOP codec and connection state machine against the frames HAProxy 2.6.12 really sent
//! (tests/fixtures/spoe/, copied from the reference captures), plus property tests that
//! no input makes the decoders or the state machine panic.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::BytesMut;
use haserf::control::model::{MemberStatus, MemberView, SlotState, SlotView};
use haserf::spoe::codec::{
    kind, parse_frame_body, Action, Frame, Message, SpopCodec, Status, TypedData, VarScope,
};
use haserf::spoe::conn::{Connection, Event, NotifyHandler, Phase};
use haserf::spoe::handler::ClusterHandler;
use haserf::spoe::StaticView;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/spoe/{name}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn decode(bytes: &[u8]) -> Frame {
    let mut codec = SpopCodec::new(16380);
    let mut buf = BytesMut::from(bytes);
    let raw = codec.decode(&mut buf).unwrap().expect("a complete frame");
    assert!(buf.is_empty(), "one frame per fixture");
    Frame::from_raw(&raw).unwrap().expect("a known frame type")
}

fn s(v: &str) -> TypedData {
    TypedData::str(v)
}

fn kv(pairs: &[(&str, TypedData)]) -> Vec<(String, TypedData)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Decodes a fixture, compares with the expected frame, and re-encodes to the same bytes.
fn golden(name: &str, expected: Frame) {
    let bytes = fixture(name);
    assert_eq!(decode(&bytes), expected, "{name} decodes as captured");
    assert_eq!(
        expected.to_bytes(),
        bytes,
        "{name} re-encodes byte for byte"
    );
}

#[test]
fn the_health_check_hello_decodes_and_reencodes() {
    golden(
        "01-haproxy-hello-healthcheck",
        Frame::HaproxyHello(kv(&[
            ("supported-versions", s("2.0")),
            ("max-frame-size", TypedData::Uint32(16380)),
            ("capabilities", s("")),
            ("healthcheck", TypedData::Bool(true)),
        ])),
    );
}

#[test]
fn the_agent_hello_replies_decode_and_reencode() {
    let hello = Frame::AgentHello(kv(&[
        ("version", s("2.0")),
        ("max-frame-size", TypedData::Uint32(16380)),
        ("capabilities", s("pipelining")),
    ]));
    golden("02-agent-hello-reply-to-healthcheck", hello.clone());
    golden("04-agent-hello", hello);
}

#[test]
fn the_working_hello_decodes_and_reencodes() {
    golden(
        "03-haproxy-hello",
        Frame::HaproxyHello(kv(&[
            ("supported-versions", s("2.0")),
            ("max-frame-size", TypedData::Uint32(16380)),
            ("capabilities", s("pipelining,async")),
            ("engine-id", s("953e762d-e439-42b2-b1da-4324c6a1b402")),
        ])),
    );
}

#[test]
fn the_request_notify_with_every_data_type_decodes_and_reencodes() {
    golden(
        "05-notify-on-frontend-http-request",
        Frame::Notify {
            stream_id: 0,
            frame_id: 1,
            messages: vec![Message {
                name: "check-request".into(),
                args: kv(&[
                    ("method", s("GET")),
                    ("path", s("/some/path")),
                    ("src", TypedData::Ipv4(Ipv4Addr::new(127, 0, 0, 1))),
                    ("dport", TypedData::Int64(18082)),
                    ("host", s("example.test")),
                    ("n", TypedData::Int64(42)),
                    ("neg", TypedData::Int64(-5)),
                    ("flag", TypedData::Bool(true)),
                    ("raw", TypedData::Binary(vec![0xde, 0xad, 0xbe, 0xef])),
                    ("v6", TypedData::Ipv6(Ipv6Addr::LOCALHOST)),
                    ("missing", TypedData::Null),
                ]),
            }],
        },
    );
}

#[test]
fn the_ack_with_set_var_and_unset_var_decodes_and_reencodes() {
    let set = |scope, name: &str, value| Action::SetVar {
        scope,
        name: name.into(),
        value,
    };
    golden(
        "06-ack-with-set-var-unset-var",
        Frame::Ack {
            stream_id: 0,
            frame_id: 1,
            actions: vec![
                set(VarScope::Txn, "result", s("ok path=/some/path")),
                set(VarScope::Txn, "score", TypedData::Int32(77)),
                set(VarScope::Req, "backend_hint", s("web")),
                Action::UnsetVar {
                    scope: VarScope::Txn,
                    name: "stale".into(),
                },
                set(VarScope::Txn, "not_registered", s("ignored?")),
            ],
        },
    );
}

#[test]
fn the_response_notify_and_its_ack_decode_and_reencode() {
    golden(
        "07-notify-on-http-response",
        Frame::Notify {
            stream_id: 0,
            frame_id: 2,
            messages: vec![Message {
                name: "check-response".into(),
                args: kv(&[("status", TypedData::Int64(404))]),
            }],
        },
    );
    golden(
        "08-ack-response-event",
        Frame::Ack {
            stream_id: 0,
            frame_id: 2,
            actions: vec![Action::SetVar {
                scope: VarScope::Txn,
                name: "resp_seen".into(),
                value: s("status=404"),
            }],
        },
    );
}

#[test]
fn the_disconnect_frames_decode_and_reencode() {
    golden(
        "09-haproxy-disconnect-idle-timeout",
        Frame::HaproxyDisconnect(kv(&[
            ("status-code", TypedData::Uint32(2)),
            ("message", s("a timeout occurred")),
        ])),
    );
    golden(
        "10-agent-disconnect-reply",
        Frame::agent_disconnect(Status::Normal, "bye"),
    );
}

// ----------------------------------------------------------------------------------------
// State machine, driven by the captured frames
// ----------------------------------------------------------------------------------------

fn echo_handler() -> impl NotifyHandler {
    |msgs: &[Message]| {
        msgs.iter()
            .map(|m| Action::SetVar {
                scope: VarScope::Txn,
                name: "seen".into(),
                value: TypedData::str(m.name.clone()),
            })
            .collect()
    }
}

fn frames_in(bytes: &[u8]) -> Vec<Frame> {
    let mut codec = SpopCodec::new(u32::MAX);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(raw) = codec.decode(&mut buf).unwrap() {
        out.push(Frame::from_raw(&raw).unwrap().unwrap());
    }
    assert!(buf.is_empty());
    out
}

fn disconnect_status(frame: &Frame) -> u64 {
    match frame {
        Frame::AgentDisconnect(kv) => kv
            .iter()
            .find(|(k, _)| k == "status-code")
            .and_then(|(_, v)| v.as_u64())
            .expect("status-code"),
        other => panic!("expected AGENT-DISCONNECT, got {other:?}"),
    }
}

#[test]
fn a_health_check_hello_is_answered_and_the_connection_closes() {
    let mut conn = Connection::new(16380);
    let mut input = BytesMut::from(&fixture("01-haproxy-hello-healthcheck")[..]);
    let out = conn.receive(&mut input, &echo_handler());
    assert!(out.close);
    let frames = frames_in(&out.bytes);
    assert!(matches!(&frames[..], [Frame::AgentHello(_)]));
    assert!(matches!(
        out.events[0],
        Event::Hello {
            healthcheck: true,
            ..
        }
    ));
}

#[test]
fn a_hello_is_answered_with_version_frame_size_and_capabilities() {
    let mut conn = Connection::new(16380);
    let mut input = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    let out = conn.receive(&mut input, &echo_handler());
    assert!(!out.close);
    assert_eq!(conn.phase(), Phase::Processing);
    assert_eq!(
        conn.engine_id(),
        Some("953e762d-e439-42b2-b1da-4324c6a1b402")
    );
    assert_eq!(
        frames_in(&out.bytes),
        vec![Frame::AgentHello(kv(&[
            ("version", s("2.0")),
            ("max-frame-size", TypedData::Uint32(16380)),
            ("capabilities", s("pipelining")),
        ]))]
    );
}

#[test]
fn the_frame_size_is_the_smaller_of_both_sides() {
    let mut conn = Connection::new(1024);
    let mut input = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    let out = conn.receive(&mut input, &echo_handler());
    let frames = frames_in(&out.bytes);
    let Frame::AgentHello(kv) = &frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(
        kv.iter().find(|(k, _)| k == "max-frame-size").unwrap().1,
        TypedData::Uint32(1024)
    );
    assert_eq!(conn.max_frame_size(), 1024);
}

/// A HAPROXY-HELLO offering `max_frame_size`.
fn hello_offering(max_frame_size: u32) -> Vec<u8> {
    Frame::HaproxyHello(kv(&[
        ("supported-versions", s("2.0")),
        ("max-frame-size", TypedData::Uint32(max_frame_size)),
        ("capabilities", s("pipelining,async")),
        ("engine-id", s("test-engine")),
    ]))
    .to_bytes()
}

#[test]
fn the_frame_size_follows_haproxys_offer_up_to_the_agents_bound() {
    for offer in [256u32, 16380, 65532, 1 << 20] {
        let mut conn = Connection::new(haserf::spoe::codec::MAX_FRAME_SIZE);
        let mut input = BytesMut::from(&hello_offering(offer)[..]);
        conn.receive(&mut input, &echo_handler());
        assert_eq!(conn.max_frame_size(), offer, "HAProxy offered {offer}");
    }
    let mut conn = Connection::new(haserf::spoe::codec::MAX_FRAME_SIZE);
    let mut input = BytesMut::from(&hello_offering(u32::MAX)[..]);
    conn.receive(&mut input, &echo_handler());
    assert_eq!(conn.max_frame_size(), haserf::spoe::codec::MAX_FRAME_SIZE);
}

#[test]
fn a_frame_larger_than_a_hello_needs_is_refused_before_the_hello() {
    let mut conn = Connection::new(haserf::spoe::codec::MAX_FRAME_SIZE);
    let mut input = BytesMut::from(&[0u8, 1, 0, 0, 1][..]);
    let out = conn.receive(&mut input, &echo_handler());
    assert!(out.close);
    assert_eq!(
        disconnect_status(&frames_in(&out.bytes)[0]),
        u64::from(Status::TooBig.code())
    );
}

#[test]
fn pipelined_notifies_in_one_read_each_get_their_ack_in_order() {
    let mut conn = Connection::new(16380);
    let mut input = BytesMut::new();
    input.extend_from_slice(&fixture("03-haproxy-hello"));
    input.extend_from_slice(&fixture("05-notify-on-frontend-http-request"));
    input.extend_from_slice(&fixture("07-notify-on-http-response"));
    // and half of a third frame, which must wait
    let third = fixture("07-notify-on-http-response");
    input.extend_from_slice(&third[..10]);
    let out = conn.receive(&mut input, &echo_handler());
    assert!(!out.close);
    let frames = frames_in(&out.bytes);
    assert_eq!(frames.len(), 3, "hello + two ACKs: {frames:?}");
    assert_eq!(
        frames[1],
        Frame::Ack {
            stream_id: 0,
            frame_id: 1,
            actions: vec![Action::SetVar {
                scope: VarScope::Txn,
                name: "seen".into(),
                value: s("check-request")
            }]
        }
    );
    assert!(matches!(
        frames[2],
        Frame::Ack {
            stream_id: 0,
            frame_id: 2,
            ..
        }
    ));
    assert_eq!(input.len(), 10, "the partial frame stays buffered");
    input.extend_from_slice(&third[10..]);
    let out = conn.receive(&mut input, &echo_handler());
    assert_eq!(frames_in(&out.bytes).len(), 1);
}

#[test]
fn a_haproxy_disconnect_is_answered_with_status_zero_and_closes() {
    let mut conn = Connection::new(16380);
    let mut input = BytesMut::new();
    input.extend_from_slice(&fixture("03-haproxy-hello"));
    input.extend_from_slice(&fixture("09-haproxy-disconnect-idle-timeout"));
    let out = conn.receive(&mut input, &echo_handler());
    assert!(out.close);
    let frames = frames_in(&out.bytes);
    assert_eq!(disconnect_status(&frames[1]), 0);
    assert!(out.events.contains(&Event::HaproxyDisconnect {
        status: 2,
        message: "a timeout occurred".into()
    }));
}

fn rejects_with(input: &[u8], status: Status) {
    let mut conn = Connection::new(16380);
    let mut buf = BytesMut::from(input);
    let out = conn.receive(&mut buf, &echo_handler());
    assert!(out.close, "connection must close");
    let frames = frames_in(&out.bytes);
    assert_eq!(
        disconnect_status(frames.last().unwrap()),
        u64::from(status.code())
    );
    assert_eq!(conn.phase(), Phase::Closed);
}

#[test]
fn an_http_request_sent_to_the_agent_is_rejected_as_too_big() {
    // "GET " read as a length is far above max-frame-size.
    rejects_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Status::TooBig);
}

#[test]
fn a_notify_before_hello_is_an_invalid_frame() {
    rejects_with(
        &fixture("05-notify-on-frontend-http-request"),
        Status::Invalid,
    );
}

#[test]
fn a_frame_with_a_reserved_data_type_is_an_invalid_frame() {
    let mut hello = fixture("03-haproxy-hello");
    // the type byte of supported-versions' value (0x08 at wire offset 0x1e) → type 10
    assert_eq!(hello[0x1e], 0x08);
    hello[0x1e] = 0x0a;
    rejects_with(&hello, Status::Invalid);
}

#[test]
fn a_hello_without_version_2_is_refused_as_unsupported() {
    let f = Frame::HaproxyHello(kv(&[
        ("supported-versions", s("1.0,3.5")),
        ("max-frame-size", TypedData::Uint32(16380)),
        ("capabilities", s("")),
    ]));
    rejects_with(&f.to_bytes(), Status::BadVersion);
}

#[test]
fn a_hello_missing_a_key_gets_the_matching_status() {
    let f = Frame::HaproxyHello(kv(&[
        ("max-frame-size", TypedData::Uint32(16380)),
        ("capabilities", s("")),
    ]));
    rejects_with(&f.to_bytes(), Status::NoVersion);
    let f = Frame::HaproxyHello(kv(&[
        ("supported-versions", s("2.0")),
        ("capabilities", s("")),
    ]));
    rejects_with(&f.to_bytes(), Status::NoFrameSize);
    let f = Frame::HaproxyHello(kv(&[
        ("supported-versions", s("2.0")),
        ("max-frame-size", TypedData::Uint32(16380)),
    ]));
    rejects_with(&f.to_bytes(), Status::NoCapabilities);
}

#[test]
fn a_hello_with_a_frame_size_below_256_is_refused() {
    let f = Frame::HaproxyHello(kv(&[
        ("supported-versions", s("2.0")),
        ("max-frame-size", TypedData::Uint32(100)),
        ("capabilities", s("")),
    ]));
    rejects_with(&f.to_bytes(), Status::BadFrameSize);
}

#[test]
fn a_fragmented_frame_is_refused_because_fragmentation_was_not_announced() {
    let mut bytes = fixture("03-haproxy-hello");
    bytes.extend_from_slice(&fixture("05-notify-on-frontend-http-request"));
    let notify_flags = fixture("03-haproxy-hello").len() + 5 + 3;
    assert_eq!(bytes[notify_flags], 1, "FIN bit of the NOTIFY");
    bytes[notify_flags] = 0;
    rejects_with(&bytes, Status::FragNotSupported);
}

#[test]
fn a_frame_after_the_negotiated_size_is_too_big() {
    let mut conn = Connection::new(300);
    let mut bytes = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    conn.receive(&mut bytes, &echo_handler());
    let big = Frame::Notify {
        stream_id: 1,
        frame_id: 1,
        messages: vec![Message {
            name: "x".into(),
            args: kv(&[("pad", s(&"a".repeat(400)))]),
        }],
    };
    let mut bytes = BytesMut::from(&big.to_bytes()[..]);
    let out = conn.receive(&mut bytes, &echo_handler());
    assert!(out.close);
    assert_eq!(
        disconnect_status(frames_in(&out.bytes).last().unwrap()),
        u64::from(Status::TooBig.code())
    );
}

#[test]
fn an_ack_that_would_exceed_the_frame_size_is_sent_empty() {
    let mut conn = Connection::new(256);
    let mut bytes = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    conn.receive(&mut bytes, &echo_handler());
    let big = |_: &[Message]| {
        vec![Action::SetVar {
            scope: VarScope::Txn,
            name: "big".into(),
            value: s(&"x".repeat(1000)),
        }]
    };
    let mut bytes = BytesMut::from(&fixture("07-notify-on-http-response")[..]);
    let out = conn.receive(&mut bytes, &big);
    assert!(!out.close);
    assert_eq!(
        frames_in(&out.bytes),
        vec![Frame::Ack {
            stream_id: 0,
            frame_id: 2,
            actions: vec![]
        }]
    );
    assert!(out.events.contains(&Event::AckTooBig));
}

#[test]
fn a_frame_of_an_unknown_type_is_skipped() {
    let mut conn = Connection::new(16380);
    let mut bytes = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    conn.receive(&mut bytes, &echo_handler());
    let unknown = [0u8, 0, 0, 7, 42, 0, 0, 0, 1, 0, 0];
    let mut bytes = BytesMut::from(&unknown[..]);
    let out = conn.receive(&mut bytes, &echo_handler());
    assert!(!out.close);
    assert!(out.bytes.is_empty());
    assert_eq!(out.events, vec![Event::SkippedFrame(42)]);
}

#[test]
fn a_timeout_sends_status_2_before_and_after_hello_but_not_after_close() {
    let mut conn = Connection::new(16380);
    let out = conn.timed_out();
    assert!(out.close);
    assert_eq!(disconnect_status(&frames_in(&out.bytes)[0]), 2);
    assert!(
        conn.timed_out().bytes.is_empty(),
        "closed: nothing more to say"
    );

    let mut conn = Connection::new(16380);
    let mut hello = BytesMut::from(&fixture("03-haproxy-hello")[..]);
    conn.receive(&mut hello, &echo_handler());
    let out = conn.timed_out();
    assert!(out.close);
    assert_eq!(disconnect_status(&frames_in(&out.bytes)[0]), 2);
}

// ----------------------------------------------------------------------------------------
// The cluster handler
// ----------------------------------------------------------------------------------------

fn member(name: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberView {
    MemberView {
        name: name.into(),
        addr: "127.0.0.1".into(),
        port: 7946,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        status,
        suspect: false,
    }
}

fn slot(slot: &str, member: Option<&str>) -> SlotView {
    SlotView {
        backend: "web".into(),
        slot: slot.into(),
        member: member.map(str::to_string),
        addr: member.map(|_| "127.0.0.2:3000".into()),
        state: if member.is_some() {
            SlotState::Ready
        } else {
            SlotState::Maint
        },
        haproxy_status: "UP".into(),
    }
}

fn handler() -> ClusterHandler {
    let view = StaticView {
        members: vec![
            member("n1", MemberStatus::Alive, &[("role", "web"), ("zone", "a")]),
            member("n2", MemberStatus::Failed, &[("role", "web")]),
            member("n3", MemberStatus::Alive, &[("role", "web")]),
        ],
        slots: vec![
            slot("web1", Some("n1")),
            slot("web2", Some("n2")),
            slot("web3", Some("n3")),
            slot("web4", None),
        ],
    };
    ClusterHandler::new(Arc::new(view), VarScope::Txn)
}

fn vars(actions: &[Action]) -> BTreeMap<String, TypedData> {
    actions
        .iter()
        .map(|a| match a {
            Action::SetVar { name, value, .. } => (name.clone(), value.clone()),
            Action::UnsetVar { name, .. } => (name.clone(), TypedData::Null),
        })
        .collect()
}

fn msg(name: &str, args: &[(&str, &str)]) -> Message {
    Message {
        name: name.into(),
        args: args.iter().map(|(k, v)| (k.to_string(), s(v))).collect(),
    }
}

#[test]
fn the_backend_message_counts_alive_members_in_slots() {
    let v = vars(&handler().handle(&[msg("haserf-backend", &[("backend", "web")])]));
    assert_eq!(v["backend_live"], TypedData::Int32(2));
    assert_eq!(v["backend_members"], s("n1,n3"));
    assert_eq!(v["backend_free"], TypedData::Int32(1));
}

#[test]
fn the_node_message_says_whether_a_node_is_alive_and_gives_its_tags() {
    let h = handler();
    let v = vars(&h.handle(&[msg("haserf-node", &[("node", "n1"), ("tag", "zone")])]));
    assert_eq!(v["node_alive"], TypedData::Bool(true));
    assert_eq!(v["node_status"], s("alive"));
    assert_eq!(v["node_tags"], s("role=web,zone=a"));
    assert_eq!(v["node_tag"], s("a"));
    let v = vars(&h.handle(&[msg("haserf-node", &[("node", "n2")])]));
    assert_eq!(v["node_alive"], TypedData::Bool(false));
    assert_eq!(v["node_status"], s("failed"));
    let v = vars(&h.handle(&[msg("haserf-node", &[("node", "ghost")])]));
    assert_eq!(v["node_status"], s("unknown"));
}

#[test]
fn the_server_message_names_the_node_behind_a_slot() {
    let h = handler();
    let v = vars(&h.handle(&[msg(
        "haserf-server",
        &[("backend", "web"), ("server", "web3"), ("tag", "role")],
    )]));
    assert_eq!(v["server_node"], s("n3"));
    assert_eq!(v["server_tags"], s("role=web"));
    assert_eq!(v["server_node_status"], s("alive"));
    assert_eq!(v["server_tag"], s("web"));
    assert!(h
        .handle(&[msg("haserf-server", &[("server", "web4")])])
        .is_empty());
    assert!(h
        .handle(&[msg(
            "haserf-server",
            &[("backend", "api"), ("server", "web1")]
        )])
        .is_empty());
}

/// 1,000 alive members with 40-character names, each in a slot of `web`.
fn big_handler() -> ClusterHandler {
    let names: Vec<String> = (0..1000)
        .map(|i| format!("member-{i:04}-{}", "y".repeat(28)))
        .collect();
    let view = StaticView {
        members: names
            .iter()
            .map(|n| member(n, MemberStatus::Alive, &[("role", "web"), ("zone", "a")]))
            .collect(),
        slots: names
            .iter()
            .enumerate()
            .map(|(i, n)| slot(&format!("web{}", i + 1), Some(n)))
            .collect(),
    };
    ClusterHandler::new(Arc::new(view), VarScope::Txn)
}

#[test]
fn an_answer_too_long_for_the_frame_keeps_node_facts_and_flags_the_cut_list() {
    let h = big_handler();
    let pinned = format!("member-0042-{}", "y".repeat(28));
    for max in [256u32, 1024, 16380] {
        let mut conn = Connection::new(max);
        let mut input = BytesMut::from(&hello_offering(max)[..]);
        conn.receive(&mut input, &h);
        let notify = Frame::Notify {
            stream_id: 77_777,
            frame_id: 1,
            messages: vec![
                msg("haserf-backend", &[("backend", "web")]),
                msg("haserf-node", &[("node", &pinned), ("tag", "zone")]),
            ],
        };
        let mut input = BytesMut::from(&notify.to_bytes()[..]);
        let out = conn.receive(&mut input, &h);
        assert!(!out.close);
        assert!(
            out.bytes.len() - 4 <= max as usize,
            "ACK of {} bytes",
            out.bytes.len()
        );
        let Frame::Ack { actions, .. } = &frames_in(&out.bytes)[0] else {
            panic!("an ACK")
        };
        let v = vars(actions);
        assert_eq!(v["node_alive"], TypedData::Bool(true), "max {max}");
        assert_eq!(v["node_status"], s("alive"), "max {max}");
        assert_eq!(v["backend_live"], TypedData::Int32(1000), "max {max}");
        assert_eq!(
            v["backend_members_truncated"],
            TypedData::Bool(true),
            "max {max}"
        );
        let TypedData::String(listed) = &v["backend_members"] else {
            panic!("a list")
        };
        let listed = String::from_utf8(listed.clone()).unwrap();
        assert!(
            listed.split(',').all(|n| n.is_empty() || n.len() == 40),
            "whole names only: {listed:?}"
        );
        assert!(out.events.iter().any(|e| matches!(
            e,
            Event::Truncated { cut, max_frame_size } if cut.contains(&"backend_members") && *max_frame_size == max
        )));
        assert!(!out.events.contains(&Event::AckTooBig));
    }
}

#[test]
fn unknown_messages_and_missing_arguments_set_nothing() {
    let h = handler();
    assert!(h.handle(&[msg("something-else", &[("x", "y")])]).is_empty());
    assert!(h.handle(&[msg("haserf-node", &[])]).is_empty());
    assert!(h.handle(&[msg("haserf-backend", &[])]).is_empty());
}

// ----------------------------------------------------------------------------------------
// Never panic
// ----------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(raw) = parse_frame_body(&bytes) {
            let _ = Frame::from_raw(&raw);
        }
        let mut codec = SpopCodec::new(16380);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(raw)) = codec.decode(&mut buf) {
            let _ = Frame::from_raw(&raw);
        }
        let mut slice = &bytes[..];
        while !slice.is_empty() && TypedData::decode(&mut slice).is_ok() {}
    }

    #[test]
    fn the_state_machine_never_panics_on_a_valid_hello_then_garbage(
        garbage in proptest::collection::vec(any::<u8>(), 0..600),
        split in 0usize..600,
    ) {
        let mut conn = Connection::new(16380);
        let mut bytes = fixture("03-haproxy-hello");
        bytes.extend_from_slice(&garbage);
        let split = split.min(bytes.len());
        let mut buf = BytesMut::from(&bytes[..split]);
        let out1 = conn.receive(&mut buf, &handler());
        buf.extend_from_slice(&bytes[split..]);
        let out2 = conn.receive(&mut buf, &handler());
        // whatever was sent decodes as frames, and a closed connection said why
        let all: Vec<u8> = out1.bytes.iter().chain(out2.bytes.iter()).copied().collect();
        let frames = frames_in(&all);
        if conn.phase() == Phase::Closed {
            prop_assert!(matches!(frames.last(), Some(Frame::AgentDisconnect(_))));
        }
    }

    #[test]
    fn notifies_with_arbitrary_args_round_trip(
        sid in any::<u64>(), fid in any::<u64>(),
        name in "[a-z-]{1,20}",
        ints in proptest::collection::vec(any::<i64>(), 0..5),
        strs in proptest::collection::vec(any::<Vec<u8>>(), 0..5),
    ) {
        let mut args: Vec<(String, TypedData)> = ints.iter().enumerate()
            .map(|(i, v)| (format!("i{i}"), TypedData::Int64(*v))).collect();
        args.extend(strs.iter().enumerate().map(|(i, v)| (format!("s{i}"), TypedData::String(v.clone()))));
        let f = Frame::Notify { stream_id: sid, frame_id: fid, messages: vec![Message { name, args }] };
        let bytes = f.to_bytes();
        let raw = parse_frame_body(&bytes[4..]).unwrap();
        prop_assert_eq!(raw.kind, kind::NOTIFY);
        prop_assert_eq!(Frame::from_raw(&raw).unwrap().unwrap(), f);
    }
}

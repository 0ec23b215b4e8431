//! The wire codec against a real `serf agent` (Debian 0.9.4): what we encode is accepted
//! (Go drops malformed or misaddressed probes silently, so an ack proves acceptance) and
//! what Serf answers decodes. Needs `apt-get install serf`.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use haserf::gossip::wire::*;
use support::{alloc_ip, SerfOptions, SerfPeer};

const K1: &str = "HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=";

fn ping(target: &str, seq_no: u32, from: SocketAddr) -> Message {
    Message::Ping(Ping {
        node: target.into(),
        seq_no,
        source_addr: Some(from.ip()),
        source_node: "codec-test".into(),
        source_port: from.port(),
    })
}

/// Sends `packet` to `to` (again every 500 ms) until acks for every number in `seqs`
/// arrive, or 10 s pass.
fn expect_udp_acks(
    sock: &UdpSocket,
    to: SocketAddr,
    packet: &[u8],
    ring: Option<&Keyring>,
    seqs: &[u32],
) {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<u32> = seqs.to_vec();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no ack for {pending:?} from {to} within 10 s; saw {seen:?}"
        );
        sock.send_to(packet, to).unwrap();
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until && !pending.is_empty() {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let p = decode_packet(&buf[..n], ring)
                .unwrap_or_else(|e| panic!("undecodable reply from serf: {e}"));
            assert_eq!(p.encrypted, ring.is_some());
            for m in p.messages {
                if let Message::Ack(a) = &m {
                    pending.retain(|s| *s != a.seq_no);
                }
                seen.push(m);
            }
        }
    }
}

/// Writes `request` on a fresh TCP connection to `to` and reads one message back.
fn tcp_exchange(to: SocketAddr, request: &[u8], ring: Option<&Keyring>) -> Message {
    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.write_all(request).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((m, used)) = decode_stream(&buf, ring).unwrap() {
            assert_eq!(used, buf.len(), "one message per direction");
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no complete reply from {to} within 10 s ({} bytes so far)",
            buf.len()
        );
        match c.read(&mut chunk) {
            Ok(0) => panic!("serf closed the connection after {} bytes", buf.len()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn udp_socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((alloc_ip(), 0)).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn our_push_pull() -> Message {
    let state = encode_serf_message(&SerfMessage::PushPull(SerfPushPull {
        ltime: 1,
        event_ltime: 1,
        query_ltime: 1,
        ..SerfPushPull::default()
    }));
    Message::PushPull(PushPull {
        join: false,
        nodes: vec![],
        user_state: state,
    })
}

#[test]
fn a_real_serf_agent_acks_our_udp_pings_plain_compound_crc_and_compressed() {
    let peer = SerfPeer::start(SerfOptions::new("s1").tag("role", "web"));
    let (sock, me) = udp_socket();
    let to = peer.bind_addr();

    let plain = encode_packet(
        &[encode_message(&ping("s1", 42, me))],
        &PacketOptions::default(),
    );
    expect_udp_acks(&sock, to, &plain, None, &[42]);

    // CRC + LZW + compound of two pings, forced compressed.
    let compound = encode_compound(&[
        encode_message(&ping("s1", 43, me)),
        encode_message(&ping("s1", 44, me)),
    ]);
    let opts = PacketOptions {
        crc: true,
        ..PacketOptions::default()
    };
    let packet = encode_packet(&[encode_compress(&compound)], &opts);
    assert_eq!(packet[0], 0x0c);
    assert_eq!(packet[5], 0x09);
    expect_udp_acks(&sock, to, &packet, None, &[43, 44]);
}

#[test]
fn a_real_serf_agent_acks_our_tcp_ping_and_answers_our_push_pull() {
    let peer = SerfPeer::start(SerfOptions::new("s2").tag("role", "web"));
    let me = SocketAddr::from((alloc_ip(), 7946));
    let opts = PacketOptions {
        compress: true,
        ..PacketOptions::default()
    };
    let reply = tcp_exchange(
        peer.bind_addr(),
        &encode_stream(&ping("s2", 7, me), &opts),
        None,
    );
    assert!(
        matches!(&reply, Message::Ack(a) if a.seq_no == 7),
        "{reply:?}"
    );

    // Uncompressed push/pull (as the Python member did) → Serf's full state.
    let reply = tcp_exchange(
        peer.bind_addr(),
        &encode_stream(&our_push_pull(), &PacketOptions::default()),
        None,
    );
    let Message::PushPull(pp) = reply else {
        panic!("expected push/pull, got {reply:?}")
    };
    assert!(!pp.join);
    let s2 = pp
        .nodes
        .iter()
        .find(|n| n.name == "s2")
        .expect("s2 in state");
    assert_eq!(s2.addr, IpAddr::V4(peer.ip()));
    assert_eq!(s2.state, NodeStateKind::Alive);
    assert_eq!(s2.vsn, Some(Vsn::SERF));
    assert_eq!(decode_tags(&s2.meta).unwrap()["role"], "web");
    let SerfMessage::PushPull(state) = decode_serf_message(&pp.user_state).unwrap() else {
        panic!("user state is not a Serf push/pull")
    };
    assert!(state.status_ltimes.contains_key("s2"), "{state:?}");
    assert_eq!(state.events.len(), 512);
}

#[test]
fn a_real_encrypted_serf_agent_acks_our_encrypted_pings_and_refuses_plaintext_streams() {
    let peer = SerfPeer::start(SerfOptions::new("s3").encrypt(K1));
    let ring = Keyring::from_base64(&[K1.into()]).unwrap();
    let (sock, me) = udp_socket();
    let opts = PacketOptions {
        keyring: Some(&ring),
        crc: true,
        compress: true,
        label: None,
    };
    let packet = encode_packet(&[encode_message(&ping("s3", 5, me))], &opts);
    expect_udp_acks(&sock, peer.bind_addr(), &packet, Some(&ring), &[5]);

    let reply = tcp_exchange(
        peer.bind_addr(),
        &encode_stream(&ping("s3", 6, me), &opts),
        Some(&ring),
    );
    assert!(
        matches!(&reply, Message::Ack(a) if a.seq_no == 6),
        "{reply:?}"
    );

    // A plaintext push/pull is answered with an encrypted err message, as captured.
    let reply = tcp_exchange(
        peer.bind_addr(),
        &encode_stream(&our_push_pull(), &PacketOptions::default()),
        Some(&ring),
    );
    assert_eq!(
        reply,
        Message::Err("Encryption is configured but remote state is not encrypted".into())
    );
}

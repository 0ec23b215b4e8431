//! Gossip wire codec throughput: encode and decode of ping, ack, alive, a compound gossip
//! packet (CRC + LZW + compound), an encrypted packet, and a 50-node push/pull stream.
//! Where the comparison means something (single msgpack structs), the same structs are
//! also run through `rmp_serde` named (map) encoding in the same process, and the ratio is
//! printed. Run: `cargo bench --bench codec` (optional arg: seconds per case, default 0.5).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use haserf::gossip::wire::*;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ serde mirrors

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SPing {
    node: String,
    seq_no: u32,
    source_addr: Vec<u8>,
    source_node: String,
    source_port: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SAck {
    payload: Option<Vec<u8>>,
    seq_no: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SAlive {
    addr: Vec<u8>,
    incarnation: u32,
    meta: Vec<u8>,
    node: String,
    port: u16,
    vsn: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SNodeState {
    addr: Vec<u8>,
    incarnation: u32,
    meta: Vec<u8>,
    name: String,
    port: u16,
    state: i64,
    vsn: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SHeader {
    join: bool,
    nodes: i64,
    user_state_len: i64,
}

// ------------------------------------------------------------------ harness

struct Case {
    name: &'static str,
    ours_enc: f64,
    ours_dec: f64,
    bytes: usize,
    serde: Option<(f64, f64, usize)>,
}

/// Runs `f` repeatedly for about `secs`; returns operations per second.
fn rate_once(secs: f64, f: &mut dyn FnMut()) -> f64 {
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut batch: u64 = 16;
    loop {
        for _ in 0..batch {
            f();
        }
        n += batch;
        let el = start.elapsed();
        if el >= budget {
            return n as f64 / el.as_secs_f64();
        }
        batch = (batch * 2).min(1 << 16);
    }
}

/// Best-of-`ROUNDS` rates of several functions measured in alternation (so that load from
/// other processes hits all of them alike); `secs` is the total per function.
fn rates(secs: f64, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    const ROUNDS: usize = 5;
    for f in fs.iter_mut() {
        for _ in 0..100 {
            f();
        }
    }
    let mut best = vec![0f64; fs.len()];
    for _ in 0..ROUNDS {
        for (i, f) in fs.iter_mut().enumerate() {
            best[i] = best[i].max(rate_once(secs / ROUNDS as f64, *f));
        }
    }
    best
}

/// The rmp_serde encode and decode closures and the size of rmp_serde's bytes.
type SerdePair<'a> = (&'a mut dyn FnMut(), &'a mut dyn FnMut(), usize);

/// Ours (encode, decode) and optionally the serde pair (encode, decode), interleaved.
fn case(
    name: &'static str,
    secs: f64,
    bytes: usize,
    enc: &mut dyn FnMut(),
    dec: &mut dyn FnMut(),
    serde: Option<SerdePair<'_>>,
) -> Case {
    match serde {
        Some((se, sd, sbytes)) => {
            let r = rates(secs, &mut [enc, se, dec, sd]);
            Case {
                name,
                ours_enc: r[0],
                ours_dec: r[2],
                bytes,
                serde: Some((r[1], r[3], sbytes)),
            }
        }
        None => {
            let r = rates(secs, &mut [enc, dec]);
            Case {
                name,
                ours_enc: r[0],
                ours_dec: r[1],
                bytes,
                serde: None,
            }
        }
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gossip")
        .join(rel);
    let s: String = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn single(p: &DecodedPacket) -> &Message {
    assert_eq!(p.messages.len(), 1);
    &p.messages[0]
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(0.5);
    let mut cases = Vec::new();

    // --- ping
    let ping_bytes = fixture("plain/01-udp-ping.hex");
    let ping = decode_message(&ping_bytes).unwrap();
    let Message::Ping(p) = &ping else { panic!() };
    let sping = SPing {
        node: p.node.clone(),
        seq_no: p.seq_no,
        source_addr: ip_bytes(&p.source_addr.unwrap()),
        source_node: p.source_node.clone(),
        source_port: p.source_port,
    };
    let sp = rmp_serde::to_vec_named(&sping).unwrap();
    cases.push(case(
        "ping",
        secs,
        ping_bytes.len(),
        &mut || {
            black_box(encode_message(black_box(&ping)));
        },
        &mut || {
            black_box(decode_message(black_box(&ping_bytes)).unwrap());
        },
        Some((
            &mut || {
                black_box(rmp_serde::to_vec_named(black_box(&sping)).unwrap());
            },
            &mut || {
                black_box(rmp_serde::from_slice::<SPing>(black_box(&sp)).unwrap());
            },
            sp.len(),
        )),
    ));

    // --- ack with Serf's coordinate payload
    let ack_bytes = fixture("plain/02-udp-ack-coordinate.hex");
    let ack = decode_message(&ack_bytes).unwrap();
    let Message::Ack(a) = &ack else { panic!() };
    let sack = SAck {
        payload: a.payload.clone(),
        seq_no: a.seq_no,
    };
    let sa = rmp_serde::to_vec_named(&sack).unwrap();
    cases.push(case(
        "ack (coordinate)",
        secs,
        ack_bytes.len(),
        &mut || {
            black_box(encode_message(black_box(&ack)));
        },
        &mut || {
            black_box(decode_message(black_box(&ack_bytes)).unwrap());
        },
        Some((
            &mut || {
                black_box(rmp_serde::to_vec_named(black_box(&sack)).unwrap());
            },
            &mut || {
                black_box(rmp_serde::from_slice::<SAck>(black_box(&sa)).unwrap());
            },
            sa.len(),
        )),
    ));

    // --- alive (from the CRC'd gossip fixture, CRC stripped)
    let alive_pkt = fixture("plain/06-udp-crc-alive-tags.hex");
    let alive = single(&decode_packet(&alive_pkt, None).unwrap()).clone();
    let alive_bytes = encode_message(&alive);
    let Message::Alive(al) = &alive else { panic!() };
    let salive = SAlive {
        addr: ip_bytes(&al.addr),
        incarnation: al.incarnation,
        meta: al.meta.clone(),
        node: al.node.clone(),
        port: al.port,
        vsn: al.vsn.unwrap().to_bytes().to_vec(),
    };
    let sal = rmp_serde::to_vec_named(&salive).unwrap();
    cases.push(case(
        "alive",
        secs,
        alive_bytes.len(),
        &mut || {
            black_box(encode_message(black_box(&alive)));
        },
        &mut || {
            black_box(decode_message(black_box(&alive_bytes)).unwrap());
        },
        Some((
            &mut || {
                black_box(rmp_serde::to_vec_named(black_box(&salive)).unwrap());
            },
            &mut || {
                black_box(rmp_serde::from_slice::<SAlive>(black_box(&sal)).unwrap());
            },
            sal.len(),
        )),
    ));

    // --- compound gossip packet: CRC + LZW + compound(alive, alive, join intent)
    let gossip_pkt = fixture("plain/05-udp-crc-compress-compound-alive.hex");
    let gossip = decode_packet(&gossip_pkt, None).unwrap();
    let gossip_parts: Vec<Vec<u8>> = gossip.messages.iter().map(encode_message).collect();
    let gossip_opts = PacketOptions {
        crc: true,
        compress: true,
        ..PacketOptions::default()
    };
    assert_eq!(encode_packet(&gossip_parts, &gossip_opts), gossip_pkt);
    cases.push(case(
        "gossip packet (crc+lzw+compound of 3)",
        secs,
        gossip_pkt.len(),
        &mut || {
            let parts: Vec<Vec<u8>> = gossip.messages.iter().map(encode_message).collect();
            black_box(encode_packet(black_box(&parts), &gossip_opts));
        },
        &mut || {
            black_box(decode_packet(black_box(&gossip_pkt), None).unwrap());
        },
        None,
    ));

    // --- encrypted packet (AES-256-GCM, same gossip content)
    let ring =
        Keyring::from_base64(&["HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=".into()]).unwrap();
    let enc_pkt = fixture("encrypted/05-udp-crc-compress-compound-alive.hex");
    let enc = decode_packet(&enc_pkt, Some(&ring)).unwrap();
    let enc_opts = PacketOptions {
        keyring: Some(&ring),
        crc: true,
        compress: true,
        label: None,
    };
    cases.push(case(
        "encrypted gossip packet (aes-256-gcm)",
        secs,
        enc_pkt.len(),
        &mut || {
            let parts: Vec<Vec<u8>> = enc.messages.iter().map(encode_message).collect();
            black_box(encode_packet(black_box(&parts), &enc_opts));
        },
        &mut || {
            black_box(decode_packet(black_box(&enc_pkt), Some(&ring)).unwrap());
        },
        None,
    ));

    // --- push/pull stream of 50 nodes with Serf user state, compressed
    let tags = BTreeMap::from([
        ("role".to_owned(), "web".to_owned()),
        ("port".to_owned(), "8080".to_owned()),
    ]);
    let meta = encode_tags(&tags).unwrap();
    let nodes: Vec<PushNodeState> = (0..50u32)
        .map(|i| PushNodeState {
            name: format!("node-{i:03}"),
            addr: IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]),
            port: 7946,
            meta: meta.clone(),
            incarnation: i + 1,
            state: NodeStateKind::Alive,
            vsn: Some(Vsn::SERF),
        })
        .collect();
    let user_state = encode_serf_message(&SerfMessage::PushPull(SerfPushPull {
        ltime: 100,
        status_ltimes: nodes.iter().map(|n| (n.name.clone(), 7)).collect(),
        left_members: vec![],
        event_ltime: 3,
        events: vec![None; 512],
        query_ltime: 4,
    }));
    let pp = Message::PushPull(PushPull {
        join: false,
        nodes: nodes.clone(),
        user_state,
    });
    let pp_opts = PacketOptions {
        compress: true,
        ..PacketOptions::default()
    };
    let pp_bytes = encode_stream(&pp, &pp_opts);
    assert_eq!(
        decode_stream(&pp_bytes, None).unwrap().unwrap().0,
        pp,
        "push/pull round trip"
    );
    cases.push(case(
        "push/pull stream, 50 nodes, lzw",
        secs,
        pp_bytes.len(),
        &mut || {
            black_box(encode_stream(black_box(&pp), &pp_opts));
        },
        &mut || {
            black_box(decode_stream(black_box(&pp_bytes), None).unwrap());
        },
        None,
    ));

    // --- push/pull node states alone (uncompressed): comparable with rmp_serde
    let pp_plain = encode_stream(&pp, &PacketOptions::default());
    let snodes: Vec<SNodeState> = nodes
        .iter()
        .map(|n| SNodeState {
            addr: ip_bytes(&n.addr),
            incarnation: n.incarnation,
            meta: n.meta.clone(),
            name: n.name.clone(),
            port: n.port,
            state: 0,
            vsn: n.vsn.unwrap().to_bytes().to_vec(),
        })
        .collect();
    let shdr = SHeader {
        join: false,
        nodes: 50,
        user_state_len: 0,
    };
    let serde_enc = || {
        let mut out = vec![6u8];
        out.extend(rmp_serde::to_vec_named(&shdr).unwrap());
        for n in &snodes {
            out.extend(rmp_serde::to_vec_named(n).unwrap());
        }
        out
    };
    let sbytes = serde_enc();
    cases.push(case(
        "push/pull stream, 50 nodes, plain",
        secs,
        pp_plain.len(),
        &mut || {
            black_box(encode_stream(black_box(&pp), &PacketOptions::default()));
        },
        &mut || {
            black_box(decode_stream(black_box(&pp_plain), None).unwrap());
        },
        Some((
            &mut || {
                black_box(serde_enc());
            },
            &mut || {
                let mut rd = &sbytes[1..];
                let h: SHeader = rmp_serde::from_read(&mut rd).unwrap();
                for _ in 0..h.nodes {
                    black_box(rmp_serde::from_read::<_, SNodeState>(&mut rd).unwrap());
                }
            },
            sbytes.len(),
        )),
    ));

    println!("gossip wire codec, {secs} s per measurement (msgs/s; MB/s of encoded bytes)");
    println!(
        "{:<40} {:>6} {:>12} {:>8} {:>12} {:>8} | {:>12} {:>12} {:>9} {:>9}",
        "case",
        "bytes",
        "enc msg/s",
        "enc MB/s",
        "dec msg/s",
        "dec MB/s",
        "rmp enc/s",
        "rmp dec/s",
        "enc ratio",
        "dec ratio"
    );
    for c in &cases {
        let mb = |r: f64| r * c.bytes as f64 / 1e6;
        print!(
            "{:<40} {:>6} {:>12.0} {:>8.1} {:>12.0} {:>8.1}",
            c.name,
            c.bytes,
            c.ours_enc,
            mb(c.ours_enc),
            c.ours_dec,
            mb(c.ours_dec)
        );
        match c.serde {
            Some((e, d, _)) => println!(
                " | {:>12.0} {:>12.0} {:>8.2}x {:>8.2}x",
                e,
                d,
                c.ours_enc / e,
                c.ours_dec / d
            ),
            None => println!(" | {:>12} {:>12} {:>9} {:>9}", "-", "-", "-", "-"),
        }
    }
    println!(
        "ratio = ours / rmp_serde (to_vec_named / from_slice) on mirror structs; >1 = ours faster."
    );
    println!("rmp_serde bytes differ from Go's (bin/array for byte fields) and are only a speed reference.");
}

//! Golden fixtures captured from real Serf 0.9.4 agents (tests/fixtures/gossip, copied
//! from shared/ref/fixtures/gossip): every one decodes to the structure its `.json`
//! describes (field by field), and re-encodes byte-identically wherever the format allows
//! (plaintext packets, decrypted plaintext, decompressed stream bytes, LZW output).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use haserf::gossip::wire::*;
use serde_json::{json, Map, Value};

const K1: &str = "HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=";
const K2: &str = "jNb35vJhG93RkCNQ9luvcq6KWcoJPy6MO0whx1TIjuo=";

// ------------------------------------------------------------------ fixture loading

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    meta: Value,
}

impl Fixture {
    fn decoded(&self) -> &Value {
        &self.meta["decoded"]
    }
    fn tcp(&self) -> bool {
        self.meta["transport"] == "tcp"
    }
    fn keyring(&self) -> Option<Keyring> {
        self.meta["key_base64"]
            .as_str()
            .map(|k| Keyring::from_base64(&[k.to_owned()]).unwrap())
    }
    fn layer(&self, name: &str) -> bool {
        self.decoded()["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["layer"] == name)
    }
    fn hex_field(&self, key: &str) -> Option<Vec<u8>> {
        self.decoded()[key].as_str().map(hex)
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gossip")
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fixtures(dir: &str) -> Vec<Fixture> {
    let mut out = Vec::new();
    let d = fixture_dir().join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    names.sort();
    for p in names {
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).unwrap())
                .unwrap();
        out.push(Fixture {
            name: format!("{dir}/{}", p.file_stem().unwrap().to_string_lossy()),
            bytes: hex(&std::fs::read_to_string(&p).unwrap()),
            meta,
        });
    }
    assert!(!out.is_empty(), "no fixtures in {dir}");
    out
}

fn all_fixtures() -> Vec<Fixture> {
    ["plain", "encrypted", "keys", "interop"]
        .iter()
        .flat_map(|d| fixtures(d))
        .collect()
}

// ------------------------------------------------------------------ our values as JSON

fn bin(b: &[u8]) -> Value {
    json!({ "$bin": to_hex(b) })
}

fn ip(a: &IpAddr) -> Value {
    match a {
        IpAddr::V4(v) => bin(&v.octets()),
        IpAddr::V6(v) => bin(&v.octets()),
    }
}

fn opt_bin(b: &Option<Vec<u8>>) -> Value {
    b.as_deref().map(bin).unwrap_or(Value::Null)
}

/// Event/query payloads: empty is nil on the wire (as Go sends it).
fn payload(b: &[u8]) -> Value {
    if b.is_empty() {
        Value::Null
    } else {
        bin(b)
    }
}

fn vsn(v: &Option<Vsn>) -> Value {
    v.map(|v| bin(&v.to_bytes())).unwrap_or(Value::Null)
}

fn source(m: &mut Map<String, Value>, addr: &Option<IpAddr>, node: &str, port: u16) {
    if let Some(a) = addr {
        m.insert("SourceAddr".into(), ip(a));
    }
    if !node.is_empty() {
        m.insert("SourceNode".into(), json!(node));
    }
    if port != 0 {
        m.insert("SourcePort".into(), json!(port));
    }
}

fn node_state(n: &PushNodeState) -> Value {
    json!({"Addr": ip(&n.addr), "Incarnation": n.incarnation, "Meta": bin(&n.meta),
           "Name": n.name, "Port": n.port, "State": n.state.to_i64(), "Vsn": vsn(&n.vsn)})
}

/// The msgpack body of a memberlist message, with Go's field names.
fn ml_body(m: &Message) -> Value {
    match m {
        Message::Ping(p) => {
            let mut o = Map::new();
            o.insert("Node".into(), json!(p.node));
            o.insert("SeqNo".into(), json!(p.seq_no));
            source(&mut o, &p.source_addr, &p.source_node, p.source_port);
            Value::Object(o)
        }
        Message::IndirectPing(p) => {
            let mut o = Map::new();
            o.insert("Nack".into(), json!(p.nack));
            o.insert("Node".into(), json!(p.node));
            o.insert("Port".into(), json!(p.port));
            o.insert("SeqNo".into(), json!(p.seq_no));
            o.insert("Target".into(), ip(&p.target));
            source(&mut o, &p.source_addr, &p.source_node, p.source_port);
            Value::Object(o)
        }
        Message::Ack(a) => json!({"Payload": opt_bin(&a.payload), "SeqNo": a.seq_no}),
        Message::Nack(n) => json!({"SeqNo": n.seq_no}),
        Message::Suspect(s) => {
            json!({"From": s.from, "Incarnation": s.incarnation, "Node": s.node})
        }
        Message::Dead(s) => json!({"From": s.from, "Incarnation": s.incarnation, "Node": s.node}),
        Message::Alive(a) => json!({"Addr": ip(&a.addr), "Incarnation": a.incarnation,
            "Meta": bin(&a.meta), "Node": a.node, "Port": a.port, "Vsn": vsn(&a.vsn)}),
        Message::Err(e) => json!({ "Error": e }),
        Message::PushPull(_) | Message::User(_) => panic!("no plain body for {m:?}"),
    }
}

/// A Serf message as the fixture JSON shows it (`serf_type_id`, `body` or relay parts).
fn serf_json(m: &SerfMessage) -> Value {
    let t = m.message_type() as u8;
    if let SerfMessage::Relay(r) = m {
        let inner = decode_serf_message(&r.inner).unwrap();
        return json!({"serf_type_id": t,
            "relay_header": {"DestAddr": {"IP": ip(&r.dest_addr), "Port": r.dest_port,
                                          "Zone": r.dest_zone}, "DestName": r.dest_name},
            "relayed": serf_json(&inner)});
    }
    let body = match m {
        SerfMessage::Leave(l) => json!({"LTime": l.ltime, "Node": l.node, "Prune": l.prune}),
        SerfMessage::Join(j) => json!({"LTime": j.ltime, "Node": j.node}),
        SerfMessage::UserEvent(e) => {
            json!({"CC": e.cc, "LTime": e.ltime, "Name": e.name, "Payload": payload(&e.payload)})
        }
        SerfMessage::Query(q) => json!({"Addr": ip(&q.addr),
            "Filters": if q.filters.is_empty() { Value::Null } else {
                q.filters.iter().map(|f| bin(f)).collect() },
            "Flags": q.flags, "ID": q.id, "LTime": q.ltime, "Name": q.name,
            "Payload": payload(&q.payload), "Port": q.port, "RelayFactor": q.relay_factor,
            "SourceNode": q.source_node, "Timeout": q.timeout_ns}),
        SerfMessage::QueryResponse(r) => json!({"Flags": r.flags, "From": r.from, "ID": r.id,
            "LTime": r.ltime, "Payload": opt_bin(&r.payload)}),
        SerfMessage::PushPull(pp) => json!({"EventLTime": pp.event_ltime,
            "Events": pp.events.iter().map(|s| match s {
                None => Value::Null,
                Some(s) => json!({"Events": s.events.iter().map(|e|
                    json!({"Name": e.name, "Payload": payload(&e.payload)})).collect::<Vec<_>>(),
                    "LTime": s.ltime}),
            }).collect::<Vec<_>>(),
            "LTime": pp.ltime, "LeftMembers": pp.left_members, "QueryLTime": pp.query_ltime,
            "StatusLTimes": pp.status_ltimes}),
        SerfMessage::Relay(_) => unreachable!(),
    };
    json!({"serf_type_id": t, "body": body})
}

/// The fixture JSON renders bytes that happen to be UTF-8 as strings in some places and
/// as `{"$bin": hex}` in others: normalise both sides to one form.
fn norm(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("$bin") => {
            let b = hex(o["$bin"].as_str().unwrap());
            match String::from_utf8(b) {
                Ok(s) => Value::String(s),
                Err(_) => v.clone(),
            }
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        _ => v.clone(),
    }
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter(|k| !v[**k].is_null())
            .map(|k| (k.to_string(), v[*k].clone()))
            .collect(),
    )
}

fn assert_same(name: &str, what: &str, ours: &Value, theirs: &Value) {
    assert_eq!(
        norm(ours),
        norm(theirs),
        "{name}: {what} differs\nours:   {ours}\ntheirs: {theirs}"
    );
}

/// Compare a Serf payload (user message bytes) with the fixture's `serf` object, including
/// nested internal-query payloads (key request/response).
fn check_serf(name: &str, bytes: &[u8], exp: &Value) {
    let m = decode_serf_message(bytes).unwrap_or_else(|e| panic!("{name}: serf decode: {e}"));
    let ours = serf_json(&m);
    let theirs = pick(exp, &["serf_type_id", "body", "relay_header", "relayed"]);
    let theirs = match theirs.get("relayed") {
        Some(r) => {
            let mut t = theirs.clone();
            t["relayed"] = pick(r, &["serf_type_id", "body"]);
            t
        }
        None => theirs,
    };
    assert_same(name, "serf message", &ours, &theirs);
    // Re-encoding the typed message gives the same bytes (Serf maps are sorted by Go,
    // except StatusLTimes, which only appears in push/pull state).
    if !matches!(m, SerfMessage::PushPull(_)) {
        assert_eq!(
            to_hex(&encode_serf_message(&m)),
            to_hex(bytes),
            "{name}: serf re-encode"
        );
    }
    let nested = &exp["decoded"]["Payload"];
    if let Some(req) = nested.get("keyRequest") {
        let SerfMessage::Query(q) = &m else { panic!() };
        let kr = decode_key_request(&q.payload).unwrap();
        assert_same(
            name,
            "key request",
            &json!({"Key": bin(&kr.key)}),
            &req["body"],
        );
        assert_eq!(
            encode_key_request(&kr),
            q.payload,
            "{name}: key request re-encode"
        );
    }
    if let Some(n) = nested.get("nested") {
        let SerfMessage::QueryResponse(r) = &m else {
            panic!()
        };
        let p = r.payload.as_ref().unwrap();
        assert_eq!(
            n["serf_type_id"], 8,
            "{name}: only key responses are captured"
        );
        let kr = decode_key_response(p).unwrap();
        let ours = json!({"Keys": kr.keys, "Message": kr.message,
                          "PrimaryKey": kr.primary_key, "Result": kr.result});
        assert_same(name, "key response", &ours, &n["body"]);
        assert_eq!(
            &encode_key_response(&kr),
            p,
            "{name}: key response re-encode"
        );
    }
}

/// `Meta` decodes to the tags the fixture's human decode shows.
fn check_tags(name: &str, meta: &[u8], exp: &Value) {
    let tags = decode_tags(meta).unwrap_or_else(|e| panic!("{name}: tags: {e}"));
    let expected = match exp.get("tags") {
        Some(t) => t.clone(),
        None => json!({ "role": exp["role"] }),
    };
    assert_eq!(json!(tags), expected, "{name}: tags");
}

/// Walk the fixture's message tree alongside our flattened messages.
fn walk_udp(name: &str, exp: &Value, got: &mut std::slice::Iter<'_, Message>) {
    match exp["type_id"].as_u64().unwrap() {
        12 => {
            assert_eq!(exp["crc_ok"], true, "{name}");
            walk_udp(name, &exp["inner"], got)
        }
        9 => walk_udp(name, &exp["inner"], got),
        7 => {
            for p in exp["parts"].as_array().unwrap() {
                walk_udp(name, p, got);
            }
        }
        t => {
            let m = got
                .next()
                .unwrap_or_else(|| panic!("{name}: message missing"));
            assert_eq!(m.message_type() as u64, t, "{name}: type");
            match m {
                Message::User(b) => check_serf(name, b, &exp["serf"]),
                m => assert_same(name, "body", &ml_body(m), &exp["body"]),
            }
            if let Message::Alive(a) = m {
                check_tags(name, &a.meta, &exp["decoded"]["Meta"]);
            }
        }
    }
}

fn check_stream_message(name: &str, m: &Message, d: &Value) {
    assert_eq!(
        m.message_type() as u64,
        d["type_id"].as_u64().unwrap(),
        "{name}"
    );
    match m {
        Message::PushPull(pp) => {
            let ours = json!({"Join": pp.join, "Nodes": pp.nodes.len(),
                              "UserStateLen": pp.user_state.len()});
            assert_same(name, "push/pull header", &ours, &d["header"]);
            let exp_nodes = d["nodes"].as_array().unwrap();
            assert_eq!(pp.nodes.len(), exp_nodes.len(), "{name}: node count");
            for (n, e) in pp.nodes.iter().zip(exp_nodes) {
                assert_same(name, "node state", &node_state(n), &e["state"]);
                check_tags(name, &n.meta, &e["decoded"]["Meta"]);
            }
            if pp.user_state.is_empty() {
                assert!(d["user_state"].is_null(), "{name}: user state expected");
            } else {
                check_serf(name, &pp.user_state, &d["user_state"]);
            }
        }
        Message::User(b) => {
            assert_eq!(d["header"]["UserMsgLen"].as_u64().unwrap(), b.len() as u64);
            check_serf(name, b, &d["serf"]);
        }
        m => assert_same(name, "body", &ml_body(m), &d["body"]),
    }
}

/// Expected bytes of a push/pull re-encoding: Go writes `StatusLTimes` in random map
/// order, we write it sorted, so compare everything before the user state byte for byte
/// and the user state by value (and byte for byte when Go's order happens to be sorted).
fn assert_stream_reencode(name: &str, m: &Message, theirs: &[u8]) {
    let ours = encode_stream_message(m);
    if let Message::PushPull(pp) = m {
        let usl = pp.user_state.len();
        assert_eq!(ours.len(), theirs.len(), "{name}: re-encoded length");
        let cut = ours.len() - usl;
        assert_eq!(
            to_hex(&ours[..cut]),
            to_hex(&theirs[..cut]),
            "{name}: re-encode"
        );
        if usl > 0 {
            let SerfMessage::PushPull(sp) = decode_serf_message(&pp.user_state).unwrap() else {
                panic!("{name}: user state is not a Serf push/pull")
            };
            let theirs_keys: Vec<&String> = sp.status_ltimes.keys().collect();
            let wire_order = wire_status_keys(&pp.user_state);
            if wire_order == theirs_keys.iter().map(|s| s.as_str()).collect::<Vec<_>>() {
                assert_eq!(
                    to_hex(&ours[cut..]),
                    to_hex(&theirs[cut..]),
                    "{name}: user state"
                );
            }
            assert_eq!(
                decode_serf_message(&ours[cut..]).unwrap(),
                SerfMessage::PushPull(sp),
                "{name}: user state by value"
            );
        }
    } else {
        assert_eq!(to_hex(&ours), to_hex(theirs), "{name}: re-encode");
    }
}

/// StatusLTimes keys in wire order (found after the `StatusLTimes` key string).
fn wire_status_keys(us: &[u8]) -> Vec<&str> {
    let pat = b"\xacStatusLTimes";
    let i = us.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len();
    let n = (us[i] & 0x0f) as usize;
    let mut p = i + 1;
    let mut out = Vec::new();
    for _ in 0..n {
        let l = (us[p] & 0x1f) as usize;
        out.push(std::str::from_utf8(&us[p + 1..p + 1 + l]).unwrap());
        p += 1 + l;
        p += match us[p] {
            0x00..=0x7f => 1,
            0xcc => 2,
            0xcd => 3,
            0xce => 5,
            _ => 9,
        };
    }
    out
}

/// Re-encode a decoded message from its typed form (user messages through the Serf
/// codec, not by copying their bytes).
fn reencode(m: &Message) -> Vec<u8> {
    match m {
        Message::User(b) => encode_user_message(&decode_serf_message(b).unwrap()),
        m => encode_message(m),
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn every_fixture_decodes_to_the_structure_its_json_describes() {
    let all = all_fixtures();
    assert_eq!(all.len(), 74, "fixture count");
    for f in &all {
        let ring = f.keyring();
        if f.tcp() {
            let (m, used) = decode_stream(&f.bytes, ring.as_ref())
                .unwrap_or_else(|e| panic!("{}: {e}", f.name))
                .unwrap_or_else(|| panic!("{}: incomplete", f.name));
            assert_eq!(used, f.bytes.len(), "{}: consumed", f.name);
            check_stream_message(&f.name, &m, f.decoded());
        } else {
            let p = decode_packet(&f.bytes, ring.as_ref())
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert!(p.errors.is_empty(), "{}: {:?}", f.name, p.errors);
            assert_eq!(p.encrypted, ring.is_some(), "{}", f.name);
            assert_eq!(
                p.had_crc,
                f.decoded()["message"]["type_id"] == 12,
                "{}",
                f.name
            );
            let mut it = p.messages.iter();
            walk_udp(&f.name, &f.decoded()["message"], &mut it);
            assert!(it.next().is_none(), "{}: extra messages", f.name);
        }
    }
}

#[test]
fn plaintext_packets_re_encode_byte_identically() {
    // Serf agents compress whenever it is strictly smaller: `compress: true` must pick the
    // same form Go picked, packet by packet.
    let mut checked = 0;
    for f in all_fixtures().iter().filter(|f| !f.tcp()) {
        let ring = f.keyring();
        let p = decode_packet(&f.bytes, ring.as_ref()).unwrap();
        let msgs: Vec<Vec<u8>> = p.messages.iter().map(reencode).collect();
        let opts = PacketOptions {
            crc: p.had_crc,
            compress: true,
            ..PacketOptions::default()
        };
        let expected = f
            .hex_field("plaintext_hex")
            .unwrap_or_else(|| f.bytes.clone());
        assert_eq!(
            to_hex(&encode_packet(&msgs, &opts)),
            to_hex(&expected),
            "{}",
            f.name
        );
        checked += 1;
    }
    assert_eq!(checked, 57);
}

#[test]
fn stream_messages_re_encode_to_the_decompressed_bytes() {
    for f in all_fixtures().iter().filter(|f| f.tcp()) {
        let ring = f.keyring();
        let (m, _) = decode_stream(&f.bytes, ring.as_ref()).unwrap().unwrap();
        let inner = f
            .hex_field("decompressed_hex")
            .or_else(|| f.hex_field("plaintext_hex"))
            .unwrap_or_else(|| f.bytes.clone());
        assert_stream_reencode(&f.name, &m, &inner);
    }
}

#[test]
fn lzw_output_is_byte_identical_to_go_and_the_python_member() {
    let mut checked = 0;
    for f in all_fixtures()
        .iter()
        .filter(|f| f.tcp() && f.layer("compress"))
    {
        let compressed = f
            .hex_field("plaintext_hex")
            .unwrap_or_else(|| f.bytes.clone());
        let raw = f.hex_field("decompressed_hex").unwrap();
        assert_eq!(
            to_hex(&encode_compress(&raw)),
            to_hex(&compressed),
            "{}: compress message",
            f.name
        );
        checked += 1;
    }
    assert_eq!(checked, 13);
}

#[test]
fn encrypted_fixtures_open_with_the_readme_keys_and_round_trip() {
    let both = Keyring::from_base64(&[K1.into(), K2.into()]).unwrap();
    let both_k2_first = Keyring::from_base64(&[K2.into(), K1.into()]).unwrap();
    for f in all_fixtures().iter().filter(|f| f.layer("encryption")) {
        let plain = f.hex_field("plaintext_hex").unwrap();
        let p1 = decode_packet(&f.bytes, Some(&both)).unwrap();
        let p2 = decode_packet(&f.bytes, Some(&both_k2_first)).unwrap();
        assert_eq!(p1.messages, p2.messages, "{}: every key is tried", f.name);
        // Re-encrypt under the fixture key and decode again: same messages.
        let ring = f.keyring().unwrap();
        let msgs: Vec<Vec<u8>> = p1.messages.iter().map(encode_message).collect();
        let opts = PacketOptions {
            keyring: Some(&ring),
            crc: p1.had_crc,
            compress: true,
            label: None,
        };
        let sealed = encode_packet(&msgs, &opts);
        assert_eq!(
            sealed.len(),
            plain.len() + ENCRYPTION_OVERHEAD,
            "{}",
            f.name
        );
        assert_eq!(sealed[0], 1, "{}: version 1", f.name);
        let back = decode_packet(&sealed, Some(&ring)).unwrap();
        assert_eq!(back.messages, p1.messages, "{}", f.name);
        assert!(back.encrypted);
    }
    for f in all_fixtures()
        .iter()
        .filter(|f| f.tcp() && f.layer("encrypt(stream)"))
    {
        let (m, used) = decode_stream(&f.bytes, Some(&both)).unwrap().unwrap();
        assert_eq!(used, f.bytes.len());
        let ring = f.keyring().unwrap();
        let opts = PacketOptions {
            keyring: Some(&ring),
            compress: true,
            ..PacketOptions::default()
        };
        let sealed = encode_stream(&m, &opts);
        assert_eq!(sealed[0], 0x0a, "{}", f.name);
        let len = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]) as usize;
        assert_eq!(len + 5, sealed.len(), "{}: frame length", f.name);
        let (back, used) = decode_stream(&sealed, Some(&ring)).unwrap().unwrap();
        assert_eq!(used, sealed.len());
        assert_eq!(back, m, "{}", f.name);
    }
}

#[test]
fn an_encrypted_packet_under_the_wrong_key_is_no_key_decrypts() {
    let wrong = Keyring::from_base64(&[K2.into()]).unwrap();
    for f in fixtures("encrypted").iter().filter(|f| !f.tcp()) {
        assert_eq!(
            decode_packet(&f.bytes, Some(&wrong)).unwrap_err(),
            WireError::NoKeyDecrypts,
            "{}",
            f.name
        );
    }
    for f in fixtures("encrypted").iter().filter(|f| f.tcp()) {
        assert_eq!(
            decode_stream(&f.bytes, Some(&wrong)).unwrap_err(),
            WireError::NoKeyDecrypts,
            "{}",
            f.name
        );
    }
}

#[test]
fn an_encrypted_packet_without_a_keyring_is_encrypted_without_keyring() {
    for f in fixtures("encrypted") {
        let err = if f.tcp() {
            decode_stream(&f.bytes, None).unwrap_err()
        } else {
            decode_packet(&f.bytes, None).unwrap_err()
        };
        assert_eq!(err, WireError::EncryptedWithoutKeyring, "{}", f.name);
    }
}

#[test]
fn plaintext_on_an_encrypted_node_is_plaintext_on_encrypted() {
    let ring = Keyring::from_base64(&[K1.into()]).unwrap();
    for f in fixtures("plain").into_iter().chain(fixtures("interop")) {
        if f.keyring().is_some() {
            continue;
        }
        let err = if f.tcp() {
            decode_stream(&f.bytes, Some(&ring)).unwrap_err()
        } else {
            decode_packet(&f.bytes, Some(&ring)).unwrap_err()
        };
        assert_eq!(err, WireError::PlaintextOnEncrypted, "{}", f.name);
    }
    // The captured probe that made Serf answer "remote state is not encrypted".
    let f = &fixtures("keys")[0];
    assert_eq!(
        decode_stream(&f.bytes, Some(&ring)).unwrap_err(),
        WireError::PlaintextOnEncrypted
    );
}

#[test]
fn every_strict_prefix_of_a_stream_needs_more_bytes() {
    let both = Keyring::from_base64(&[K1.into(), K2.into()]).unwrap();
    for f in all_fixtures().iter().filter(|f| f.tcp()) {
        let ring = f.keyring().map(|_| &both);
        for cut in 0..f.bytes.len() {
            assert_eq!(
                decode_stream(&f.bytes[..cut], ring).unwrap(),
                None,
                "{} cut at {cut}",
                f.name
            );
        }
    }
}

#[test]
fn a_stream_with_trailing_bytes_reports_only_what_it_consumed() {
    let f = &fixtures("interop")[2]; // 03-tcp-ping
    let mut b = f.bytes.clone();
    b.extend_from_slice(b"\x00garbage");
    let (_, used) = decode_stream(&b, None).unwrap().unwrap();
    assert_eq!(used, f.bytes.len());
}

#[test]
fn tags_in_fixture_meta_decode_and_re_encode() {
    // n1's tags as captured (Go map order role, port; ours is sorted: port, role).
    let meta = hex("ff82a4726f6c65a3776562a4706f7274a433303030");
    let tags = decode_tags(&meta).unwrap();
    assert_eq!(tags["role"], "web");
    assert_eq!(tags["port"], "3000");
    let ours = encode_tags(&tags).unwrap();
    assert_eq!(ours.len(), meta.len());
    assert_eq!(decode_tags(&ours).unwrap(), tags);
    // Single-key tags are byte-identical.
    let n3 = hex("ff81a4726f6c65a563616368");
    let n3 = [&n3[..], b"e"].concat();
    assert_eq!(encode_tags(&decode_tags(&n3).unwrap()).unwrap(), n3);
}

#[test]
fn the_captured_tag_filter_decodes_and_re_encodes_byte_identically() {
    // plain/14: `serf query -tag role=db` — one tag filter as serf 0.9.4 wrote it.
    let raw = hex("0182a445787072a26462a3546167a4726f6c65");
    let f = decode_query_filter(&raw).expect("filter");
    assert_eq!(
        f,
        QueryFilter::Tag {
            tag: "role".into(),
            expr: "db".into()
        }
    );
    assert_eq!(encode_query_filter(&f), raw);
    let nodes = QueryFilter::Nodes(vec!["n1".into(), "n2".into()]);
    assert_eq!(
        decode_query_filter(&encode_query_filter(&nodes)).unwrap(),
        nodes
    );
    assert!(
        decode_query_filter(&[2, 0x90]).is_err(),
        "unknown filter type"
    );
    assert!(decode_query_filter(&[]).is_err());
}

//! memberlist message bodies (gossip-wire.md §4): type byte + Go-identical msgpack map.

use std::net::IpAddr;

use super::error::{Result, WireError};
use super::message::*;
use super::mp::{self, Reader};

/// Most node states a push/pull may announce (newer memberlist caps at 1 Mi).
pub const MAX_PUSH_PULL_NODES: u64 = 1 << 20;
/// Largest user state / user message / stream frame accepted (`maxPushStateBytes`, 20 MiB).
pub const MAX_STREAM_BYTES: u64 = 20 * 1024 * 1024;

impl MessageType {
    /// The type for a type byte, if known.
    pub fn from_u8(b: u8) -> Option<MessageType> {
        Some(match b {
            0 => MessageType::Ping,
            1 => MessageType::IndirectPing,
            2 => MessageType::AckResp,
            3 => MessageType::Suspect,
            4 => MessageType::Alive,
            5 => MessageType::Dead,
            6 => MessageType::PushPull,
            7 => MessageType::Compound,
            8 => MessageType::User,
            9 => MessageType::Compress,
            10 => MessageType::Encrypt,
            11 => MessageType::NackResp,
            12 => MessageType::HasCrc,
            13 => MessageType::Err,
            244 => MessageType::HasLabel,
            _ => return None,
        })
    }
}

impl Message {
    /// The memberlist type of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Ping(_) => MessageType::Ping,
            Message::IndirectPing(_) => MessageType::IndirectPing,
            Message::Ack(_) => MessageType::AckResp,
            Message::Suspect(_) => MessageType::Suspect,
            Message::Alive(_) => MessageType::Alive,
            Message::Dead(_) => MessageType::Dead,
            Message::PushPull(_) => MessageType::PushPull,
            Message::User(_) => MessageType::User,
            Message::Nack(_) => MessageType::NackResp,
            Message::Err(_) => MessageType::Err,
        }
    }
}

impl Vsn {
    /// From the wire bytes: empty means `None`; at least 6 bytes are required otherwise
    /// (Go indexes all six).
    pub fn from_bytes(b: &[u8]) -> Result<Option<Vsn>> {
        match b.len() {
            0 => Ok(None),
            1..=5 => Err(WireError::BadMsgpack {
                field: "Vsn",
                reason: "Vsn must have 0 or 6 bytes",
            }),
            _ => Ok(Some(Vsn {
                pmin: b[0],
                pmax: b[1],
                pcur: b[2],
                dmin: b[3],
                dmax: b[4],
                dcur: b[5],
            })),
        }
    }
}

impl NodeStateKind {
    /// The wire number (0 alive, 1 suspect, 2 dead, 3 left).
    pub fn to_i64(self) -> i64 {
        match self {
            NodeStateKind::Alive => 0,
            NodeStateKind::Suspect => 1,
            NodeStateKind::Dead => 2,
            NodeStateKind::Left => 3,
        }
    }

    /// From the wire number.
    pub fn from_i64(v: i64) -> Option<NodeStateKind> {
        Some(match v {
            0 => NodeStateKind::Alive,
            1 => NodeStateKind::Suspect,
            2 => NodeStateKind::Dead,
            3 => NodeStateKind::Left,
            _ => return None,
        })
    }
}

fn w_vsn(out: &mut Vec<u8>, vsn: &Option<Vsn>) {
    match vsn {
        Some(v) => mp::w_raw(out, &v.to_bytes()),
        None => mp::w_nil(out),
    }
}

// ------------------------------------------------------------------ encode

/// Encode one plain message: type byte + Go-identical msgpack body.
///
/// `User` is the UDP form (`0x08` + delegate bytes); `PushPull` is the whole stream
/// layout (header, node states, user state). For streams use [`super::encode_stream`].
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_message_into(msg, &mut out);
    out
}

/// [`encode_message`] appending to `out`.
pub fn encode_message_into(msg: &Message, out: &mut Vec<u8>) {
    out.push(msg.message_type() as u8);
    match msg {
        Message::Ping(p) => {
            let n = 2
                + p.source_addr.is_some() as usize
                + !p.source_node.is_empty() as usize
                + (p.source_port != 0) as usize;
            mp::w_map(out, n);
            mp::w_str(out, "Node");
            mp::w_str(out, &p.node);
            mp::w_str(out, "SeqNo");
            mp::w_uint(out, p.seq_no as u64);
            w_source(out, &p.source_addr, &p.source_node, p.source_port);
        }
        Message::IndirectPing(p) => {
            let n = 5
                + p.source_addr.is_some() as usize
                + !p.source_node.is_empty() as usize
                + (p.source_port != 0) as usize;
            mp::w_map(out, n);
            mp::w_str(out, "Nack");
            mp::w_bool(out, p.nack);
            mp::w_str(out, "Node");
            mp::w_str(out, &p.node);
            mp::w_str(out, "Port");
            mp::w_uint(out, p.port as u64);
            mp::w_str(out, "SeqNo");
            mp::w_uint(out, p.seq_no as u64);
            w_source(out, &p.source_addr, &p.source_node, p.source_port);
            mp::w_str(out, "Target");
            mp::w_ip(out, &p.target);
        }
        Message::Ack(a) => {
            mp::w_map(out, 2);
            mp::w_str(out, "Payload");
            mp::w_opt_raw(out, a.payload.as_deref());
            mp::w_str(out, "SeqNo");
            mp::w_uint(out, a.seq_no as u64);
        }
        Message::Nack(n) => {
            mp::w_map(out, 1);
            mp::w_str(out, "SeqNo");
            mp::w_uint(out, n.seq_no as u64);
        }
        Message::Suspect(s) => w_accusation(out, &s.from, s.incarnation, &s.node),
        Message::Dead(d) => w_accusation(out, &d.from, d.incarnation, &d.node),
        Message::Alive(a) => {
            mp::w_map(out, 6);
            mp::w_str(out, "Addr");
            mp::w_ip(out, &a.addr);
            mp::w_str(out, "Incarnation");
            mp::w_uint(out, a.incarnation as u64);
            mp::w_str(out, "Meta");
            mp::w_raw(out, &a.meta);
            mp::w_str(out, "Node");
            mp::w_str(out, &a.node);
            mp::w_str(out, "Port");
            mp::w_uint(out, a.port as u64);
            mp::w_str(out, "Vsn");
            w_vsn(out, &a.vsn);
        }
        Message::PushPull(pp) => {
            mp::w_map(out, 3);
            mp::w_str(out, "Join");
            mp::w_bool(out, pp.join);
            mp::w_str(out, "Nodes");
            mp::w_int(out, pp.nodes.len() as i64);
            mp::w_str(out, "UserStateLen");
            mp::w_int(out, pp.user_state.len() as i64);
            for n in &pp.nodes {
                encode_node_state(out, n);
            }
            out.extend_from_slice(&pp.user_state);
        }
        Message::User(b) => out.extend_from_slice(b),
        Message::Err(e) => {
            mp::w_map(out, 1);
            mp::w_str(out, "Error");
            mp::w_str(out, e);
        }
    }
}

fn w_source(out: &mut Vec<u8>, addr: &Option<IpAddr>, node: &str, port: u16) {
    if let Some(a) = addr {
        mp::w_str(out, "SourceAddr");
        mp::w_ip(out, a);
    }
    if !node.is_empty() {
        mp::w_str(out, "SourceNode");
        mp::w_str(out, node);
    }
    if port != 0 {
        mp::w_str(out, "SourcePort");
        mp::w_uint(out, port as u64);
    }
}

fn w_accusation(out: &mut Vec<u8>, from: &str, incarnation: u32, node: &str) {
    mp::w_map(out, 3);
    mp::w_str(out, "From");
    mp::w_str(out, from);
    mp::w_str(out, "Incarnation");
    mp::w_uint(out, incarnation as u64);
    mp::w_str(out, "Node");
    mp::w_str(out, node);
}

fn encode_node_state(out: &mut Vec<u8>, n: &PushNodeState) {
    mp::w_map(out, 7);
    mp::w_str(out, "Addr");
    mp::w_ip(out, &n.addr);
    mp::w_str(out, "Incarnation");
    mp::w_uint(out, n.incarnation as u64);
    mp::w_str(out, "Meta");
    mp::w_raw(out, &n.meta);
    mp::w_str(out, "Name");
    mp::w_str(out, &n.name);
    mp::w_str(out, "Port");
    mp::w_uint(out, n.port as u64);
    mp::w_str(out, "State");
    mp::w_int(out, n.state.to_i64());
    mp::w_str(out, "Vsn");
    w_vsn(out, &n.vsn);
}

// ------------------------------------------------------------------ decode

/// Decode one plain message (type byte + body). Containers (compound, compress, CRC,
/// encrypt, label) are refused with [`WireError::UnexpectedMessageType`]; use
/// [`super::decode_packet`] / [`super::decode_stream`] for those.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    let (&t, body) = bytes.split_first().ok_or(WireError::Truncated)?;
    let mut r = Reader::new(body);
    decode_body(t, &mut r)
}

/// Decode the body of a message of type `t` from `r` (which is left after the body).
/// `User` takes the rest of the reader (UDP form).
pub(crate) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Message> {
    let ty = MessageType::from_u8(t).ok_or(WireError::UnknownMessageType(t))?;
    Ok(match ty {
        MessageType::Ping => Message::Ping(decode_ping(r)?),
        MessageType::IndirectPing => Message::IndirectPing(decode_indirect_ping(r)?),
        MessageType::AckResp => {
            let mut a = Ack::default();
            for _ in 0..r.map_len("ack")? {
                match r.key()? {
                    b"SeqNo" => a.seq_no = r.u32("SeqNo")?,
                    b"Payload" => a.payload = r.opt_byte_vec("Payload")?,
                    _ => r.skip()?,
                }
            }
            Message::Ack(a)
        }
        MessageType::NackResp => {
            let mut seq_no = 0;
            for _ in 0..r.map_len("nack")? {
                match r.key()? {
                    b"SeqNo" => seq_no = r.u32("SeqNo")?,
                    _ => r.skip()?,
                }
            }
            Message::Nack(Nack { seq_no })
        }
        MessageType::Suspect => {
            let (from, incarnation, node) = decode_accusation(r, "suspect")?;
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }
        MessageType::Dead => {
            let (from, incarnation, node) = decode_accusation(r, "dead")?;
            Message::Dead(Dead {
                incarnation,
                node,
                from,
            })
        }
        MessageType::Alive => Message::Alive(decode_alive(r)?),
        MessageType::PushPull => Message::PushPull(decode_push_pull(r)?),
        MessageType::User => Message::User(r.take(r.remaining())?.to_vec()),
        MessageType::Err => {
            let mut e = String::new();
            for _ in 0..r.map_len("err")? {
                match r.key()? {
                    b"Error" => e = r.string("Error")?,
                    _ => r.skip()?,
                }
            }
            Message::Err(e)
        }
        MessageType::Compound
        | MessageType::Compress
        | MessageType::Encrypt
        | MessageType::HasCrc
        | MessageType::HasLabel => return Err(WireError::UnexpectedMessageType(t)),
    })
}

fn decode_ping(r: &mut Reader<'_>) -> Result<Ping> {
    let mut p = Ping::default();
    for _ in 0..r.map_len("ping")? {
        match r.key()? {
            b"Node" => p.node = r.string("Node")?,
            b"SeqNo" => p.seq_no = r.u32("SeqNo")?,
            b"SourceAddr" => p.source_addr = r.ip("SourceAddr")?,
            b"SourceNode" => p.source_node = r.string("SourceNode")?,
            b"SourcePort" => p.source_port = r.u16("SourcePort")?,
            _ => r.skip()?,
        }
    }
    Ok(p)
}

fn decode_indirect_ping(r: &mut Reader<'_>) -> Result<IndirectPing> {
    let (mut nack, mut node, mut port, mut seq_no) = (false, String::new(), 0, 0);
    let (mut source_addr, mut source_node, mut source_port, mut target) =
        (None, String::new(), 0, None);
    for _ in 0..r.map_len("indirectPing")? {
        match r.key()? {
            b"Nack" => nack = r.bool("Nack")?,
            b"Node" => node = r.string("Node")?,
            b"Port" => port = r.u16("Port")?,
            b"SeqNo" => seq_no = r.u32("SeqNo")?,
            b"SourceAddr" => source_addr = r.ip("SourceAddr")?,
            b"SourceNode" => source_node = r.string("SourceNode")?,
            b"SourcePort" => source_port = r.u16("SourcePort")?,
            b"Target" => target = r.ip("Target")?,
            _ => r.skip()?,
        }
    }
    Ok(IndirectPing {
        nack,
        node,
        port,
        seq_no,
        source_addr,
        source_node,
        source_port,
        target: target.ok_or(WireError::MissingField("Target"))?,
    })
}

fn decode_accusation(r: &mut Reader<'_>, what: &'static str) -> Result<(String, u32, String)> {
    let (mut from, mut inc, mut node) = (String::new(), 0, String::new());
    for _ in 0..r.map_len(what)? {
        match r.key()? {
            b"From" => from = r.string("From")?,
            b"Incarnation" => inc = r.u32("Incarnation")?,
            b"Node" => node = r.string("Node")?,
            _ => r.skip()?,
        }
    }
    Ok((from, inc, node))
}

fn decode_alive(r: &mut Reader<'_>) -> Result<Alive> {
    let (mut addr, mut inc, mut meta, mut node, mut port, mut vsn) =
        (None, 0, Vec::new(), String::new(), 0, None);
    for _ in 0..r.map_len("alive")? {
        match r.key()? {
            b"Addr" => addr = r.ip("Addr")?,
            b"Incarnation" => inc = r.u32("Incarnation")?,
            b"Meta" => meta = r.byte_vec("Meta")?,
            b"Node" => node = r.string("Node")?,
            b"Port" => port = r.u16("Port")?,
            b"Vsn" => vsn = Vsn::from_bytes(r.bytes("Vsn")?.as_deref().unwrap_or(&[]))?,
            _ => r.skip()?,
        }
    }
    Ok(Alive {
        incarnation: inc,
        node,
        addr: addr.ok_or(WireError::MissingField("Addr"))?,
        port,
        meta,
        vsn,
    })
}

/// Push/pull header fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushPullHeader {
    pub(crate) join: bool,
    pub(crate) nodes: u64,
    pub(crate) user_state_len: u64,
}

pub(crate) fn decode_push_pull_header(r: &mut Reader<'_>) -> Result<PushPullHeader> {
    let mut h = PushPullHeader {
        join: false,
        nodes: 0,
        user_state_len: 0,
    };
    for _ in 0..r.map_len("pushPull header")? {
        match r.key()? {
            b"Join" => h.join = r.bool("Join")?,
            b"Nodes" => h.nodes = r.uint("Nodes")?,
            b"UserStateLen" => h.user_state_len = r.uint("UserStateLen")?,
            _ => r.skip()?,
        }
    }
    if h.nodes > MAX_PUSH_PULL_NODES {
        return Err(WireError::TooLarge {
            what: "push/pull node count",
            len: h.nodes,
            max: MAX_PUSH_PULL_NODES,
        });
    }
    if h.user_state_len > MAX_STREAM_BYTES {
        return Err(WireError::TooLarge {
            what: "push/pull user state",
            len: h.user_state_len,
            max: MAX_STREAM_BYTES,
        });
    }
    Ok(h)
}

/// Header + node states + user state. `Truncated` if the reader ends early.
pub(crate) fn decode_push_pull(r: &mut Reader<'_>) -> Result<PushPull> {
    let h = decode_push_pull_header(r)?;
    // Every node state takes at least one byte: never reserve more than what is there.
    let cap = (h.nodes as usize).min(r.remaining());
    let mut nodes = Vec::with_capacity(cap);
    for _ in 0..h.nodes {
        nodes.push(decode_node_state(r)?);
    }
    let user_state = r.take(h.user_state_len as usize)?.to_vec();
    Ok(PushPull {
        join: h.join,
        nodes,
        user_state,
    })
}

fn decode_node_state(r: &mut Reader<'_>) -> Result<PushNodeState> {
    let (mut addr, mut inc, mut meta, mut name, mut port, mut state, mut vsn) =
        (None, 0, Vec::new(), String::new(), 0, 0i64, None);
    for _ in 0..r.map_len("pushNodeState")? {
        match r.key()? {
            b"Addr" => addr = r.ip("Addr")?,
            b"Incarnation" => inc = r.u32("Incarnation")?,
            b"Meta" => meta = r.byte_vec("Meta")?,
            b"Name" => name = r.string("Name")?,
            b"Port" => port = r.u16("Port")?,
            b"State" => state = r.i64("State")?,
            b"Vsn" => vsn = Vsn::from_bytes(r.bytes("Vsn")?.as_deref().unwrap_or(&[]))?,
            _ => r.skip()?,
        }
    }
    Ok(PushNodeState {
        name,
        addr: addr.ok_or(WireError::MissingField("Addr"))?,
        port,
        meta,
        incarnation: inc,
        state: NodeStateKind::from_i64(state).ok_or(WireError::BadMsgpack {
            field: "State",
            reason: "node state must be 0..3",
        })?,
        vsn,
    })
}

//! Serf message bodies (gossip-wire.md §10): the payload of memberlist user messages,
//! tags in `Meta`, and the internal-query payloads (conflict, key request/response).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::{Result, WireError};
use super::message::*;
use super::mp::{self, Reader};

/// Largest `Meta` memberlist accepts (`MetaMaxSize`).
pub const META_MAX_SIZE: usize = 512;
/// First byte of tag-encoded `Meta`.
pub const TAG_MAGIC_BYTE: u8 = 0xff;

impl SerfMessageType {
    /// The type for a type byte, if known.
    pub fn from_u8(b: u8) -> Option<SerfMessageType> {
        Some(match b {
            0 => SerfMessageType::Leave,
            1 => SerfMessageType::Join,
            2 => SerfMessageType::PushPull,
            3 => SerfMessageType::UserEvent,
            4 => SerfMessageType::Query,
            5 => SerfMessageType::QueryResponse,
            6 => SerfMessageType::ConflictResponse,
            7 => SerfMessageType::KeyRequest,
            8 => SerfMessageType::KeyResponse,
            9 => SerfMessageType::Relay,
            _ => return None,
        })
    }
}

impl SerfMessage {
    /// The Serf type of this message.
    pub fn message_type(&self) -> SerfMessageType {
        match self {
            SerfMessage::Leave(_) => SerfMessageType::Leave,
            SerfMessage::Join(_) => SerfMessageType::Join,
            SerfMessage::PushPull(_) => SerfMessageType::PushPull,
            SerfMessage::UserEvent(_) => SerfMessageType::UserEvent,
            SerfMessage::Query(_) => SerfMessageType::Query,
            SerfMessage::QueryResponse(_) => SerfMessageType::QueryResponse,
            SerfMessage::Relay(_) => SerfMessageType::Relay,
        }
    }
}

// ------------------------------------------------------------------ encode

/// Encode a Serf message: serf type byte + Go-identical msgpack body.
pub fn encode_serf_message(msg: &SerfMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_serf_message_into(msg, &mut out);
    out
}

/// A memberlist user message (`0x08`) carrying a Serf message: what goes into a packet.
pub fn encode_user_message(msg: &SerfMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(MessageType::User as u8);
    encode_serf_message_into(msg, &mut out);
    out
}

/// [`encode_serf_message`] appending to `out`.
pub fn encode_serf_message_into(msg: &SerfMessage, out: &mut Vec<u8>) {
    out.push(msg.message_type() as u8);
    match msg {
        SerfMessage::Leave(l) => {
            mp::w_map(out, 3);
            mp::w_str(out, "LTime");
            mp::w_uint(out, l.ltime);
            mp::w_str(out, "Node");
            mp::w_str(out, &l.node);
            mp::w_str(out, "Prune");
            mp::w_bool(out, l.prune);
        }
        SerfMessage::Join(j) => {
            mp::w_map(out, 2);
            mp::w_str(out, "LTime");
            mp::w_uint(out, j.ltime);
            mp::w_str(out, "Node");
            mp::w_str(out, &j.node);
        }
        SerfMessage::PushPull(pp) => {
            mp::w_map(out, 6);
            mp::w_str(out, "EventLTime");
            mp::w_uint(out, pp.event_ltime);
            mp::w_str(out, "Events");
            mp::w_array(out, pp.events.len());
            for slot in &pp.events {
                match slot {
                    None => mp::w_nil(out),
                    Some(s) => {
                        mp::w_map(out, 2);
                        mp::w_str(out, "Events");
                        mp::w_array(out, s.events.len());
                        for e in &s.events {
                            mp::w_map(out, 2);
                            mp::w_str(out, "Name");
                            mp::w_str(out, &e.name);
                            mp::w_str(out, "Payload");
                            w_payload(out, &e.payload);
                        }
                        mp::w_str(out, "LTime");
                        mp::w_uint(out, s.ltime);
                    }
                }
            }
            mp::w_str(out, "LTime");
            mp::w_uint(out, pp.ltime);
            mp::w_str(out, "LeftMembers");
            mp::w_array(out, pp.left_members.len());
            for m in &pp.left_members {
                mp::w_str(out, m);
            }
            mp::w_str(out, "QueryLTime");
            mp::w_uint(out, pp.query_ltime);
            mp::w_str(out, "StatusLTimes");
            mp::w_map(out, pp.status_ltimes.len());
            for (k, v) in &pp.status_ltimes {
                mp::w_str(out, k);
                mp::w_uint(out, *v);
            }
        }
        SerfMessage::UserEvent(e) => {
            mp::w_map(out, 4);
            mp::w_str(out, "CC");
            mp::w_bool(out, e.cc);
            mp::w_str(out, "LTime");
            mp::w_uint(out, e.ltime);
            mp::w_str(out, "Name");
            mp::w_str(out, &e.name);
            mp::w_str(out, "Payload");
            w_payload(out, &e.payload);
        }
        SerfMessage::Query(q) => {
            mp::w_map(out, 11);
            mp::w_str(out, "Addr");
            mp::w_ip(out, &q.addr);
            mp::w_str(out, "Filters");
            if q.filters.is_empty() {
                mp::w_nil(out);
            } else {
                mp::w_array(out, q.filters.len());
                for f in &q.filters {
                    mp::w_raw(out, f);
                }
            }
            mp::w_str(out, "Flags");
            mp::w_uint(out, q.flags as u64);
            mp::w_str(out, "ID");
            mp::w_uint(out, q.id as u64);
            mp::w_str(out, "LTime");
            mp::w_uint(out, q.ltime);
            mp::w_str(out, "Name");
            mp::w_str(out, &q.name);
            mp::w_str(out, "Payload");
            w_payload(out, &q.payload);
            mp::w_str(out, "Port");
            mp::w_uint(out, q.port as u64);
            mp::w_str(out, "RelayFactor");
            mp::w_uint(out, q.relay_factor as u64);
            mp::w_str(out, "SourceNode");
            mp::w_str(out, &q.source_node);
            mp::w_str(out, "Timeout");
            mp::w_int(out, q.timeout_ns);
        }
        SerfMessage::QueryResponse(r) => {
            mp::w_map(out, 5);
            mp::w_str(out, "Flags");
            mp::w_uint(out, r.flags as u64);
            mp::w_str(out, "From");
            mp::w_str(out, &r.from);
            mp::w_str(out, "ID");
            mp::w_uint(out, r.id as u64);
            mp::w_str(out, "LTime");
            mp::w_uint(out, r.ltime);
            mp::w_str(out, "Payload");
            mp::w_opt_raw(out, r.payload.as_deref());
        }
        SerfMessage::Relay(r) => {
            mp::w_map(out, 2);
            mp::w_str(out, "DestAddr");
            mp::w_map(out, 3);
            mp::w_str(out, "IP");
            mp::w_ip(out, &r.dest_addr);
            mp::w_str(out, "Port");
            mp::w_int(out, r.dest_port as i64);
            mp::w_str(out, "Zone");
            mp::w_str(out, &r.dest_zone);
            mp::w_str(out, "DestName");
            mp::w_str(out, &r.dest_name);
            out.extend_from_slice(&r.inner);
        }
    }
}

/// Event/query payloads: Go sends an empty payload as a nil slice (`c0`), as captured.
fn w_payload(out: &mut Vec<u8>, p: &[u8]) {
    mp::w_opt_raw(out, (!p.is_empty()).then_some(p));
}

// ------------------------------------------------------------------ decode

/// Decode a Serf message (serf type byte + body). Types 6, 7 and 8 only occur inside
/// query payloads: use [`decode_conflict_response`], [`decode_key_request`],
/// [`decode_key_response`] for those.
pub fn decode_serf_message(bytes: &[u8]) -> Result<SerfMessage> {
    let (&t, body) = bytes.split_first().ok_or(WireError::Truncated)?;
    let ty = SerfMessageType::from_u8(t).ok_or(WireError::UnknownMessageType(t))?;
    let mut r = Reader::new(body);
    let r = &mut r;
    Ok(match ty {
        SerfMessageType::Leave => {
            let mut l = LeaveIntent {
                ltime: 0,
                node: String::new(),
                prune: false,
            };
            for _ in 0..r.map_len("leave")? {
                match r.key()? {
                    b"LTime" => l.ltime = r.uint("LTime")?,
                    b"Node" => l.node = r.string("Node")?,
                    b"Prune" => l.prune = r.bool("Prune")?,
                    _ => r.skip()?,
                }
            }
            SerfMessage::Leave(l)
        }
        SerfMessageType::Join => {
            let mut j = JoinIntent {
                ltime: 0,
                node: String::new(),
            };
            for _ in 0..r.map_len("join")? {
                match r.key()? {
                    b"LTime" => j.ltime = r.uint("LTime")?,
                    b"Node" => j.node = r.string("Node")?,
                    _ => r.skip()?,
                }
            }
            SerfMessage::Join(j)
        }
        SerfMessageType::PushPull => SerfMessage::PushPull(decode_serf_push_pull(r)?),
        SerfMessageType::UserEvent => {
            let mut e = UserEvent {
                ltime: 0,
                name: String::new(),
                payload: Vec::new(),
                cc: false,
            };
            for _ in 0..r.map_len("userEvent")? {
                match r.key()? {
                    b"CC" => e.cc = r.bool("CC")?,
                    b"LTime" => e.ltime = r.uint("LTime")?,
                    b"Name" => e.name = r.string("Name")?,
                    b"Payload" => e.payload = r.byte_vec("Payload")?,
                    _ => r.skip()?,
                }
            }
            SerfMessage::UserEvent(e)
        }
        SerfMessageType::Query => SerfMessage::Query(decode_query(r)?),
        SerfMessageType::QueryResponse => {
            let mut q = QueryResponse {
                ltime: 0,
                id: 0,
                from: String::new(),
                flags: 0,
                payload: None,
            };
            for _ in 0..r.map_len("queryResponse")? {
                match r.key()? {
                    b"Flags" => q.flags = r.u32("Flags")?,
                    b"From" => q.from = r.string("From")?,
                    b"ID" => q.id = r.u32("ID")?,
                    b"LTime" => q.ltime = r.uint("LTime")?,
                    b"Payload" => q.payload = r.opt_byte_vec("Payload")?,
                    _ => r.skip()?,
                }
            }
            SerfMessage::QueryResponse(q)
        }
        SerfMessageType::Relay => SerfMessage::Relay(decode_relay(r)?),
        SerfMessageType::ConflictResponse
        | SerfMessageType::KeyRequest
        | SerfMessageType::KeyResponse => return Err(WireError::UnexpectedMessageType(t)),
    })
}

fn decode_query(r: &mut Reader<'_>) -> Result<Query> {
    let mut addr: Option<IpAddr> = None;
    let mut q = Query {
        ltime: 0,
        id: 0,
        addr: IpAddr::from([0u8, 0, 0, 0]),
        port: 0,
        source_node: String::new(),
        filters: Vec::new(),
        flags: 0,
        relay_factor: 0,
        timeout_ns: 0,
        name: String::new(),
        payload: Vec::new(),
    };
    for _ in 0..r.map_len("query")? {
        match r.key()? {
            b"Addr" => addr = r.ip("Addr")?,
            b"Filters" => {
                let n = r.array_len("Filters")?.unwrap_or(0);
                let mut f = Vec::with_capacity(n);
                for _ in 0..n {
                    f.push(r.byte_vec("Filters")?);
                }
                q.filters = f;
            }
            b"Flags" => q.flags = r.u32("Flags")?,
            b"ID" => q.id = r.u32("ID")?,
            b"LTime" => q.ltime = r.uint("LTime")?,
            b"Name" => q.name = r.string("Name")?,
            b"Payload" => q.payload = r.byte_vec("Payload")?,
            b"Port" => q.port = r.u16("Port")?,
            b"RelayFactor" => q.relay_factor = r.u8("RelayFactor")?,
            b"SourceNode" => q.source_node = r.string("SourceNode")?,
            b"Timeout" => q.timeout_ns = r.i64("Timeout")?,
            _ => r.skip()?,
        }
    }
    q.addr = addr.ok_or(WireError::MissingField("Addr"))?;
    Ok(q)
}

fn decode_relay(r: &mut Reader<'_>) -> Result<Relay> {
    let (mut ip, mut port, mut zone, mut name) = (None, 0u16, String::new(), String::new());
    let mut have_dest = false;
    for _ in 0..r.map_len("relay header")? {
        match r.key()? {
            b"DestAddr" => {
                have_dest = true;
                for _ in 0..r.map_len("DestAddr")? {
                    match r.key()? {
                        b"IP" => ip = r.ip("IP")?,
                        b"Port" => port = r.uint_max("Port", u16::MAX as u64)? as u16,
                        b"Zone" => zone = r.string("Zone")?,
                        _ => r.skip()?,
                    }
                }
            }
            b"DestName" => name = r.string("DestName")?,
            _ => r.skip()?,
        }
    }
    if !have_dest {
        return Err(WireError::MissingField("DestAddr"));
    }
    let inner = r.rest().to_vec();
    if inner.is_empty() {
        return Err(WireError::Truncated);
    }
    Ok(Relay {
        dest_addr: ip.ok_or(WireError::MissingField("IP"))?,
        dest_port: port,
        dest_zone: zone,
        dest_name: name,
        inner,
    })
}

fn decode_serf_push_pull(r: &mut Reader<'_>) -> Result<SerfPushPull> {
    let mut pp = SerfPushPull::default();
    for _ in 0..r.map_len("serf pushPull")? {
        match r.key()? {
            b"EventLTime" => pp.event_ltime = r.uint("EventLTime")?,
            b"Events" => {
                let n = r.array_len("Events")?.unwrap_or(0);
                let mut ring = Vec::with_capacity(n);
                for _ in 0..n {
                    if r.nil()? {
                        ring.push(None);
                        continue;
                    }
                    let mut slot = RingSlot {
                        ltime: 0,
                        events: Vec::new(),
                    };
                    for _ in 0..r.map_len("Events")? {
                        match r.key()? {
                            b"LTime" => slot.ltime = r.uint("LTime")?,
                            b"Events" => {
                                let m = r.array_len("Events")?.unwrap_or(0);
                                let mut evs = Vec::with_capacity(m);
                                for _ in 0..m {
                                    let mut e = RingEvent {
                                        name: String::new(),
                                        payload: Vec::new(),
                                    };
                                    for _ in 0..r.map_len("userEvent")? {
                                        match r.key()? {
                                            b"Name" => e.name = r.string("Name")?,
                                            b"Payload" => e.payload = r.byte_vec("Payload")?,
                                            _ => r.skip()?,
                                        }
                                    }
                                    evs.push(e);
                                }
                                slot.events = evs;
                            }
                            _ => r.skip()?,
                        }
                    }
                    ring.push(Some(slot));
                }
                pp.events = ring;
            }
            b"LTime" => pp.ltime = r.uint("LTime")?,
            b"LeftMembers" => {
                let n = r.array_len("LeftMembers")?.unwrap_or(0);
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.string("LeftMembers")?);
                }
                pp.left_members = v;
            }
            b"QueryLTime" => pp.query_ltime = r.uint("QueryLTime")?,
            b"StatusLTimes" => {
                let mut m = BTreeMap::new();
                for _ in 0..r.map_len("StatusLTimes")? {
                    let k = r.string("StatusLTimes")?;
                    let v = r.uint("StatusLTimes")?;
                    m.insert(k, v);
                }
                pp.status_ltimes = m;
            }
            _ => r.skip()?,
        }
    }
    Ok(pp)
}

// ------------------------------------------------------------------ tags

/// Encode tags as Serf `Meta`: `0xff` + msgpack map in key order (deterministic, so the
/// bytes stay stable between alive messages). Fails above 512 bytes.
pub fn encode_tags(tags: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut out = vec![TAG_MAGIC_BYTE];
    w_tag_map(&mut out, tags);
    if out.len() > META_MAX_SIZE {
        return Err(WireError::MetaTooLarge(out.len()));
    }
    Ok(out)
}

fn w_tag_map(out: &mut Vec<u8>, tags: &BTreeMap<String, String>) {
    mp::w_map(out, tags.len());
    for (k, v) in tags {
        mp::w_str(out, k);
        mp::w_str(out, v);
    }
}

fn read_tag_map(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for _ in 0..r.map_len("Tags")? {
        let k = r.string("Tags")?;
        let v = r.string("Tags")?;
        tags.insert(k, v);
    }
    Ok(tags)
}

/// Decode Serf `Meta` into tags. Empty `Meta` or a first byte other than `0xff` is the
/// legacy format: the whole `Meta` is the value of tag `role` (as Go does).
pub fn decode_tags(meta: &[u8]) -> Result<BTreeMap<String, String>> {
    match meta.split_first() {
        Some((&TAG_MAGIC_BYTE, rest)) => read_tag_map(&mut Reader::new(rest)),
        _ => {
            let mut tags = BTreeMap::new();
            tags.insert(
                "role".to_owned(),
                String::from_utf8_lossy(meta).into_owned(),
            );
            Ok(tags)
        }
    }
}

// ------------------------------------------------------------------ internal queries

/// `_serf_conflict` answer payload: `0x06` + msgpack `Member` (nil when unknown).
pub fn encode_conflict_response(m: Option<&ConflictMember>) -> Vec<u8> {
    let mut out = vec![SerfMessageType::ConflictResponse as u8];
    let Some(m) = m else {
        mp::w_nil(&mut out);
        return out;
    };
    let out_ = &mut out;
    mp::w_map(out_, 11);
    mp::w_str(out_, "Addr");
    mp::w_ip(out_, &m.addr);
    mp::w_str(out_, "DelegateCur");
    mp::w_uint(out_, m.vsn.dcur as u64);
    mp::w_str(out_, "DelegateMax");
    mp::w_uint(out_, m.vsn.dmax as u64);
    mp::w_str(out_, "DelegateMin");
    mp::w_uint(out_, m.vsn.dmin as u64);
    mp::w_str(out_, "Name");
    mp::w_str(out_, &m.name);
    mp::w_str(out_, "Port");
    mp::w_uint(out_, m.port as u64);
    mp::w_str(out_, "ProtocolCur");
    mp::w_uint(out_, m.vsn.pcur as u64);
    mp::w_str(out_, "ProtocolMax");
    mp::w_uint(out_, m.vsn.pmax as u64);
    mp::w_str(out_, "ProtocolMin");
    mp::w_uint(out_, m.vsn.pmin as u64);
    mp::w_str(out_, "Status");
    mp::w_int(out_, m.status);
    mp::w_str(out_, "Tags");
    w_tag_map(out_, &m.tags);
    out
}

fn expect_type(bytes: &[u8], t: SerfMessageType) -> Result<Reader<'_>> {
    let (&b, body) = bytes.split_first().ok_or(WireError::Truncated)?;
    if b != t as u8 {
        return Err(match SerfMessageType::from_u8(b) {
            Some(_) => WireError::UnexpectedMessageType(b),
            None => WireError::UnknownMessageType(b),
        });
    }
    Ok(Reader::new(body))
}

/// Decode a `_serf_conflict` answer payload (`0x06` + `Member` or nil).
pub fn decode_conflict_response(bytes: &[u8]) -> Result<Option<ConflictMember>> {
    let mut r = expect_type(bytes, SerfMessageType::ConflictResponse)?;
    if r.nil()? {
        return Ok(None);
    }
    let mut addr = None;
    let mut m = ConflictMember {
        name: String::new(),
        addr: IpAddr::from([0u8, 0, 0, 0]),
        port: 0,
        tags: BTreeMap::new(),
        status: 0,
        vsn: Vsn {
            pmin: 0,
            pmax: 0,
            pcur: 0,
            dmin: 0,
            dmax: 0,
            dcur: 0,
        },
    };
    for _ in 0..r.map_len("Member")? {
        match r.key()? {
            b"Addr" => addr = r.ip("Addr")?,
            b"DelegateCur" => m.vsn.dcur = r.u8("DelegateCur")?,
            b"DelegateMax" => m.vsn.dmax = r.u8("DelegateMax")?,
            b"DelegateMin" => m.vsn.dmin = r.u8("DelegateMin")?,
            b"Name" => m.name = r.string("Name")?,
            b"Port" => m.port = r.u16("Port")?,
            b"ProtocolCur" => m.vsn.pcur = r.u8("ProtocolCur")?,
            b"ProtocolMax" => m.vsn.pmax = r.u8("ProtocolMax")?,
            b"ProtocolMin" => m.vsn.pmin = r.u8("ProtocolMin")?,
            b"Status" => m.status = r.i64("Status")?,
            b"Tags" => m.tags = read_tag_map(&mut r)?,
            _ => r.skip()?,
        }
    }
    m.addr = addr.ok_or(WireError::MissingField("Addr"))?;
    Ok(Some(m))
}

/// Key request payload of the internal key queries: `0x07` + `{Key}`.
pub fn encode_key_request(req: &KeyRequest) -> Vec<u8> {
    let mut out = vec![SerfMessageType::KeyRequest as u8];
    mp::w_map(&mut out, 1);
    mp::w_str(&mut out, "Key");
    mp::w_raw(&mut out, &req.key);
    out
}

/// Decode a key request payload (`0x07` + `{Key}`).
pub fn decode_key_request(bytes: &[u8]) -> Result<KeyRequest> {
    let mut r = expect_type(bytes, SerfMessageType::KeyRequest)?;
    let mut key = Vec::new();
    for _ in 0..r.map_len("keyRequest")? {
        match r.key()? {
            b"Key" => key = r.byte_vec("Key")?,
            _ => r.skip()?,
        }
    }
    Ok(KeyRequest { key })
}

/// Key response payload: `0x08` + `{Keys, Message, PrimaryKey, Result}`.
pub fn encode_key_response(resp: &KeyResponse) -> Vec<u8> {
    let mut out = vec![SerfMessageType::KeyResponse as u8];
    let o = &mut out;
    mp::w_map(o, 4);
    mp::w_str(o, "Keys");
    match &resp.keys {
        None => mp::w_nil(o),
        Some(keys) => {
            mp::w_array(o, keys.len());
            for k in keys {
                mp::w_str(o, k);
            }
        }
    }
    mp::w_str(o, "Message");
    mp::w_str(o, &resp.message);
    mp::w_str(o, "PrimaryKey");
    mp::w_str(o, &resp.primary_key);
    mp::w_str(o, "Result");
    mp::w_bool(o, resp.result);
    out
}

/// Decode a key response payload (`0x08` + map).
pub fn decode_key_response(bytes: &[u8]) -> Result<KeyResponse> {
    let mut r = expect_type(bytes, SerfMessageType::KeyResponse)?;
    let mut resp = KeyResponse {
        result: false,
        message: String::new(),
        keys: None,
        primary_key: String::new(),
    };
    for _ in 0..r.map_len("keyResponse")? {
        match r.key()? {
            b"Keys" => {
                resp.keys = match r.array_len("Keys")? {
                    None => None,
                    Some(n) => {
                        let mut v = Vec::with_capacity(n);
                        for _ in 0..n {
                            v.push(r.string("Keys")?);
                        }
                        Some(v)
                    }
                }
            }
            b"Message" => resp.message = r.string("Message")?,
            b"PrimaryKey" => resp.primary_key = r.string("PrimaryKey")?,
            b"Result" => resp.result = r.bool("Result")?,
            _ => r.skip()?,
        }
    }
    Ok(resp)
}

/// A Serf query filter (one element of a query's `Filters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFilter {
    /// Type 0: only these nodes process the query.
    Nodes(Vec<String>),
    /// Type 1: only nodes whose tag `tag` matches the regular expression `expr`.
    Tag {
        /// Tag name.
        tag: String,
        /// Regular expression (Go RE2 syntax).
        expr: String,
    },
}

/// Query filter type byte: node-name list.
pub const FILTER_NODES: u8 = 0;
/// Query filter type byte: tag regular expression.
pub const FILTER_TAG: u8 = 1;

/// Encode a query filter: type byte + msgpack (array of names, or `{Expr, Tag}`).
pub fn encode_query_filter(f: &QueryFilter) -> Vec<u8> {
    match f {
        QueryFilter::Nodes(names) => {
            let mut out = vec![FILTER_NODES];
            mp::w_array(&mut out, names.len());
            for n in names {
                mp::w_str(&mut out, n);
            }
            out
        }
        QueryFilter::Tag { tag, expr } => {
            let mut out = vec![FILTER_TAG];
            mp::w_map(&mut out, 2);
            mp::w_str(&mut out, "Expr");
            mp::w_str(&mut out, expr);
            mp::w_str(&mut out, "Tag");
            mp::w_str(&mut out, tag);
            out
        }
    }
}

/// Decode a query filter. An unknown filter type is an error (Serf then does not process
/// the query).
pub fn decode_query_filter(bytes: &[u8]) -> Result<QueryFilter> {
    let (&t, body) = bytes.split_first().ok_or(WireError::Truncated)?;
    let mut r = Reader::new(body);
    match t {
        FILTER_NODES => {
            let n = r.array_len("filterNodes")?.unwrap_or(0);
            let mut names = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                names.push(r.string("filterNodes")?);
            }
            Ok(QueryFilter::Nodes(names))
        }
        FILTER_TAG => {
            let (mut tag, mut expr) = (None, None);
            for _ in 0..r.map_len("filterTag")? {
                match r.key()? {
                    b"Tag" => tag = Some(r.string("Tag")?),
                    b"Expr" => expr = Some(r.string("Expr")?),
                    _ => r.skip()?,
                }
            }
            Ok(QueryFilter::Tag {
                tag: tag.ok_or(WireError::MissingField("Tag"))?,
                expr: expr.ok_or(WireError::MissingField("Expr"))?,
            })
        }
        other => Err(WireError::UnknownMessageType(other)),
    }
}

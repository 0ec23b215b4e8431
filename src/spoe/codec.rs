//! SPOP 2.0 wire codec: varints, typed data, KV-lists, messages, actions and frames.
//!
//! Everything here is pure: bytes in, values out (and back). Decoding never panics; a
//! malformed input is a [`DecodeError`] that maps to the SPOP status code the agent must
//! send in its AGENT-DISCONNECT ([`DecodeError::status`]).
//!
//! Framing (`ref/haproxy-spoe.md` §2.1):
//! `<len: u32 BE, not counting itself> <type: u8> <flags: u32 BE> <stream-id: varint>
//! <frame-id: varint> <payload>`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Smallest `max-frame-size` SPOP allows.
pub const MIN_FRAME_SIZE: u32 = 256;
/// HAProxy 2.6's default `max-frame-size` (tune.bufsize − 4).
pub const DEFAULT_FRAME_SIZE: u32 = 16380;
/// Default upper bound of the agent's `max-frame-size`: HAProxy's offer (its
/// `tune.bufsize` − 4 or the engine's `max-frame-size`) is taken up to this.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;
/// FIN flag: last fragment (set on every unfragmented frame).
pub const FLAG_FIN: u32 = 1;
/// ABORT flag: abort a fragmented payload.
pub const FLAG_ABORT: u32 = 2;

/// SPOP status codes carried in DISCONNECT frames (`ref/haproxy-spoe.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// 0: normal.
    Normal = 0,
    /// 1: I/O error.
    Io = 1,
    /// 2: a timeout occurred.
    Timeout = 2,
    /// 3: frame is too big.
    TooBig = 3,
    /// 4: invalid frame received.
    Invalid = 4,
    /// 5: version value not found.
    NoVersion = 5,
    /// 6: max-frame-size value not found.
    NoFrameSize = 6,
    /// 7: capabilities value not found.
    NoCapabilities = 7,
    /// 8: unsupported version.
    BadVersion = 8,
    /// 9: max-frame-size too big or too small.
    BadFrameSize = 9,
    /// 10: payload fragmentation is not supported.
    FragNotSupported = 10,
    /// 11: invalid interlaced frames.
    InterlacedFrames = 11,
    /// 12: frame-id not found.
    FrameIdNotFound = 12,
    /// 13: resource allocation error.
    Resource = 13,
    /// 99: an unknown error occurred.
    Unknown = 99,
}

impl Status {
    /// The numeric code on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The human message sent next to the code.
    pub fn message(self) -> &'static str {
        match self {
            Status::Normal => "normal",
            Status::Io => "I/O error",
            Status::Timeout => "a timeout occurred",
            Status::TooBig => "frame is too big",
            Status::Invalid => "invalid frame received",
            Status::NoVersion => "version value not found",
            Status::NoFrameSize => "max-frame-size value not found",
            Status::NoCapabilities => "capabilities value not found",
            Status::BadVersion => "unsupported version",
            Status::BadFrameSize => "max-frame-size too big or too small",
            Status::FragNotSupported => "payload fragmentation is not supported",
            Status::InterlacedFrames => "invalid interlaced frames",
            Status::FrameIdNotFound => "frame-id not found",
            Status::Resource => "resource allocation error",
            Status::Unknown => "an unknown error occurred",
        }
    }
}

/// Why bytes could not be decoded. Decoding has no side effects: on error the input is
/// left for the caller to drop, and the connection is expected to be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A varint ran past 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A typed-data byte names a reserved type.
    #[error("unknown data type {0}")]
    UnknownType(u8),
    /// An integer does not fit the type it was sent as.
    #[error("integer {0} out of range for its type")]
    IntRange(u64),
    /// A name is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A frame announces a length above the negotiated maximum.
    #[error("frame of {len} bytes exceeds max-frame-size {max}")]
    TooBig {
        /// Announced length.
        len: u32,
        /// Negotiated maximum.
        max: u32,
    },
    /// A frame shorter than its fixed header.
    #[error("frame of {0} bytes is shorter than a frame header")]
    TooShort(u32),
    /// Bytes left after the last complete structure.
    #[error("trailing bytes in {0}")]
    Trailing(&'static str),
    /// An action type this codec does not know.
    #[error("unknown action type {0}")]
    UnknownAction(u8),
    /// An action with the wrong number of arguments.
    #[error("action type {kind} with {nb} arguments")]
    ActionArgs {
        /// Action type.
        kind: u8,
        /// Number of arguments announced.
        nb: u8,
    },
    /// A variable scope byte above 4.
    #[error("unknown variable scope {0}")]
    UnknownScope(u8),
    /// The stream failed (only from the tokio-util `Decoder` plumbing).
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e.to_string())
    }
}

impl DecodeError {
    /// The SPOP status an agent answers this error with.
    pub fn status(&self) -> Status {
        match self {
            DecodeError::TooBig { .. } => Status::TooBig,
            DecodeError::Io(_) => Status::Io,
            _ => Status::Invalid,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Varint
// ---------------------------------------------------------------------------------------

/// Appends the SPOP ("peers") varint encoding of `n`.
pub fn put_varint(out: &mut impl BufMut, mut n: u64) {
    if n < 240 {
        out.put_u8(n as u8);
        return;
    }
    out.put_u8((n as u8) | 0xF0);
    n = (n - 240) >> 4;
    while n >= 128 {
        out.put_u8((n as u8) | 0x80);
        n = (n - 128) >> 7;
    }
    out.put_u8(n as u8);
}

/// Bytes [`put_varint`] writes for `n`.
pub fn varint_len(n: u64) -> usize {
    if n < 240 {
        return 1;
    }
    let mut len = 2;
    let mut n = (n - 240) >> 4;
    while n >= 128 {
        len += 1;
        n = (n - 128) >> 7;
    }
    len
}

/// Reads a varint from the front of `buf`, advancing it.
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let (&b, rest) = buf.split_first().ok_or(DecodeError::Truncated("varint"))?;
    *buf = rest;
    if b < 240 {
        return Ok(u64::from(b));
    }
    let mut value = u64::from(b);
    let mut shift: u32 = 4;
    loop {
        let (&c, rest) = buf.split_first().ok_or(DecodeError::Truncated("varint"))?;
        *buf = rest;
        if shift > 63 {
            return Err(DecodeError::VarintOverflow);
        }
        let add = u64::from(c)
            .checked_shl(shift)
            .filter(|v| v >> shift == u64::from(c))
            .ok_or(DecodeError::VarintOverflow)?;
        value = value.checked_add(add).ok_or(DecodeError::VarintOverflow)?;
        shift += 7;
        if c < 128 {
            return Ok(value);
        }
    }
}

fn get_u8(buf: &mut &[u8], what: &'static str) -> Result<u8, DecodeError> {
    let (&b, rest) = buf.split_first().ok_or(DecodeError::Truncated(what))?;
    *buf = rest;
    Ok(b)
}

fn get_bytes<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], DecodeError> {
    let len = get_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
    if buf.len() < len {
        return Err(DecodeError::Truncated(what));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

fn get_name(buf: &mut &[u8], what: &'static str) -> Result<String, DecodeError> {
    let b = get_bytes(buf, what)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8(what))
}

fn put_bytes(out: &mut impl BufMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

// ---------------------------------------------------------------------------------------
// Typed data
// ---------------------------------------------------------------------------------------

/// One typed value (`ref/haproxy-spoe.md` §2.3). Strings keep their raw bytes: HAProxy sends
/// paths and headers that need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedData {
    /// Type 0: no value (a fetch that returned nothing).
    Null,
    /// Type 1: the value is the flag bit 0x10 of the type byte.
    Bool(bool),
    /// Type 2.
    Int32(i32),
    /// Type 3.
    Uint32(u32),
    /// Type 4: every integer HAProxy sends.
    Int64(i64),
    /// Type 5.
    Uint64(u64),
    /// Type 6.
    Ipv4(Ipv4Addr),
    /// Type 7.
    Ipv6(Ipv6Addr),
    /// Type 8: bytes without a trailing NUL.
    String(Vec<u8>),
    /// Type 9.
    Binary(Vec<u8>),
}

impl TypedData {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        TypedData::String(s.into().into_bytes())
    }

    /// The value as text, for STRING and BINARY values that are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TypedData::String(b) | TypedData::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as an unsigned integer, for any non-negative integer type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            TypedData::Int32(v) => u64::try_from(v).ok(),
            TypedData::Uint32(v) => Some(u64::from(v)),
            TypedData::Int64(v) => u64::try_from(v).ok(),
            TypedData::Uint64(v) => Some(v),
            _ => None,
        }
    }

    /// Appends type byte and value.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            TypedData::Null => out.put_u8(0),
            TypedData::Bool(b) => out.put_u8(if *b { 0x11 } else { 0x01 }),
            TypedData::Int32(v) => {
                out.put_u8(2);
                put_varint(out, i64::from(*v) as u64);
            }
            TypedData::Uint32(v) => {
                out.put_u8(3);
                put_varint(out, u64::from(*v));
            }
            TypedData::Int64(v) => {
                out.put_u8(4);
                put_varint(out, *v as u64);
            }
            TypedData::Uint64(v) => {
                out.put_u8(5);
                put_varint(out, *v);
            }
            TypedData::Ipv4(a) => {
                out.put_u8(6);
                out.put_slice(&a.octets());
            }
            TypedData::Ipv6(a) => {
                out.put_u8(7);
                out.put_slice(&a.octets());
            }
            TypedData::String(b) => {
                out.put_u8(8);
                put_bytes(out, b);
            }
            TypedData::Binary(b) => {
                out.put_u8(9);
                put_bytes(out, b);
            }
        }
    }

    /// Reads one typed value from the front of `buf`.
    pub fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let tb = get_u8(buf, "typed data")?;
        Ok(match tb & 0x0F {
            0 => TypedData::Null,
            1 => TypedData::Bool(tb & 0x10 != 0),
            2 => {
                let v = get_varint(buf)?;
                TypedData::Int32(i32::try_from(v as i64).map_err(|_| DecodeError::IntRange(v))?)
            }
            3 => {
                let v = get_varint(buf)?;
                TypedData::Uint32(u32::try_from(v).map_err(|_| DecodeError::IntRange(v))?)
            }
            4 => TypedData::Int64(get_varint(buf)? as i64),
            5 => TypedData::Uint64(get_varint(buf)?),
            6 => {
                if buf.len() < 4 {
                    return Err(DecodeError::Truncated("ipv4"));
                }
                let mut o = [0u8; 4];
                buf.copy_to_slice(&mut o);
                TypedData::Ipv4(Ipv4Addr::from(o))
            }
            7 => {
                if buf.len() < 16 {
                    return Err(DecodeError::Truncated("ipv6"));
                }
                let mut o = [0u8; 16];
                buf.copy_to_slice(&mut o);
                TypedData::Ipv6(Ipv6Addr::from(o))
            }
            8 => TypedData::String(get_bytes(buf, "string")?.to_vec()),
            9 => TypedData::Binary(get_bytes(buf, "binary")?.to_vec()),
            t => return Err(DecodeError::UnknownType(t)),
        })
    }
}

impl fmt::Display for TypedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedData::Null => f.write_str("null"),
            TypedData::Bool(b) => write!(f, "{b}"),
            TypedData::Int32(v) => write!(f, "{v}"),
            TypedData::Uint32(v) => write!(f, "{v}"),
            TypedData::Int64(v) => write!(f, "{v}"),
            TypedData::Uint64(v) => write!(f, "{v}"),
            TypedData::Ipv4(a) => write!(f, "{a}"),
            TypedData::Ipv6(a) => write!(f, "{a}"),
            TypedData::String(b) | TypedData::Binary(b) => {
                write!(f, "{:?}", String::from_utf8_lossy(b))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------

/// A KV-LIST: names (untyped) and typed values, in wire order.
pub type KvList = Vec<(String, TypedData)>;

/// Looks a key up in a KV-list.
pub fn kv_get<'a>(kv: &'a KvList, key: &str) -> Option<&'a TypedData> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn decode_kv_list(mut buf: &[u8]) -> Result<KvList, DecodeError> {
    let mut kv = Vec::new();
    while !buf.is_empty() {
        let name = get_name(&mut buf, "kv name")?;
        let value = TypedData::decode(&mut buf)?;
        kv.push((name, value));
    }
    Ok(kv)
}

fn encode_kv_list(kv: &KvList, out: &mut impl BufMut) {
    for (k, v) in kv {
        put_bytes(out, k.as_bytes());
        v.encode(out);
    }
}

/// One SPOE message of a NOTIFY frame: its name and named arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `spoe-message` name.
    pub name: String,
    /// Arguments in configured order; the name is empty for unnamed arguments.
    pub args: KvList,
}

impl Message {
    /// The first argument with this name.
    pub fn arg(&self, name: &str) -> Option<&TypedData> {
        kv_get(&self.args, name)
    }
}

fn decode_messages(mut buf: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let mut msgs = Vec::new();
    while !buf.is_empty() {
        let name = get_name(&mut buf, "message name")?;
        let nb = get_u8(&mut buf, "message nb-args")?;
        let mut args = Vec::with_capacity(usize::from(nb));
        for _ in 0..nb {
            let an = get_name(&mut buf, "argument name")?;
            let av = TypedData::decode(&mut buf)?;
            args.push((an, av));
        }
        msgs.push(Message { name, args });
    }
    Ok(msgs)
}

fn encode_messages(msgs: &[Message], out: &mut impl BufMut) {
    for m in msgs {
        put_bytes(out, m.name.as_bytes());
        out.put_u8(m.args.len().min(255) as u8);
        for (k, v) in m.args.iter().take(255) {
            put_bytes(out, k.as_bytes());
            v.encode(out);
        }
    }
}

/// Variable scope of set-var / unset-var.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VarScope {
    /// 0: process.
    Proc,
    /// 1: session.
    Sess,
    /// 2: transaction (the default).
    #[default]
    Txn,
    /// 3: request only.
    Req,
    /// 4: response only.
    Res,
}

impl VarScope {
    fn byte(self) -> u8 {
        match self {
            VarScope::Proc => 0,
            VarScope::Sess => 1,
            VarScope::Txn => 2,
            VarScope::Req => 3,
            VarScope::Res => 4,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => VarScope::Proc,
            1 => VarScope::Sess,
            2 => VarScope::Txn,
            3 => VarScope::Req,
            4 => VarScope::Res,
            o => return Err(DecodeError::UnknownScope(o)),
        })
    }

    /// The scope's name in HAProxy variable names (`txn`, `req`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            VarScope::Proc => "proc",
            VarScope::Sess => "sess",
            VarScope::Txn => "txn",
            VarScope::Req => "req",
            VarScope::Res => "res",
        }
    }
}

impl std::str::FromStr for VarScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "proc" => VarScope::Proc,
            "sess" => VarScope::Sess,
            "txn" => VarScope::Txn,
            "req" => VarScope::Req,
            "res" => VarScope::Res,
            o => {
                return Err(format!(
                    "unknown variable scope {o:?} (proc|sess|txn|req|res)"
                ))
            }
        })
    }
}

/// One action of an ACK frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Type 1: set a variable.
    SetVar {
        /// Scope.
        scope: VarScope,
        /// Name below HAProxy's `var-prefix`.
        name: String,
        /// Value.
        value: TypedData,
    },
    /// Type 2: remove a variable.
    UnsetVar {
        /// Scope.
        scope: VarScope,
        /// Name below HAProxy's `var-prefix`.
        name: String,
    },
}

fn decode_actions(mut buf: &[u8]) -> Result<Vec<Action>, DecodeError> {
    let mut acts = Vec::new();
    while !buf.is_empty() {
        let kind = get_u8(&mut buf, "action type")?;
        let nb = get_u8(&mut buf, "action nb-args")?;
        match (kind, nb) {
            (1, 3) => {
                let scope = VarScope::from_byte(get_u8(&mut buf, "scope")?)?;
                let name = get_name(&mut buf, "variable name")?;
                let value = TypedData::decode(&mut buf)?;
                acts.push(Action::SetVar { scope, name, value });
            }
            (2, 2) => {
                let scope = VarScope::from_byte(get_u8(&mut buf, "scope")?)?;
                let name = get_name(&mut buf, "variable name")?;
                acts.push(Action::UnsetVar { scope, name });
            }
            (1, _) | (2, _) => return Err(DecodeError::ActionArgs { kind, nb }),
            _ => return Err(DecodeError::UnknownAction(kind)),
        }
    }
    Ok(acts)
}

fn encode_actions(acts: &[Action], out: &mut impl BufMut) {
    for a in acts {
        match a {
            Action::SetVar { scope, name, value } => {
                out.put_slice(&[1, 3, scope.byte()]);
                put_bytes(out, name.as_bytes());
                value.encode(out);
            }
            Action::UnsetVar { scope, name } => {
                out.put_slice(&[2, 2, scope.byte()]);
                put_bytes(out, name.as_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// A frame as cut from the stream: header fields and the undecoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame type byte.
    pub kind: u8,
    /// Flags (FIN = 1, ABORT = 2).
    pub flags: u32,
    /// Stream id.
    pub stream_id: u64,
    /// Frame id.
    pub frame_id: u64,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Type 1: HAPROXY-HELLO.
    HaproxyHello(KvList),
    /// Type 2: HAPROXY-DISCONNECT.
    HaproxyDisconnect(KvList),
    /// Type 3: NOTIFY.
    Notify {
        /// Stream id (repeated in the ACK).
        stream_id: u64,
        /// Frame id (repeated in the ACK).
        frame_id: u64,
        /// Messages of the event.
        messages: Vec<Message>,
    },
    /// Type 101: AGENT-HELLO.
    AgentHello(KvList),
    /// Type 102: AGENT-DISCONNECT.
    AgentDisconnect(KvList),
    /// Type 103: ACK.
    Ack {
        /// Stream id of the NOTIFY.
        stream_id: u64,
        /// Frame id of the NOTIFY.
        frame_id: u64,
        /// Actions.
        actions: Vec<Action>,
    },
}

/// Frame type numbers.
pub mod kind {
    /// Continuation of a fragmented payload.
    pub const UNSET: u8 = 0;
    /// HAPROXY-HELLO.
    pub const HAPROXY_HELLO: u8 = 1;
    /// HAPROXY-DISCONNECT.
    pub const HAPROXY_DISCONNECT: u8 = 2;
    /// NOTIFY.
    pub const NOTIFY: u8 = 3;
    /// AGENT-HELLO.
    pub const AGENT_HELLO: u8 = 101;
    /// AGENT-DISCONNECT.
    pub const AGENT_DISCONNECT: u8 = 102;
    /// ACK.
    pub const ACK: u8 = 103;
}

impl Frame {
    /// Decodes the payload of a known frame type; `Ok(None)` for a type SPOP lets a peer skip.
    pub fn from_raw(raw: &RawFrame) -> Result<Option<Frame>, DecodeError> {
        let p = &raw.payload[..];
        Ok(Some(match raw.kind {
            kind::HAPROXY_HELLO => Frame::HaproxyHello(decode_kv_list(p)?),
            kind::HAPROXY_DISCONNECT => Frame::HaproxyDisconnect(decode_kv_list(p)?),
            kind::NOTIFY => Frame::Notify {
                stream_id: raw.stream_id,
                frame_id: raw.frame_id,
                messages: decode_messages(p)?,
            },
            kind::AGENT_HELLO => Frame::AgentHello(decode_kv_list(p)?),
            kind::AGENT_DISCONNECT => Frame::AgentDisconnect(decode_kv_list(p)?),
            kind::ACK => Frame::Ack {
                stream_id: raw.stream_id,
                frame_id: raw.frame_id,
                actions: decode_actions(p)?,
            },
            _ => return Ok(None),
        }))
    }

    /// Builds an AGENT-DISCONNECT with a status and its message.
    pub fn agent_disconnect(status: Status, message: &str) -> Frame {
        Frame::AgentDisconnect(vec![
            ("status-code".into(), TypedData::Uint32(status.code())),
            ("message".into(), TypedData::str(message)),
        ])
    }

    fn header(&self) -> (u8, u64, u64) {
        match self {
            Frame::HaproxyHello(_) => (kind::HAPROXY_HELLO, 0, 0),
            Frame::HaproxyDisconnect(_) => (kind::HAPROXY_DISCONNECT, 0, 0),
            Frame::Notify {
                stream_id,
                frame_id,
                ..
            } => (kind::NOTIFY, *stream_id, *frame_id),
            Frame::AgentHello(_) => (kind::AGENT_HELLO, 0, 0),
            Frame::AgentDisconnect(_) => (kind::AGENT_DISCONNECT, 0, 0),
            Frame::Ack {
                stream_id,
                frame_id,
                ..
            } => (kind::ACK, *stream_id, *frame_id),
        }
    }

    /// Appends the whole frame (length prefix included, FIN set).
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        let (k, sid, fid) = self.header();
        out.put_u8(k);
        out.put_u32(FLAG_FIN);
        put_varint(out, sid);
        put_varint(out, fid);
        match self {
            Frame::HaproxyHello(kv)
            | Frame::HaproxyDisconnect(kv)
            | Frame::AgentHello(kv)
            | Frame::AgentDisconnect(kv) => encode_kv_list(kv, out),
            Frame::Notify { messages, .. } => encode_messages(messages, out),
            Frame::Ack { actions, .. } => encode_actions(actions, out),
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The frame's bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.to_vec()
    }
}

/// Parses the part of a frame after its length prefix.
pub fn parse_frame_body(mut body: &[u8]) -> Result<RawFrame, DecodeError> {
    let len = body.len() as u32;
    if body.len() < 7 {
        return Err(DecodeError::TooShort(len));
    }
    let kind = body.get_u8();
    let flags = body.get_u32();
    let stream_id = get_varint(&mut body)?;
    let frame_id = get_varint(&mut body)?;
    Ok(RawFrame {
        kind,
        flags,
        stream_id,
        frame_id,
        payload: body.to_vec(),
    })
}

/// tokio-util codec cutting SPOP frames out of a byte stream ("check, then parse": a
/// partial frame is `Ok(None)`, a frame above `max_frame_size` is an error before its
/// bytes are even buffered).
#[derive(Debug, Clone)]
pub struct SpopCodec {
    /// Largest frame accepted (length prefix excluded).
    pub max_frame_size: u32,
}

impl SpopCodec {
    /// A codec accepting frames up to `max_frame_size` bytes.
    pub fn new(max_frame_size: u32) -> Self {
        SpopCodec { max_frame_size }
    }
}

impl Decoder for SpopCodec {
    type Item = RawFrame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, DecodeError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if len > self.max_frame_size {
            return Err(DecodeError::TooBig {
                len,
                max: self.max_frame_size,
            });
        }
        if len < 7 {
            return Err(DecodeError::TooShort(len));
        }
        let total = 4 + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total);
        parse_frame_body(&frame[4..]).map(Some)
    }
}

impl Encoder<&Frame> for SpopCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        item.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, n);
        v
    }

    #[test]
    fn varints_match_the_reference_vectors() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (239, &[0xef]),
            (240, &[0xf0, 0x00]),
            (241, &[0xf1, 0x00]),
            (255, &[0xff, 0x00]),
            (256, &[0xf0, 0x01]),
            (404, &[0xf4, 0x0a]),
            (2287, &[0xff, 0x7f]),
            (2288, &[0xf0, 0x80, 0x00]),
            (16380, &[0xfc, 0xf0, 0x06]),
            (18082, &[0xf2, 0xdb, 0x07]),
            (264432, &[0xf0, 0x80, 0x80, 0x00]),
            (4294967295, &[0xff, 0xf0, 0xfe, 0xfe, 0x7e]),
            (
                (-5i64) as u64,
                &[0xfb, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e],
            ),
        ];
        for (n, bytes) in cases {
            assert_eq!(enc(*n), *bytes, "encoding {n}");
            assert_eq!(varint_len(*n), bytes.len(), "length of {n}");
            let mut s = *bytes;
            assert_eq!(get_varint(&mut s).unwrap(), *n, "decoding {n}");
            assert!(s.is_empty());
        }
    }

    #[test]
    fn the_largest_varint_round_trips_and_one_more_byte_overflows() {
        let b = enc(u64::MAX);
        let mut s = &b[..];
        assert_eq!(get_varint(&mut s).unwrap(), u64::MAX);
        let mut long = vec![0xffu8];
        long.extend(std::iter::repeat_n(0xff, 12));
        long.push(0x01);
        assert_eq!(get_varint(&mut &long[..]), Err(DecodeError::VarintOverflow));
    }

    #[test]
    fn a_frame_announcing_more_than_the_maximum_is_too_big() {
        let mut c = SpopCodec::new(256);
        let mut b = BytesMut::from(&[0u8, 0, 1, 1][..]);
        assert_eq!(
            c.decode(&mut b).unwrap_err().status(),
            Status::TooBig,
            "257 > 256"
        );
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let f = Frame::agent_disconnect(Status::Normal, "bye").to_bytes();
        let mut c = SpopCodec::new(DEFAULT_FRAME_SIZE);
        let mut b = BytesMut::from(&f[..f.len() - 1]);
        assert_eq!(c.decode(&mut b).unwrap(), None);
        b.extend_from_slice(&f[f.len() - 1..]);
        let raw = c.decode(&mut b).unwrap().unwrap();
        assert_eq!(raw.kind, kind::AGENT_DISCONNECT);
        assert!(b.is_empty());
    }
}

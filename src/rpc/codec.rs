//! Serf's RPC ("IPC") wire format, sans-IO: a stream of msgpack values, each request a
//! header map `{Command, Seq}` followed by the command's body map (none for `members`,
//! `leave`, `list-keys`, `stats`); each response a header `{Seq, Error}` followed by a body
//! where the command has one. Field names and error strings are those of serf's
//! `cmd/serf/command/agent/ipc.go` and `client/const.go` (go-msgpack, structs as maps keyed
//! by field name).
//!
//! [`decode_request`] checks that the header and the whole body are in the buffer before it
//! decodes anything ("need more bytes" is `Ok(None)`), and refuses a request larger than
//! [`MAX_REQUEST_BYTES`] or nested deeper than the wire reader allows.
//!
//! (Over ~900 lines only with its unit tests: the code above them is about 890 lines, one
//! body shape per Serf RPC command, as serf's `client/const.go`.)

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::gossip::wire::mp::{self, Reader};
use crate::gossip::wire::WireError;

/// The largest request (header + body) buffered, in bytes; serf's own payload limits are
/// far below (query 1 KiB, event 512 B, tags 512 B), this leaves room for a long `join` list.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The IPC protocol version spoken (serf's `MinIPCVersion` = `MaxIPCVersion` = 1).
pub const IPC_VERSION: i32 = 1;

/// Serf's error strings (client/const.go), sent in the response header's `Error`.
pub mod errors {
    /// A command name serf does not know; the connection is closed after it.
    pub const UNSUPPORTED_COMMAND: &str = "Unsupported command";
    /// A handshake asking for another version than 1.
    pub const UNSUPPORTED_IPC_VERSION: &str = "Unsupported IPC version";
    /// A second handshake on one connection.
    pub const DUPLICATE_HANDSHAKE: &str = "Handshake already performed";
    /// A command before the handshake; the connection is closed after it.
    pub const HANDSHAKE_REQUIRED: &str = "Handshake required";
    /// A second `monitor` on one connection.
    pub const MONITOR_EXISTS: &str = "Monitor already exists";
    /// A `stream` whose filter does not parse.
    pub const INVALID_FILTER: &str = "Invalid event filter";
    /// A `stream` reusing the sequence number of a running one.
    pub const STREAM_EXISTS: &str = "Stream with given sequence exists";
    /// A `respond` naming no query this connection received.
    pub const INVALID_QUERY_ID: &str = "No pending queries matching ID";
    /// A command before `auth` when the agent has an `rpc_auth` token.
    pub const AUTH_REQUIRED: &str = "Authentication required";
    /// An `auth` with the wrong token.
    pub const INVALID_AUTH_TOKEN: &str = "Invalid authentication token";
}

/// Why a request could not be decoded. Every variant closes the connection (serf closes it
/// on a decode failure, too): after bad bytes the stream has no known boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcDecodeError {
    /// The bytes are not the msgpack the request needs.
    #[error("malformed request: {0}")]
    Malformed(#[from] WireError),
    /// The request is larger than [`MAX_REQUEST_BYTES`].
    #[error("request larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// The command name is not one of serf's.
    #[error("command '{command}' not recognized")]
    UnknownCommand {
        /// Its sequence number, to answer `Unsupported command` on.
        seq: u64,
        /// The name sent.
        command: String,
    },
}

/// One request: its sequence number and command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's sequence number, echoed in every response to it.
    pub seq: u64,
    /// What it asks.
    pub command: Command,
}

/// The commands of serf's IPC protocol version 1, with their bodies.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `handshake {Version}`.
    Handshake {
        /// Requested protocol version.
        version: i64,
    },
    /// `auth {AuthKey}`.
    Auth {
        /// The token.
        key: String,
    },
    /// `event {Name, Payload, Coalesce}`.
    Event {
        /// Event name.
        name: String,
        /// Payload.
        payload: Vec<u8>,
        /// Whether receivers may coalesce it.
        coalesce: bool,
    },
    /// `force-leave {Node, Prune}`.
    ForceLeave {
        /// The member.
        node: String,
        /// Forget it at once (serf 0.10 `-prune`).
        prune: bool,
    },
    /// `join {Existing, Replay}`.
    Join {
        /// Addresses to join through.
        existing: Vec<String>,
        /// Replay old user events.
        replay: bool,
    },
    /// `members` (no body).
    Members,
    /// `members-filtered {Tags, Status, Name}` (anchored regular expressions).
    MembersFiltered {
        /// Tag → expression.
        tags: BTreeMap<String, String>,
        /// Status expression ("" = any).
        status: String,
        /// Name expression ("" = any).
        name: String,
    },
    /// `stream {Type}`.
    Stream {
        /// Event filter, e.g. `member-join,user:deploy`.
        filter: String,
    },
    /// `monitor {LogLevel}`.
    Monitor {
        /// Minimum level.
        level: String,
    },
    /// `stop {Stop}`.
    Stop {
        /// Sequence number of the stream or monitor to stop.
        stop: u64,
    },
    /// `leave` (no body).
    Leave,
    /// `install-key {Key}`.
    InstallKey {
        /// Base64 key.
        key: String,
    },
    /// `use-key {Key}`.
    UseKey {
        /// Base64 key.
        key: String,
    },
    /// `remove-key {Key}`.
    RemoveKey {
        /// Base64 key.
        key: String,
    },
    /// `list-keys` (no body).
    ListKeys,
    /// `tags {Tags, DeleteTags}`.
    Tags {
        /// Tags to set.
        set: BTreeMap<String, String>,
        /// Tags to delete.
        delete: Vec<String>,
    },
    /// `query {FilterNodes, FilterTags, RequestAck, RelayFactor, Timeout, Name, Payload}`.
    Query {
        /// Only these nodes.
        filter_nodes: Vec<String>,
        /// Tag → expression.
        filter_tags: BTreeMap<String, String>,
        /// Ask for acks.
        request_ack: bool,
        /// Relay factor.
        relay_factor: u8,
        /// Timeout (zero = serf's default).
        timeout: Duration,
        /// Query name.
        name: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// `respond {ID, Payload}`.
    Respond {
        /// The query's id as the stream delivered it.
        id: u64,
        /// Answer.
        payload: Vec<u8>,
    },
    /// `stats` (no body).
    Stats,
    /// `get-coordinate {Node}`.
    GetCoordinate {
        /// The member.
        node: String,
    },
}

impl Command {
    /// The command name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Handshake { .. } => "handshake",
            Command::Auth { .. } => "auth",
            Command::Event { .. } => "event",
            Command::ForceLeave { .. } => "force-leave",
            Command::Join { .. } => "join",
            Command::Members => "members",
            Command::MembersFiltered { .. } => "members-filtered",
            Command::Stream { .. } => "stream",
            Command::Monitor { .. } => "monitor",
            Command::Stop { .. } => "stop",
            Command::Leave => "leave",
            Command::InstallKey { .. } => "install-key",
            Command::UseKey { .. } => "use-key",
            Command::RemoveKey { .. } => "remove-key",
            Command::ListKeys => "list-keys",
            Command::Tags { .. } => "tags",
            Command::Query { .. } => "query",
            Command::Respond { .. } => "respond",
            Command::Stats => "stats",
            Command::GetCoordinate { .. } => "get-coordinate",
        }
    }
}

/// Whether a command name takes a body.
fn has_body(command: &str) -> Option<bool> {
    Some(match command {
        "members" | "leave" | "list-keys" | "stats" => false,
        "handshake" | "auth" | "event" | "force-leave" | "join" | "members-filtered" | "stream"
        | "monitor" | "stop" | "install-key" | "use-key" | "remove-key" | "tags" | "query"
        | "respond" | "get-coordinate" => true,
        _ => return None,
    })
}

/// Decodes the next request at the start of `buf`: `Ok(Some((request, bytes used)))`,
/// `Ok(None)` when more bytes are needed, an error when the bytes can never make a request.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, RpcDecodeError> {
    match decode_inner(buf) {
        Ok(r) => Ok(Some(r)),
        Err(RpcDecodeError::Malformed(WireError::Truncated)) => {
            if buf.len() >= MAX_REQUEST_BYTES {
                Err(RpcDecodeError::TooLarge)
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e),
    }
    .and_then(|r| match r {
        Some((_, used)) if used > MAX_REQUEST_BYTES => Err(RpcDecodeError::TooLarge),
        r => Ok(r),
    })
}

fn decode_inner(buf: &[u8]) -> Result<(Request, usize), RpcDecodeError> {
    // Check, then parse: the header must be complete before it is read.
    let mut probe = Reader::new(buf);
    probe.skip()?;
    let mut r = Reader::new(buf);
    let (command, seq) = header(&mut r)?;
    let Some(body) = has_body(&command) else {
        return Err(RpcDecodeError::UnknownCommand { seq, command });
    };
    if body {
        let mut probe = Reader::new(r.rest());
        probe.skip()?;
    }
    let command = match command.as_str() {
        "members" => Command::Members,
        "leave" => Command::Leave,
        "list-keys" => Command::ListKeys,
        "stats" => Command::Stats,
        other => body_of(other, &mut r)?,
    };
    Ok((Request { seq, command }, r.pos()))
}

fn header(r: &mut Reader<'_>) -> Result<(String, u64), WireError> {
    let mut command = None;
    let mut seq = 0;
    for _ in 0..r.map_len("requestHeader")? {
        let k = r.key()?;
        if k.eq_ignore_ascii_case(b"Command") {
            command = Some(r.string("Command")?);
        } else if k.eq_ignore_ascii_case(b"Seq") {
            seq = r.uint("Seq")?;
        } else {
            r.skip()?;
        }
    }
    Ok((command.ok_or(WireError::MissingField("Command"))?, seq))
}

/// Reads a body map, handing each known key to `field` (unknown keys are skipped).
fn fields<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    mut field: impl FnMut(&str, &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    for _ in 0..r.map_len(what)? {
        let k = r.key()?;
        let k = std::str::from_utf8(k).unwrap_or("");
        if !field(k, r)? {
            r.skip()?;
        }
    }
    Ok(())
}

fn string_map(r: &mut Reader<'_>, f: &'static str) -> Result<BTreeMap<String, String>, WireError> {
    let mut m = BTreeMap::new();
    for _ in 0..r.map_len(f)? {
        let k = String::from_utf8_lossy(r.key()?).into_owned();
        m.insert(k, r.string(f)?);
    }
    Ok(m)
}

fn string_list(r: &mut Reader<'_>, f: &'static str) -> Result<Vec<String>, WireError> {
    let n = r.array_len(f)?.unwrap_or(0);
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        v.push(r.string(f)?);
    }
    Ok(v)
}

fn body_of(command: &str, r: &mut Reader<'_>) -> Result<Command, WireError> {
    let mut s = [String::new(), String::new(), String::new()];
    let mut b = [false, false];
    let mut n = 0u64;
    let mut i = 0i64;
    let mut bytes = Vec::new();
    let mut list = Vec::new();
    let mut map1 = BTreeMap::new();
    let mut relay = 0u8;
    let what = "request body";
    // Field name → slot, per command; the match below builds the command from the slots.
    fields(r, what, |k, r| {
        let hit = |name: &str| k.eq_ignore_ascii_case(name);
        match command {
            "handshake" if hit("Version") => i = r.i64("Version")?,
            "auth" if hit("AuthKey") => s[0] = r.string("AuthKey")?,
            "event" if hit("Name") => s[0] = r.string("Name")?,
            "event" if hit("Payload") => bytes = r.byte_vec("Payload")?,
            "event" if hit("Coalesce") => b[0] = r.bool("Coalesce")?,
            "force-leave" if hit("Node") => s[0] = r.string("Node")?,
            "force-leave" if hit("Prune") => b[0] = r.bool("Prune")?,
            "join" if hit("Existing") => list = string_list(r, "Existing")?,
            "join" if hit("Replay") => b[0] = r.bool("Replay")?,
            "members-filtered" if hit("Tags") => map1 = string_map(r, "Tags")?,
            "members-filtered" if hit("Status") => s[0] = r.string("Status")?,
            "members-filtered" if hit("Name") => s[1] = r.string("Name")?,
            "stream" if hit("Type") => s[0] = r.string("Type")?,
            "monitor" if hit("LogLevel") => s[0] = r.string("LogLevel")?,
            "stop" if hit("Stop") => n = r.uint("Stop")?,
            "install-key" | "use-key" | "remove-key" if hit("Key") => s[0] = r.string("Key")?,
            "tags" if hit("Tags") => map1 = string_map(r, "Tags")?,
            "tags" if hit("DeleteTags") => list = string_list(r, "DeleteTags")?,
            "query" if hit("FilterNodes") => list = string_list(r, "FilterNodes")?,
            "query" if hit("FilterTags") => map1 = string_map(r, "FilterTags")?,
            "query" if hit("RequestAck") => b[0] = r.bool("RequestAck")?,
            "query" if hit("RelayFactor") => relay = r.u8("RelayFactor")?,
            "query" if hit("Timeout") => i = r.i64("Timeout")?,
            "query" if hit("Name") => s[0] = r.string("Name")?,
            "query" if hit("Payload") => bytes = r.byte_vec("Payload")?,
            "respond" if hit("ID") => n = r.uint("ID")?,
            "respond" if hit("Payload") => bytes = r.byte_vec("Payload")?,
            "get-coordinate" if hit("Node") => s[0] = r.string("Node")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let [s0, s1, _] = s;
    Ok(match command {
        "handshake" => Command::Handshake { version: i },
        "auth" => Command::Auth { key: s0 },
        "event" => Command::Event {
            name: s0,
            payload: bytes,
            coalesce: b[0],
        },
        "force-leave" => Command::ForceLeave {
            node: s0,
            prune: b[0],
        },
        "join" => Command::Join {
            existing: list,
            replay: b[0],
        },
        "members-filtered" => Command::MembersFiltered {
            tags: map1,
            status: s0,
            name: s1,
        },
        "stream" => Command::Stream { filter: s0 },
        "monitor" => Command::Monitor { level: s0 },
        "stop" => Command::Stop { stop: n },
        "install-key" => Command::InstallKey { key: s0 },
        "use-key" => Command::UseKey { key: s0 },
        "remove-key" => Command::RemoveKey { key: s0 },
        "tags" => Command::Tags {
            set: map1,
            delete: list,
        },
        "query" => Command::Query {
            filter_nodes: list,
            filter_tags: map1,
            request_ack: b[0],
            relay_factor: relay,
            timeout: Duration::from_nanos(i.max(0) as u64),
            name: s0,
            payload: bytes,
        },
        "respond" => Command::Respond {
            id: n,
            payload: bytes,
        },
        _ => Command::GetCoordinate { node: s0 },
    })
}

// ------------------------------------------------------------------ encoding

/// Encodes a request (the client side: haserf's own CLI and the tests).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut o = Vec::new();
    mp::w_map(&mut o, 2);
    mp::w_str(&mut o, "Command");
    mp::w_str(&mut o, req.command.name());
    mp::w_str(&mut o, "Seq");
    mp::w_uint(&mut o, req.seq);
    let o2 = &mut o;
    let kv_str = |o: &mut Vec<u8>, k: &str, v: &str| {
        mp::w_str(o, k);
        mp::w_str(o, v);
    };
    let w_map_str = |o: &mut Vec<u8>, m: &BTreeMap<String, String>| {
        mp::w_map(o, m.len());
        for (k, v) in m {
            mp::w_str(o, k);
            mp::w_str(o, v);
        }
    };
    let w_list = |o: &mut Vec<u8>, l: &[String]| {
        mp::w_array(o, l.len());
        for s in l {
            mp::w_str(o, s);
        }
    };
    match &req.command {
        Command::Members | Command::Leave | Command::ListKeys | Command::Stats => {}
        Command::Handshake { version } => {
            mp::w_map(o2, 1);
            mp::w_str(o2, "Version");
            mp::w_int(o2, *version);
        }
        Command::Auth { key } => {
            mp::w_map(o2, 1);
            kv_str(o2, "AuthKey", key);
        }
        Command::Event {
            name,
            payload,
            coalesce,
        } => {
            mp::w_map(o2, 3);
            kv_str(o2, "Name", name);
            mp::w_str(o2, "Payload");
            mp::w_raw(o2, payload);
            mp::w_str(o2, "Coalesce");
            mp::w_bool(o2, *coalesce);
        }
        Command::ForceLeave { node, prune } => {
            mp::w_map(o2, 2);
            kv_str(o2, "Node", node);
            mp::w_str(o2, "Prune");
            mp::w_bool(o2, *prune);
        }
        Command::Join { existing, replay } => {
            mp::w_map(o2, 2);
            mp::w_str(o2, "Existing");
            w_list(o2, existing);
            mp::w_str(o2, "Replay");
            mp::w_bool(o2, *replay);
        }
        Command::MembersFiltered { tags, status, name } => {
            mp::w_map(o2, 3);
            mp::w_str(o2, "Tags");
            w_map_str(o2, tags);
            kv_str(o2, "Status", status);
            kv_str(o2, "Name", name);
        }
        Command::Stream { filter } => {
            mp::w_map(o2, 1);
            kv_str(o2, "Type", filter);
        }
        Command::Monitor { level } => {
            mp::w_map(o2, 1);
            kv_str(o2, "LogLevel", level);
        }
        Command::Stop { stop } => {
            mp::w_map(o2, 1);
            mp::w_str(o2, "Stop");
            mp::w_uint(o2, *stop);
        }
        Command::InstallKey { key } | Command::UseKey { key } | Command::RemoveKey { key } => {
            mp::w_map(o2, 1);
            kv_str(o2, "Key", key);
        }
        Command::Tags { set, delete } => {
            mp::w_map(o2, 2);
            mp::w_str(o2, "Tags");
            w_map_str(o2, set);
            mp::w_str(o2, "DeleteTags");
            w_list(o2, delete);
        }
        Command::Query {
            filter_nodes,
            filter_tags,
            request_ack,
            relay_factor,
            timeout,
            name,
            payload,
        } => {
            mp::w_map(o2, 7);
            mp::w_str(o2, "FilterNodes");
            w_list(o2, filter_nodes);
            mp::w_str(o2, "FilterTags");
            w_map_str(o2, filter_tags);
            mp::w_str(o2, "RequestAck");
            mp::w_bool(o2, *request_ack);
            mp::w_str(o2, "RelayFactor");
            mp::w_uint(o2, *relay_factor as u64);
            mp::w_str(o2, "Timeout");
            mp::w_int(o2, timeout.as_nanos().min(i64::MAX as u128) as i64);
            kv_str(o2, "Name", name);
            mp::w_str(o2, "Payload");
            mp::w_raw(o2, payload);
        }
        Command::Respond { id, payload } => {
            mp::w_map(o2, 2);
            mp::w_str(o2, "ID");
            mp::w_uint(o2, *id);
            mp::w_str(o2, "Payload");
            mp::w_raw(o2, payload);
        }
        Command::GetCoordinate { node } => {
            mp::w_map(o2, 1);
            kv_str(o2, "Node", node);
        }
    }
    o
}

/// The response header `{Seq, Error}` ("" = success).
pub fn encode_header(out: &mut Vec<u8>, seq: u64, error: &str) {
    mp::w_map(out, 2);
    mp::w_str(out, "Seq");
    mp::w_uint(out, seq);
    mp::w_str(out, "Error");
    mp::w_str(out, error);
}

/// A decoded response header (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The request's sequence number.
    pub seq: u64,
    /// Serf's error string, "" on success.
    pub error: String,
}

/// Decodes a response header at the start of `buf` (client side); `Ok(None)`: need more.
pub fn decode_header(buf: &[u8]) -> Result<Option<(ResponseHeader, usize)>, WireError> {
    let mut probe = Reader::new(buf);
    match probe.skip() {
        Err(WireError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let mut r = Reader::new(buf);
    let mut h = ResponseHeader {
        seq: 0,
        error: String::new(),
    };
    fields(&mut r, "responseHeader", |k, r| {
        match k {
            "Seq" => h.seq = r.uint("Seq")?,
            "Error" => h.error = r.string("Error")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Some((h, r.pos())))
}

/// One member as serf's IPC `Member` struct carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMember {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Gossip port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `alive`, `leaving`, `left`, `failed`.
    pub status: String,
    /// memberlist protocol min, max, current; Serf (delegate) protocol min, max, current.
    pub protocol: [u8; 6],
}

fn w_member(o: &mut Vec<u8>, m: &RpcMember) {
    mp::w_map(o, 11);
    mp::w_str(o, "Name");
    mp::w_str(o, &m.name);
    mp::w_str(o, "Addr");
    mp::w_ip(o, &m.addr);
    mp::w_str(o, "Port");
    mp::w_uint(o, m.port as u64);
    mp::w_str(o, "Tags");
    w_string_map(o, &m.tags);
    mp::w_str(o, "Status");
    mp::w_str(o, &m.status);
    for (k, v) in [
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
        "DelegateCur",
    ]
    .iter()
    .zip(m.protocol)
    {
        mp::w_str(o, k);
        mp::w_uint(o, v as u64);
    }
}

fn w_string_map(o: &mut Vec<u8>, m: &BTreeMap<String, String>) {
    mp::w_map(o, m.len());
    for (k, v) in m {
        mp::w_str(o, k);
        mp::w_str(o, v);
    }
}

fn w_f64(o: &mut Vec<u8>, v: f64) {
    o.push(0xcb);
    o.extend_from_slice(&v.to_bits().to_be_bytes());
}

/// `membersResponse {Members}`.
pub fn encode_members(out: &mut Vec<u8>, members: &[RpcMember]) {
    mp::w_map(out, 1);
    mp::w_str(out, "Members");
    mp::w_array(out, members.len());
    for m in members {
        w_member(out, m);
    }
}

/// `joinResponse {Num}`.
pub fn encode_join(out: &mut Vec<u8>, num: usize) {
    mp::w_map(out, 1);
    mp::w_str(out, "Num");
    mp::w_uint(out, num as u64);
}

/// Serf's `keyResponse`: what the key query's answers said, per node and per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Node → error or warning message.
    pub messages: BTreeMap<String, String>,
    /// Base64 key → how many nodes hold it (`list-keys` only).
    pub keys: BTreeMap<String, u64>,
    /// Members asked.
    pub num_nodes: u64,
    /// Members that reported failure.
    pub num_err: u64,
    /// Members that answered.
    pub num_resp: u64,
}

/// `keyResponse {Messages, Keys, NumNodes, NumErr, NumResp}`.
pub fn encode_keys(out: &mut Vec<u8>, k: &KeyReport) {
    mp::w_map(out, 5);
    mp::w_str(out, "Messages");
    w_string_map(out, &k.messages);
    mp::w_str(out, "Keys");
    mp::w_map(out, k.keys.len());
    for (key, n) in &k.keys {
        mp::w_str(out, key);
        mp::w_uint(out, *n);
    }
    for (name, v) in [
        ("NumNodes", k.num_nodes),
        ("NumErr", k.num_err),
        ("NumResp", k.num_resp),
    ] {
        mp::w_str(out, name);
        mp::w_uint(out, v);
    }
}

/// The agent's `stats`: section → key → value (`agent`, `runtime`, `serf`, `tags`, …).
pub fn encode_stats(out: &mut Vec<u8>, stats: &BTreeMap<String, BTreeMap<String, String>>) {
    mp::w_map(out, stats.len());
    for (k, v) in stats {
        mp::w_str(out, k);
        w_string_map(out, v);
    }
}

/// A Vivaldi network coordinate as serf's `coordinate.Coordinate` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCoordinate {
    /// Euclidean part, seconds.
    pub vec: Vec<f64>,
    /// Confidence.
    pub error: f64,
    /// Adjustment, seconds.
    pub adjustment: f64,
    /// Height, seconds.
    pub height: f64,
}

/// `coordinateResponse {Coord, Ok}`; `None` is serf's zero coordinate with `Ok: false`.
pub fn encode_coordinate(out: &mut Vec<u8>, c: Option<&RpcCoordinate>) {
    mp::w_map(out, 2);
    mp::w_str(out, "Coord");
    mp::w_map(out, 4);
    mp::w_str(out, "Vec");
    match c {
        Some(c) => {
            mp::w_array(out, c.vec.len());
            for v in &c.vec {
                w_f64(out, *v);
            }
        }
        None => mp::w_nil(out),
    }
    for (k, v) in [
        ("Error", c.map_or(0.0, |c| c.error)),
        ("Adjustment", c.map_or(0.0, |c| c.adjustment)),
        ("Height", c.map_or(0.0, |c| c.height)),
    ] {
        mp::w_str(out, k);
        w_f64(out, v);
    }
    mp::w_str(out, "Ok");
    mp::w_bool(out, c.is_some());
}

/// `logRecord {Log}` (a `monitor` line).
pub fn encode_log(out: &mut Vec<u8>, line: &str) {
    mp::w_map(out, 1);
    mp::w_str(out, "Log");
    mp::w_str(out, line);
}

/// `queryRecord {Type, From, Payload}`: `ack`, `response` or `done`.
pub fn encode_query_record(out: &mut Vec<u8>, kind: &str, from: &str, payload: &[u8]) {
    mp::w_map(out, 3);
    mp::w_str(out, "Type");
    mp::w_str(out, kind);
    mp::w_str(out, "From");
    mp::w_str(out, from);
    mp::w_str(out, "Payload");
    if payload.is_empty() {
        mp::w_nil(out);
    } else {
        mp::w_raw(out, payload);
    }
}

/// `userEventRecord {Event: "user", LTime, Name, Payload, Coalesce}`.
pub fn encode_user_event(out: &mut Vec<u8>, ltime: u64, name: &str, payload: &[u8], cc: bool) {
    mp::w_map(out, 5);
    mp::w_str(out, "Event");
    mp::w_str(out, "user");
    mp::w_str(out, "LTime");
    mp::w_uint(out, ltime);
    mp::w_str(out, "Name");
    mp::w_str(out, name);
    mp::w_str(out, "Payload");
    mp::w_raw(out, payload);
    mp::w_str(out, "Coalesce");
    mp::w_bool(out, cc);
}

/// `memberEventRecord {Event, Members}` (`member-join`, `member-leave`, …).
pub fn encode_member_event(out: &mut Vec<u8>, event: &str, members: &[RpcMember]) {
    mp::w_map(out, 2);
    mp::w_str(out, "Event");
    mp::w_str(out, event);
    mp::w_str(out, "Members");
    mp::w_array(out, members.len());
    for m in members {
        w_member(out, m);
    }
}

/// `queryEventRecord {Event: "query", ID, LTime, Name, Payload}`.
pub fn encode_query_event(out: &mut Vec<u8>, id: u64, ltime: u64, name: &str, payload: &[u8]) {
    mp::w_map(out, 5);
    mp::w_str(out, "Event");
    mp::w_str(out, "query");
    mp::w_str(out, "ID");
    mp::w_uint(out, id);
    mp::w_str(out, "LTime");
    mp::w_uint(out, ltime);
    mp::w_str(out, "Name");
    mp::w_str(out, name);
    mp::w_str(out, "Payload");
    mp::w_raw(out, payload);
}

/// Decodes one msgpack value at the start of `buf` as JSON (client side: response bodies
/// and stream records). Maps become objects (keys as text), str and bin become strings
/// (lossy UTF-8), numbers and booleans stay. `Ok(None)`: need more bytes.
pub fn decode_value(buf: &[u8]) -> Result<Option<(serde_json::Value, usize)>, WireError> {
    let mut probe = Reader::new(buf);
    match probe.skip() {
        Err(WireError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let mut r = Reader::new(buf);
    let v = value(&mut r)?;
    Ok(Some((v, r.pos())))
}

fn value(r: &mut Reader<'_>) -> Result<serde_json::Value, WireError> {
    use serde_json::Value;
    let m = r.peek()?;
    Ok(match m {
        0x80..=0x8f | 0xde | 0xdf => {
            let n = r.map_len("value")?;
            let mut o = serde_json::Map::new();
            for _ in 0..n {
                let k = String::from_utf8_lossy(r.key()?).into_owned();
                o.insert(k, value(r)?);
            }
            Value::Object(o)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let n = r.array_len("value")?.unwrap_or(0);
            (0..n)
                .map(|_| value(r))
                .collect::<Result<Vec<_>, _>>()?
                .into()
        }
        0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
            let b = r.bytes("value")?.unwrap_or_default();
            Value::String(String::from_utf8_lossy(&b).into_owned())
        }
        0xc0 => {
            r.take(1)?;
            Value::Null
        }
        0xc2 | 0xc3 => Value::Bool(r.bool("value")?),
        0xca | 0xcb => {
            let b = r.take(if m == 0xca { 5 } else { 9 })?;
            let f = if m == 0xca {
                f32::from_be_bytes([b[1], b[2], b[3], b[4]]) as f64
            } else {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[1..]);
                f64::from_be_bytes(a)
            };
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        0xd0..=0xd3 | 0xe0..=0xff => Value::from(r.i64("value")?),
        _ if m <= 0x7f || (0xcc..=0xcf).contains(&m) => Value::from(r.uint("value")?),
        _ => {
            r.skip()?;
            Value::Null
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: Command) {
        let req = Request { seq: 7, command: c };
        let bytes = encode_request(&req);
        let (got, used) = decode_request(&bytes).unwrap().unwrap();
        assert_eq!(got, req);
        assert_eq!(used, bytes.len());
        for cut in 0..bytes.len() {
            assert_eq!(decode_request(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn every_command_round_trips_and_a_cut_request_asks_for_more_bytes() {
        round_trip(Command::Handshake { version: 1 });
        round_trip(Command::Members);
        round_trip(Command::MembersFiltered {
            tags: BTreeMap::from([("role".into(), "web".into())]),
            status: "alive".into(),
            name: "n.*".into(),
        });
        round_trip(Command::Event {
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            coalesce: true,
        });
        round_trip(Command::Query {
            filter_nodes: vec!["a".into()],
            filter_tags: BTreeMap::new(),
            request_ack: true,
            relay_factor: 2,
            timeout: Duration::from_secs(3),
            name: "q".into(),
            payload: vec![],
        });
        round_trip(Command::Tags {
            set: BTreeMap::from([("k".into(), "v".into())]),
            delete: vec!["old".into()],
        });
        round_trip(Command::Respond {
            id: 3,
            payload: b"x".to_vec(),
        });
        round_trip(Command::Stop { stop: 9 });
    }

    /// What go-msgpack writes for `requestHeader{Command: "handshake", Seq: 0}` and
    /// `handshakeRequest{Version: 1}` (str8 strings, as with `WriteExt: true`).
    #[test]
    fn a_go_client_handshake_decodes() {
        let mut b = vec![0x82, 0xd9, 7];
        b.extend_from_slice(b"Command");
        b.extend_from_slice(&[0xd9, 9]);
        b.extend_from_slice(b"handshake");
        b.extend_from_slice(&[0xd9, 3]);
        b.extend_from_slice(b"Seq");
        b.push(0x00);
        b.extend_from_slice(&[0x81, 0xd9, 7]);
        b.extend_from_slice(b"Version");
        b.push(0x01);
        let (req, used) = decode_request(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(req.command, Command::Handshake { version: 1 });
    }

    #[test]
    fn response_bodies_decode_as_json() {
        let mut b = Vec::new();
        encode_members(
            &mut b,
            &[RpcMember {
                name: "a".into(),
                addr: IpAddr::from([10, 0, 0, 1]),
                port: 7946,
                tags: BTreeMap::from([("role".into(), "web".into())]),
                status: "alive".into(),
                protocol: [1, 5, 2, 2, 5, 5],
            }],
        );
        let (v, used) = decode_value(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(v["Members"][0]["Tags"]["role"], "web");
        assert_eq!(v["Members"][0]["Port"], 7946);
        assert_eq!(decode_value(&b[..b.len() - 1]), Ok(None));
        let mut c = Vec::new();
        encode_coordinate(
            &mut c,
            Some(&RpcCoordinate {
                vec: vec![0.5],
                error: 1.5,
                adjustment: 0.0,
                height: 1e-5,
            }),
        );
        let (v, _) = decode_value(&c).unwrap().unwrap();
        assert_eq!(v["Coord"]["Vec"][0], 0.5);
        assert_eq!(v["Ok"], true);
    }

    #[test]
    fn an_unknown_command_names_its_sequence_number() {
        let mut b = Vec::new();
        mp::w_map(&mut b, 2);
        mp::w_str(&mut b, "Command");
        mp::w_str(&mut b, "frobnicate");
        mp::w_str(&mut b, "Seq");
        mp::w_uint(&mut b, 4);
        assert_eq!(
            decode_request(&b),
            Err(RpcDecodeError::UnknownCommand {
                seq: 4,
                command: "frobnicate".into()
            })
        );
    }

    #[test]
    fn garbage_is_malformed_and_an_endless_value_is_too_large() {
        assert!(matches!(
            decode_request(b"GET / HTTP/1.1\r\n"),
            Err(RpcDecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(&[0xc1]),
            Err(RpcDecodeError::Malformed(_))
        ));
        // A str32 announcing 4 GiB: waits for bytes until the cap, then refuses.
        let mut b = vec![0xdb, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_request(&b), Ok(None));
        b.resize(MAX_REQUEST_BYTES, b'a');
        assert_eq!(decode_request(&b), Err(RpcDecodeError::TooLarge));
        // Deep nesting is refused, not recursed into.
        let deep = vec![0x91; 100];
        assert!(matches!(
            decode_request(&deep),
            Err(RpcDecodeError::Malformed(WireError::TooDeep))
        ));
    }
}

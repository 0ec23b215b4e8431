//! Typed memberlist and Serf messages, exactly the fields Go puts on the wire
//! (see shared/ref/gossip-wire.md §4 and §10). Encoding/decoding lives in sibling modules.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// memberlist message type numbers (first byte of a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Direct probe.
    Ping = 0,
    /// Ask a peer to probe a target (ping-req).
    IndirectPing = 1,
    /// Probe answer.
    AckResp = 2,
    /// Node suspected.
    Suspect = 3,
    /// Node alive / joined / refutation / meta update.
    Alive = 4,
    /// Node dead, or left when `node == from`.
    Dead = 5,
    /// Full state exchange (TCP).
    PushPull = 6,
    /// Container of several messages.
    Compound = 7,
    /// Delegate (Serf) payload.
    User = 8,
    /// LZW container.
    Compress = 9,
    /// Encrypted stream frame (TCP).
    Encrypt = 10,
    /// Negative answer to an indirect probe.
    NackResp = 11,
    /// CRC header.
    HasCrc = 12,
    /// Error string reply on a stream.
    Err = 13,
    /// Label header (newer memberlist only).
    HasLabel = 244,
}

/// `ping` (0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ping {
    /// Name of the probed node; a receiver drops a ping naming another node.
    pub node: String,
    /// Echoed in the ack.
    pub seq_no: u32,
    /// Where to send the ack (omitted when `None`).
    pub source_addr: Option<IpAddr>,
    /// Prober's name (omitted when empty).
    pub source_node: String,
    /// Port for the ack (omitted when 0).
    pub source_port: u16,
}

/// `indirectPing` (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndirectPing {
    /// Requester wants a nack if the target does not answer.
    pub nack: bool,
    /// Target's name.
    pub node: String,
    /// Target port.
    pub port: u16,
    /// Requester's sequence number.
    pub seq_no: u32,
    /// Where to send ack/nack (omitted when `None`).
    pub source_addr: Option<IpAddr>,
    /// Requester's name (omitted when empty).
    pub source_node: String,
    /// Requester's port (omitted when 0).
    pub source_port: u16,
    /// Target IP.
    pub target: IpAddr,
}

/// `ackResp` (2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Sequence number of the ping answered.
    pub seq_no: u32,
    /// Ping-delegate payload (Serf: 0x01 + coordinate); `None` is msgpack nil.
    pub payload: Option<Vec<u8>>,
}

/// `nackResp` (11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack {
    /// Sequence number of the indirect ping answered.
    pub seq_no: u32,
}

/// `suspect` (3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// Incarnation of the accused node.
    pub incarnation: u32,
    /// Accused node.
    pub node: String,
    /// Who raised it.
    pub from: String,
}

/// `dead` (5). `from == node` means a voluntary leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    /// Incarnation of the node.
    pub incarnation: u32,
    /// The node.
    pub node: String,
    /// Who declared it.
    pub from: String,
}

/// The six protocol-version bytes of alive messages and node states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vsn {
    /// Lowest memberlist protocol understood.
    pub pmin: u8,
    /// Highest memberlist protocol understood.
    pub pmax: u8,
    /// memberlist protocol spoken.
    pub pcur: u8,
    /// Lowest Serf protocol understood.
    pub dmin: u8,
    /// Highest Serf protocol understood.
    pub dmax: u8,
    /// Serf protocol spoken.
    pub dcur: u8,
}

impl Vsn {
    /// What a stock Serf agent advertises: `[1, 5, 2, 2, 5, 5]`.
    pub const SERF: Vsn = Vsn {
        pmin: 1,
        pmax: 5,
        pcur: 2,
        dmin: 2,
        dmax: 5,
        dcur: 5,
    };

    /// The wire form: 6 raw bytes.
    pub fn to_bytes(self) -> [u8; 6] {
        [
            self.pmin, self.pmax, self.pcur, self.dmin, self.dmax, self.dcur,
        ]
    }
}

/// `alive` (4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alive {
    /// Must be > 0.
    pub incarnation: u32,
    /// Node name.
    pub node: String,
    /// Advertise IP.
    pub addr: IpAddr,
    /// Advertise port.
    pub port: u16,
    /// Delegate metadata (Serf tags, see [`super`] tag codec), ≤ 512 bytes.
    pub meta: Vec<u8>,
    /// Protocol versions. `None` when the sender sent none (empty `Vsn`).
    pub vsn: Option<Vsn>,
}

/// Node state in a push/pull (`State` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStateKind {
    /// 0
    Alive,
    /// 1
    Suspect,
    /// 2
    Dead,
    /// 3
    Left,
}

/// One node state of a push/pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNodeState {
    /// Node name.
    pub name: String,
    /// Advertise IP.
    pub addr: IpAddr,
    /// Advertise port.
    pub port: u16,
    /// Delegate metadata.
    pub meta: Vec<u8>,
    /// Incarnation.
    pub incarnation: u32,
    /// State.
    pub state: NodeStateKind,
    /// Protocol versions (`None` when empty on the wire).
    pub vsn: Option<Vsn>,
}

/// A whole push/pull (header + node states + delegate user state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPull {
    /// Sent by a joining node (and echoed by the seed).
    pub join: bool,
    /// Every node the sender knows, itself included.
    pub nodes: Vec<PushNodeState>,
    /// Delegate state (Serf: 0x02 + msgpack [`SerfPushPull`]); empty when none.
    pub user_state: Vec<u8>,
}

/// A memberlist-level message (after unwrapping label/encryption/CRC/compress/compound).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// 0
    Ping(Ping),
    /// 1
    IndirectPing(IndirectPing),
    /// 2
    Ack(Ack),
    /// 3
    Suspect(Suspect),
    /// 4
    Alive(Alive),
    /// 5
    Dead(Dead),
    /// 6 (streams only)
    PushPull(PushPull),
    /// 8: raw delegate bytes (for Serf: serf type byte + msgpack body)
    User(Vec<u8>),
    /// 11
    Nack(Nack),
    /// 13 (streams only)
    Err(String),
}

// ---------------------------------------------------------------- Serf layer

/// Serf message type numbers (first byte of a memberlist user message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SerfMessageType {
    /// Leave intent.
    Leave = 0,
    /// Join intent.
    Join = 1,
    /// Push/pull user state.
    PushPull = 2,
    /// User event.
    UserEvent = 3,
    /// Query.
    Query = 4,
    /// Query response (or ack).
    QueryResponse = 5,
    /// `_serf_conflict` answer payload.
    ConflictResponse = 6,
    /// Key request payload.
    KeyRequest = 7,
    /// Key response payload.
    KeyResponse = 8,
    /// Relay wrapper.
    Relay = 9,
}

/// Leave intent (0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveIntent {
    /// Member clock.
    pub ltime: u64,
    /// Leaving node.
    pub node: String,
    /// Prune (force-leave -prune).
    pub prune: bool,
}

/// Join intent (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinIntent {
    /// Member clock.
    pub ltime: u64,
    /// Joining node.
    pub node: String,
}

/// One user event as stored in the push/pull event ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingEvent {
    /// Event name.
    pub name: String,
    /// Event payload.
    pub payload: Vec<u8>,
}

/// A non-empty slot of the push/pull event ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSlot {
    /// Event clock of the slot.
    pub ltime: u64,
    /// Events with that clock.
    pub events: Vec<RingEvent>,
}

/// Serf push/pull user state (2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SerfPushPull {
    /// Member clock.
    pub ltime: u64,
    /// Status time of every member known.
    pub status_ltimes: BTreeMap<String, u64>,
    /// Names of members in state left.
    pub left_members: Vec<String>,
    /// Event clock.
    pub event_ltime: u64,
    /// Event ring (512 slots on the Go side, mostly `None`).
    pub events: Vec<Option<RingSlot>>,
    /// Query clock.
    pub query_ltime: u64,
}

/// User event (3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    /// Event clock.
    pub ltime: u64,
    /// Name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Receivers may coalesce.
    pub cc: bool,
}

/// Query flag: responders must ack.
pub const QUERY_FLAG_ACK: u32 = 1;
/// Query flag: do not re-gossip.
pub const QUERY_FLAG_NO_BROADCAST: u32 = 2;

/// Query (4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Query clock.
    pub ltime: u64,
    /// Query id.
    pub id: u32,
    /// Where responses go.
    pub addr: IpAddr,
    /// Where responses go.
    pub port: u16,
    /// Originator.
    pub source_node: String,
    /// Each: filter type byte + msgpack (0 = node names, 1 = tag regex). Empty = nil.
    pub filters: Vec<Vec<u8>>,
    /// [`QUERY_FLAG_ACK`], [`QUERY_FLAG_NO_BROADCAST`].
    pub flags: u32,
    /// How many extra relays responders use.
    pub relay_factor: u8,
    /// Timeout in nanoseconds.
    pub timeout_ns: i64,
    /// Name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Query response flag: this is an ack.
pub const QUERY_RESPONSE_FLAG_ACK: u32 = 1;

/// Query response or ack (5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResponse {
    /// Query clock of the query answered.
    pub ltime: u64,
    /// Query id.
    pub id: u32,
    /// Responder.
    pub from: String,
    /// [`QUERY_RESPONSE_FLAG_ACK`] or 0.
    pub flags: u32,
    /// Response payload; `None` (nil) for acks.
    pub payload: Option<Vec<u8>>,
}

/// Relay header (9): the destination of the wrapped Serf message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Destination IP.
    pub dest_addr: IpAddr,
    /// Destination port.
    pub dest_port: u16,
    /// Destination zone (IPv6; usually empty).
    pub dest_zone: String,
    /// Destination node name.
    pub dest_name: String,
    /// The complete inner Serf message (type byte + body).
    pub inner: Vec<u8>,
}

/// A Serf-level message (the payload of a memberlist user message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerfMessage {
    /// 0
    Leave(LeaveIntent),
    /// 1
    Join(JoinIntent),
    /// 2
    PushPull(SerfPushPull),
    /// 3
    UserEvent(UserEvent),
    /// 4
    Query(Query),
    /// 5
    QueryResponse(QueryResponse),
    /// 9
    Relay(Relay),
}

/// Serf's view of a member inside a `_serf_conflict` answer (6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictMember {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Serf status number (0 none, 1 alive, 2 leaving, 3 left, 4 failed).
    pub status: i64,
    /// Protocol versions.
    pub vsn: Vsn,
}

/// Key request payload (7) of the internal key queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// Raw key bytes (empty for list-keys).
    pub key: Vec<u8>,
}

/// Key response payload (8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyResponse {
    /// Success.
    pub result: bool,
    /// Error or info message.
    pub message: String,
    /// Base64 keys (list-keys only; `None` = nil).
    pub keys: Option<Vec<String>>,
    /// Base64 primary key (list-keys only).
    pub primary_key: String,
}

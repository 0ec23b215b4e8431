//! The JSON shapes the status socket, the CLI clients, the Lua companion and the SPOE
//! agent share (DESIGN.md "Interfaces"). Field names are a contract: extend, never rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Serf member status as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Alive (possibly suspected by the failure detector; see [`MemberView::suspect`]).
    Alive,
    /// Announced a graceful leave, not gone yet.
    Leaving,
    /// Left gracefully.
    Left,
    /// Failed (declared dead by the failure detector).
    Failed,
}

impl MemberStatus {
    /// The lowercase name used on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// One member, as `haserf members --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Advertised IP address.
    pub addr: String,
    /// Advertised gossip port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Status.
    pub status: MemberStatus,
    /// True while the failure detector suspects the member (extension; status stays alive).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
}

/// Tags as `k=v,k=v`, sorted by key: the format of the SPOE variables `node_tags` and
/// `server_tags` and of the `member-tags` map.
pub fn tags_string(tags: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `{"members":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MembersReply {
    /// Every member known, this node included.
    pub members: Vec<MemberView>,
}

/// Administrative state of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// In rotation.
    Ready,
    /// Existing sessions finish, no new ones.
    Drain,
    /// Out of rotation.
    Maint,
}

/// One slot, as `haserf slots --format json` (and `haserf verify --format json`) print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// Backend name.
    pub backend: String,
    /// Slot (server) name, e.g. `web3`.
    pub slot: String,
    /// Member in the slot; `null` when free (and always from `verify`).
    pub member: Option<String>,
    /// `IP:PORT` of the slot; `null` when free.
    pub addr: Option<String>,
    /// Administrative state.
    pub state: SlotState,
    /// HAProxy's own status string (`UP`, `DOWN`, `MAINT`, `DRAIN`, `UP 1/3`, …).
    pub haproxy_status: String,
}

/// `{"slots":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotsReply {
    /// Every slot of every managed backend.
    pub slots: Vec<SlotView>,
}

/// A request on the status socket: one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Members.
    Members,
    /// Slots.
    Slots,
    /// Status summary.
    Status,
    /// Graceful leave.
    Leave,
    /// Prometheus text.
    Metrics,
}

/// Optional fields of a request line, next to `"cmd"` (extensions of DESIGN.md's status
/// socket protocol; a line without them gets the plain reply).
///
/// - `"used":true` (`slots`): list only the slots holding a member; the free ones are
///   counted per backend in the reply's `"free"` object instead of listed.
/// - `"offset":N` and/or `"max_bytes":B` (`members`, `slots`): one page of the list,
///   starting at entry N, ending before the reply line would exceed B bytes (at least one
///   entry per page); the reply adds `"total"` (entries in the whole list) and, when more
///   follow, `"next"` (the offset of the next page). Readers with a small buffer (HAProxy's
///   Lua sockets read one line into one `tune.bufsize` buffer) page through large lists.
/// - `"max_bytes":B` (`status`): the largest fields are left out until the reply fits, and
///   listed in `"omitted"`.
/// - `"framed":true` (any command): the reply line is preceded by a header line `#N`, N
///   being the reply's length in bytes without its newline (`#14\n{"members":[]}\n`).
/// - `"chunk":C` (with `"framed":true`): the N+1 bytes after the header are sent C bytes at
///   a time (C at least 256); after each piece but the last the client sends an empty
///   line to get the next. A reader that cannot hold more than one buffer (HAProxy's Lua
///   sockets: one `tune.bufsize`, and 2.6/3.0 stop reading once it was full) then never
///   has more than C bytes pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOptions {
    /// `slots`: only the slots holding a member; free ones counted in `"free"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used: bool,
    /// Index of the first entry of the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Largest reply line wanted, in bytes (without the newline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Precede the reply with a `#<length>` header line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub framed: bool,
    /// With `framed`: send the reply in acknowledged pieces of this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<usize>,
}

/// A whole request line: the command and its optional fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The command (`"cmd"`).
    #[serde(flatten)]
    pub request: Request,
    /// The optional fields.
    #[serde(flatten)]
    pub options: RequestOptions,
}

impl From<Request> for Query {
    fn from(request: Request) -> Query {
        Query {
            request,
            options: RequestOptions::default(),
        }
    }
}

/// An error reply: `{"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
}

//! What the core asks of its driver ([`Output`]) and the cluster events it reports
//! ([`CoreEvent`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::model::{Member, UserEventInfo};

/// Something the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram from the bind socket.
    Udp {
        /// Destination.
        to: SocketAddr,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Dial TCP, write `data`, and (if `expect_reply`) read one stream message back and
    /// report it with [`Core::dial_result`](super::core::Core::dial_result).
    Dial {
        /// Correlation id.
        id: u64,
        /// Destination.
        to: SocketAddr,
        /// Bytes to write.
        data: Vec<u8>,
        /// Whether a reply is read.
        expect_reply: bool,
        /// Connect + exchange deadline.
        timeout: Duration,
    },
    /// A cluster event.
    Event(CoreEvent),
    /// A join finished.
    JoinDone {
        /// Id returned by [`Core::join`](super::core::Core::join).
        id: u64,
        /// Seeds that answered.
        contacted: usize,
        /// Errors of the others.
        errors: Vec<String>,
    },
    /// An ack to an outgoing query.
    QueryAck {
        /// Handle returned by [`Core::query`](super::core::Core::query).
        handle: u64,
        /// Responder.
        from: String,
    },
    /// A response to an outgoing query.
    QueryResponse {
        /// Handle.
        handle: u64,
        /// Responder.
        from: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// An outgoing query's deadline passed.
    QueryDone {
        /// Handle.
        handle: u64,
    },
    /// The graceful leave finished: stop now.
    LeaveDone,
    /// The member must stop (lost a name conflict).
    Fatal(String),
}

/// A cluster event as the core reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// Joined / came back.
    MemberJoin(Member),
    /// Tags/address changed.
    MemberUpdate(Member),
    /// Left gracefully.
    MemberLeave(Member),
    /// Failed.
    MemberFailed(Member),
    /// Forgotten.
    MemberReap(Member),
    /// Suspected.
    MemberSuspect(Member),
    /// Suspicion refuted.
    MemberRefuted(Member),
    /// User event.
    User(UserEventInfo),
    /// User query to answer with [`Core::respond`](super::core::Core::respond) using `token`.
    Query {
        /// Token for the response.
        token: u64,
        /// Name.
        name: String,
        /// Payload.
        payload: Vec<u8>,
        /// Originator.
        source_node: String,
        /// Query time.
        ltime: u64,
        /// Deadline.
        deadline: Instant,
    },
}

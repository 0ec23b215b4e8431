//! The client side: the one-shot commands a user runs next to an agent or a HAProxy. Each
//! prints its answer on stdout and returns the process exit status (0, or 1 on any error);
//! `src/cli.rs` turns the command line into the request types here.
//!
//! - [`socket`]: the connection to a running agent's status socket (`metrics` is one request).
//! - [`filter`]: `members` and `slots` with serf's member filters and slot filters.
//! - [`status`]: `status`, with exit statuses 0 ready / 1 not ready / 2 unreachable, and
//!   `--wait-ready`; [`status_text`] is its text for people.
//! - [`leave`]: `leave`, waiting until the agent has left.
//! - [`render`]: output for people ([`Format::Text`]) or programs ([`Format::Json`]).
//! - [`verify`]: `haserf verify` — read HAProxy's slots once.
//! - [`plan`]: `haserf plan` — the runtime commands a membership would send, not sent.
//! - [`verbs`]: Serf's verbs (`event`, `query`, `tags`, `join`, `force-leave`, `monitor`,
//!   `keys`, `rtt`, `info`) over the agent's Serf RPC.
//!
//! The agent side (the server end of the status socket, the slots it manages) is
//! [`crate::agent`]; nothing there depends on this module.

use std::net::{IpAddr, Ipv4Addr};

/// `println!` that ignores a closed stdout (e.g. `| head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

pub mod filter;
pub mod leave;
pub mod plan;
pub mod render;
pub mod socket;
pub mod status;
pub mod status_text;
pub mod table;
pub mod verbs;
pub mod verify;

pub use filter::{ListRequest, MemberFilter, SlotFilter};
pub use leave::LeaveRequest;
pub use plan::{MembershipSource, PlanRequest};
pub use render::Format;
pub use status::StatusRequest;
pub use verify::VerifyRequest;

/// The address a free slot holds in `haserf plan` and `haserf verify` (the
/// `server-template` placeholder the agent also uses by default).
const PLACEHOLDER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A single-threaded runtime for one command, or the exit status 1 with a message.
fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("haserf: cannot start runtime: {err}");
            1
        })
}

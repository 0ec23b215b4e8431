//! Slots: HAProxy `server-template` slots kept filled with members.
//!
//! - [`discovery`]: backends and their template slots, read from HAProxy itself.
//! - [`rendezvous`]: the stable slot choice for a member (rendezvous hashing).
//! - [`book`]: the assignment book (member ↔ slot, queue, leave deadlines with timer tokens).
//! - [`planner`]: where a slot command is **planned** — a pure function (target, observed)
//!   → runtime commands.
//! - [`reconciler`]: where it is **sent** — the reconcile loop reads HAProxy, plans, sends the
//!   commands in one batched round trip and reads back to verify.
//! - [`state_file`]: HAProxy's server-state file, written after applied changes, so a
//!   reloaded or restarted HAProxy starts with its slots filled.

pub mod book;
pub mod discovery;
pub mod planner;
pub mod reconciler;
pub mod rendezvous;
pub mod state_file;

pub use book::{Book, Cause, DesiredMember, Released, Want};
pub use discovery::{discover, Observed, ObservedSlot};
pub use planner::{plan, plan_slot, PlanContext, Target};
pub use reconciler::{
    spawn_reconciler, FirstCheckWait, ReconcilerConfig, ReconcilerHandle, ReconcilerStatus,
    RefusedCommand,
};

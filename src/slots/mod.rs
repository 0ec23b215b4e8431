//! Slots: discovery of template slots from HAProxy, stable slot choice (rendezvous
//! hashing), the pure planner (desired vs observed → runtime commands), the assignment book
//! (member ↔ slot, queue, leave deadlines with timer tokens) and the reconcile loop.

pub mod book;
pub mod cmd;
pub mod discovery;
pub mod hash;
pub mod planner;
pub mod reconciler;

pub use book::{Book, DesiredMember, Want};
pub use discovery::{discover, Observed, ObservedSlot};
pub use planner::{plan, plan_slot, PlanContext, Target};
pub use reconciler::{spawn_reconciler, ReconcilerConfig, ReconcilerHandle, ReconcilerStatus};

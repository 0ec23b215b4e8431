//! What the agent wants HAProxy to look like: membership in, desired slot placements out.
//! Selectors (`--backend`), admission (`--allow-cidr`, valid tags), suspicion drain and the
//! partition guard. Pure logic, driven by the agent.

pub mod cidr;
pub mod desired;
pub mod guard;
pub mod selector;

pub use cidr::Cidr;
pub use desired::{Evaluation, MemberFacts, Placement, Policy, PolicyConfig, Refusal, Want};
pub use guard::{GuardAlert, GuardConfig};
pub use selector::BackendSelector;

//! The planner: a pure function (slot targets, observed slots) → the minimal ordered list
//! of runtime commands. It is re-run on every pass, so multi-step sequences (drain → wait
//! for the first health check → ready; drain → wait for idle → maint → clear) advance one
//! safe step at a time, and a slot that already matches its target gets no command.

use std::net::IpAddr;

use crate::haproxy::{AdminState, Command};

use super::discovery::ObservedSlot;

/// What a slot should be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Serve a member at `addr:port`.
    Serve {
        /// Member address.
        addr: IpAddr,
        /// Member port; 0 on a port-less template without a `port` tag: the address is
        /// set without a port and HAProxy keeps connecting to the client's port.
        port: u16,
        /// Weight (the configured one when the member has no `weight` tag).
        weight: u32,
        /// Keep the slot but send no new requests (suspect member).
        drain: bool,
        /// Put in rotation without waiting for HAProxy's first check: `--admit gossip`, or
        /// the agent's probe of `addr:port` passed (see [`super::admission`]).
        admitted: bool,
    },
    /// Graceful leave of the member at `addr:port`: drain, then maint once the slot has no
    /// current sessions or the deadline passed, then clear the address.
    Leave {
        /// Member address.
        addr: IpAddr,
        /// Member port.
        port: u16,
        /// The drain deadline has passed.
        deadline_passed: bool,
    },
    /// Free: maint, placeholder address.
    Empty,
}

/// Backend-wide values the planner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanContext {
    /// Address of a free slot.
    pub placeholder: IpAddr,
    /// Port of a free slot (the template port); 0 for a port-less template.
    pub template_port: u16,
}

/// `Some(port)`, or `None` for port 0 (a port-less template: HAProxy keeps its port).
fn port_arg(port: u16) -> Option<u16> {
    (port != 0).then_some(port)
}

/// The slot's address is `addr:port` (any port when `port` is 0: port-less template).
fn at(obs: &ObservedSlot, addr: IpAddr, port: u16) -> bool {
    obs.addr == Some(addr) && (port == 0 || obs.port == Some(port))
}

/// True when an agent-check, not haserf, holds the slot's state: the slot has an
/// `agent-check`, serves the target's member and is in drain or maint while the target
/// wants it ready. HAProxy's agent sets `drain`, `maint` and weights itself (`DRAIN
/// (agent)`); once haserf has seen the slot settled on its target, it does not fight that.
pub fn agent_holds(target: &Target, obs: &ObservedSlot) -> bool {
    match target {
        Target::Serve {
            addr,
            port,
            drain: false,
            ..
        } => obs.agent && at(obs, *addr, *port) && obs.admin != AdminState::Ready,
        _ => false,
    }
}

/// Why a slot gets commands (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A member is put in (or its address changed).
    Assign,
    /// Waiting for the first health check, in drain.
    AwaitCheck,
    /// The first check passed: ready.
    Ready,
    /// The member is suspect: drain.
    Suspect,
    /// Weight changed.
    Weight,
    /// Graceful leave: drain.
    Drain,
    /// Graceful leave finished (idle or deadline): maint and clear.
    Release,
    /// Slot emptied at once (failed member, or unowned).
    Clear,
}

impl Reason {
    /// Short lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Assign => "assign",
            Reason::AwaitCheck => "await-first-check",
            Reason::Ready => "ready",
            Reason::Suspect => "suspect-drain",
            Reason::Weight => "weight",
            Reason::Drain => "leave-drain",
            Reason::Release => "leave-release",
            Reason::Clear => "clear",
        }
    }
}

/// Commands for one slot, with the reason. Names are checked when the command is built; a
/// bad name yields no command (and the caller reports it).
pub fn plan_slot(
    backend: &str,
    target: &Target,
    obs: &ObservedSlot,
    ctx: &PlanContext,
) -> (Vec<Command>, Option<Reason>) {
    let s = obs.name.as_str();
    let mut cmds = Vec::new();
    let mut reason = None;
    // a command that cannot be built (a bad name) stops the slot's sequence: the later
    // steps assume the earlier ones were sent
    let mut broken = false;
    let mut push = |c: Result<Command, _>| match c {
        Ok(c) if !broken => cmds.push(c),
        _ => broken = true,
    };
    match target {
        Target::Serve {
            addr,
            port,
            weight,
            drain,
            admitted,
        } => {
            let addr_ok = at(obs, *addr, *port);
            let mut admin = obs.admin;
            if !addr_ok {
                if admin != AdminState::Maint {
                    push(Command::set_state(backend, s, AdminState::Maint));
                    admin = AdminState::Maint;
                }
                push(Command::set_addr(backend, s, *addr, port_arg(*port)));
                reason = Some(Reason::Assign);
            }
            // an agent-check owns the weight of its slot
            if !obs.agent && obs.weight != *weight {
                push(Command::set_weight(
                    backend,
                    s,
                    u16::try_from(*weight).unwrap_or(256),
                ));
                reason.get_or_insert(Reason::Weight);
            }
            if *drain {
                if admin != AdminState::Drain {
                    push(Command::set_state(backend, s, AdminState::Drain));
                    reason.get_or_insert(Reason::Suspect);
                }
            } else if admin != AdminState::Ready {
                let verified = addr_ok && admin == AdminState::Drain && obs.check_verified();
                if !obs.has_check || verified || *admitted {
                    push(Command::set_state(backend, s, AdminState::Ready));
                    reason.get_or_insert(Reason::Ready);
                } else if admin != AdminState::Drain {
                    // 2.6 puts a checked slot UP at once on `ready`, before any check: go
                    // through drain and wait for the first check to pass.
                    push(Command::set_state(backend, s, AdminState::Drain));
                    reason.get_or_insert(Reason::AwaitCheck);
                }
            }
        }
        Target::Leave {
            addr,
            port,
            deadline_passed,
        } => {
            let same = at(obs, *addr, *port);
            if !same || obs.admin == AdminState::Maint {
                return plan_slot(backend, &Target::Empty, obs, ctx);
            }
            if obs.admin == AdminState::Drain && (obs.scur == 0 || *deadline_passed) {
                push(Command::set_state(backend, s, AdminState::Maint));
                if obs.scur > 0 {
                    push(Command::shutdown_sessions(backend, s));
                }
                push(Command::set_addr(
                    backend,
                    s,
                    ctx.placeholder,
                    port_arg(ctx.template_port),
                ));
                reason = Some(Reason::Release);
            } else if obs.admin != AdminState::Drain {
                push(Command::set_state(backend, s, AdminState::Drain));
                reason = Some(Reason::Drain);
            }
        }
        Target::Empty => {
            // a slot already in maintenance is free whatever address it still shows; it is
            // cleared when it is next used, so it is not touched here
            if obs.admin != AdminState::Maint {
                push(Command::set_state(backend, s, AdminState::Maint));
                if !at(obs, ctx.placeholder, ctx.template_port) {
                    push(Command::set_addr(
                        backend,
                        s,
                        ctx.placeholder,
                        port_arg(ctx.template_port),
                    ));
                }
                reason = Some(Reason::Clear);
            }
        }
    }
    if broken {
        return (Vec::new(), reason);
    }
    (cmds, reason)
}

/// True when the slot is exactly its target (no step left).
pub fn satisfied(target: &Target, obs: &ObservedSlot, ctx: &PlanContext) -> bool {
    plan_slot("b", target, obs, ctx).0.is_empty()
        && match target {
            Target::Serve { drain, .. } => {
                obs.admin
                    == if *drain {
                        AdminState::Drain
                    } else {
                        AdminState::Ready
                    }
            }
            Target::Leave { .. } => false,
            Target::Empty => true,
        }
}

/// Plans a whole backend: `targets` pairs slot names with targets; slots without a target
/// are left alone. Commands come out slot by slot, in `targets` order.
pub fn plan(
    backend: &str,
    targets: &[(String, Target)],
    observed: &[ObservedSlot],
    ctx: &PlanContext,
) -> Vec<Command> {
    let mut out = Vec::new();
    for (slot, target) in targets {
        if let Some(obs) = observed.iter().find(|o| &o.name == slot) {
            out.extend(plan_slot(backend, target, obs, ctx).0);
        }
    }
    out
}

//! Discovery: backends and their template slots, read from HAProxy itself
//! (`show stat` + `show servers state` + `show info`). The slot count lives only in
//! haproxy.cfg; nothing here is configured on the agent side.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::control::model::{SlotState, SlotView};
use crate::haproxy::{
    AdminState, Info, ParseError, ServerStatus, ServersState, Snapshot, StatTable,
};

/// One slot as HAProxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSlot {
    /// Slot (server) name.
    pub name: String,
    /// Server id (declaration order).
    pub id: u32,
    /// Current address (`None` if it has none).
    pub addr: Option<IpAddr>,
    /// Current port.
    pub port: Option<u16>,
    /// Admin state derived from the admin bits: maint, drain or ready.
    pub admin: AdminState,
    /// Parsed `status`.
    pub status: ServerStatus,
    /// Current (user) weight.
    pub weight: u32,
    /// Configured weight.
    pub iweight: u32,
    /// Current sessions.
    pub scur: u64,
    /// Health checks configured.
    pub has_check: bool,
    /// Last check status (`L7OK`, `L4CON`, …), `None` when empty.
    pub check_status: Option<String>,
}

impl ObservedSlot {
    /// A check has passed since the slot left maintenance: its status is a settled
    /// `UP`/`DRAIN`/`NOLB` (not a `x/y` transition) and the last check succeeded.
    pub fn check_verified(&self) -> bool {
        use crate::haproxy::Health;
        matches!(
            self.status,
            ServerStatus::Stable(Health::Up | Health::Drain | Health::Nolb)
        ) && matches!(
            self.check_status.as_deref(),
            Some("L4OK" | "L6OK" | "L7OK" | "L7OKC")
        )
    }

    /// `IP:PORT` (IPv6 in brackets).
    pub fn addr_port(&self) -> Option<String> {
        let a = self.addr?;
        Some(match (a, self.port) {
            (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
            (a, Some(p)) => format!("{a}:{p}"),
            (a, None) => a.to_string(),
        })
    }

    /// Free by the placeholder rule: in maintenance and pointing at the placeholder address.
    pub fn is_empty_slot(&self, placeholder: IpAddr) -> bool {
        self.admin == AdminState::Maint && self.addr.is_none_or(|a| a == placeholder)
    }
}

/// HAProxy as seen in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Worker pid (`show info`).
    pub pid: u32,
    /// `Uptime_sec`.
    pub uptime_sec: u64,
    /// `Start_time_sec` (2.4+).
    pub start_time_sec: Option<u64>,
    /// The connection reached a worker that is being replaced.
    pub stopping: bool,
    /// Slots per backend (every backend with server rows), in declaration order.
    pub backends: BTreeMap<String, Vec<ObservedSlot>>,
}

/// Builds the observed view from one snapshot. Rows missing from `show servers state`
/// fall back to what `show stat` says.
pub fn discover(snap: &Snapshot) -> Result<Observed, ParseError> {
    let info = Info::parse(&snap.info)?;
    let stat = StatTable::parse(&snap.stat)?;
    let state = ServersState::parse(&snap.servers_state)?;
    let mut backends: BTreeMap<String, Vec<ObservedSlot>> = BTreeMap::new();
    for row in stat.servers() {
        let st = state
            .servers
            .iter()
            .find(|s| s.backend == row.proxy() && s.server == row.name());
        let status = row.status();
        let (addr, port) = match st {
            Some(s) => (s.addr, s.port),
            None => split_addr(row.addr()),
        };
        let admin = match st {
            Some(s) if s.in_maint() => AdminState::Maint,
            Some(s) if s.draining() => AdminState::Drain,
            Some(_) => AdminState::Ready,
            None if status.is_maint() => AdminState::Maint,
            None if matches!(
                status,
                ServerStatus::Stable(crate::haproxy::Health::Drain)
                    | ServerStatus::Transition {
                        health: crate::haproxy::Health::Drain,
                        ..
                    }
            ) =>
            {
                AdminState::Drain
            }
            None => AdminState::Ready,
        };
        let has_check = match st {
            Some(s) => s.has_check(),
            None => status != ServerStatus::NoCheck,
        };
        backends
            .entry(row.proxy().to_string())
            .or_default()
            .push(ObservedSlot {
                name: row.name().to_string(),
                id: st.map(|s| s.id).or(row.sid()).unwrap_or(0),
                addr,
                port,
                admin,
                status,
                weight: st.map(|s| s.uweight).or(row.weight()).unwrap_or(1),
                iweight: st.map(|s| s.iweight).unwrap_or(1),
                scur: row.scur().unwrap_or(0),
                has_check,
                check_status: row.check_status().map(str::to_string),
            });
    }
    for slots in backends.values_mut() {
        slots.sort_by_key(|s| s.id);
    }
    Ok(Observed {
        pid: info.pid,
        uptime_sec: info.uptime_sec,
        start_time_sec: info.start_time_sec,
        stopping: info.stopping,
        backends,
    })
}

/// Splits `ip:port` / `[v6]:port` from `show stat`'s `addr` column.
pub fn split_addr(a: Option<&str>) -> (Option<IpAddr>, Option<u16>) {
    let Some(a) = a else { return (None, None) };
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        return (Some(sa.ip()), Some(sa.port()));
    }
    (a.parse().ok(), None)
}

/// The slot table as `haserf verify` prints it (`member` always `null`; `addr` null for a
/// slot in maintenance at the placeholder address).
pub fn slot_views(obs: &Observed, backends: &[String], placeholder: IpAddr) -> Vec<SlotView> {
    let mut out = Vec::new();
    for (b, slots) in &obs.backends {
        if !backends.is_empty() && !backends.contains(b) {
            continue;
        }
        for s in slots {
            out.push(SlotView {
                backend: b.clone(),
                slot: s.name.clone(),
                member: None,
                addr: if s.is_empty_slot(placeholder) {
                    None
                } else {
                    s.addr_port()
                },
                state: slot_state(s.admin),
                haproxy_status: s.status.to_string(),
            });
        }
    }
    out
}

/// Admin state → view model state.
pub fn slot_state(a: AdminState) -> SlotState {
    match a {
        AdminState::Ready => SlotState::Ready,
        AdminState::Drain => SlotState::Drain,
        AdminState::Maint => SlotState::Maint,
    }
}

/// The template port of a backend: the most common port among its free slots, else among
/// all its slots.
pub fn template_port(slots: &[ObservedSlot], placeholder: IpAddr) -> Option<u16> {
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for s in slots.iter().filter(|s| s.is_empty_slot(placeholder)) {
        if let Some(p) = s.port {
            *counts.entry(p).or_default() += 1;
        }
    }
    if counts.is_empty() {
        for s in slots {
            if let Some(p) = s.port {
                *counts.entry(p).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(p, _)| p)
}

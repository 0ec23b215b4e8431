//! Discovery: backends and their template slots, read from HAProxy itself
//! (`show stat` + `show servers state` + `show info`). The slot count lives only in
//! haproxy.cfg; nothing here is configured on the agent side.
//!
//! Only servers a `server-template` created are slots ([`find_templates`]); static servers
//! of the same backend are reported, never touched.

use std::collections::{BTreeMap, BTreeSet};
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
    /// An `agent-check` is configured: the agent owns the weight (and may set drain or
    /// maint); haserf never sends `set weight` to such a slot.
    pub agent: bool,
    /// Declared `disabled` in haproxy.cfg (the `CMAINT` admin bit, kept after `ready`).
    pub declared_disabled: bool,
    /// The FQDN the server was declared with (`srv_fqdn`), if any.
    pub fqdn: Option<String>,
    /// What else must match for servers to come from one `server-template` line: check
    /// and agent ports, SSL, configured weight (from `show servers state`).
    pub signature: String,
}

impl ObservedSlot {
    /// A check has passed since the slot left maintenance: its status is a settled
    /// `UP`/`DRAIN`/`NOLB`, or `UP (agent)`/`DRAIN (agent)` when an agent-check runs too
    /// (not a `x/y` transition), and the last check succeeded.
    pub fn check_verified(&self) -> bool {
        use crate::haproxy::Health;
        matches!(
            self.status,
            ServerStatus::Stable(Health::Up | Health::Drain | Health::Nolb)
                | ServerStatus::Agent(Health::Up | Health::Drain | Health::Nolb)
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
    /// Template slots per backend (backends with at least one `server-template`), in
    /// declaration order. Static servers are not here.
    pub backends: BTreeMap<String, Vec<ObservedSlot>>,
    /// The templates found, per backend.
    pub templates: BTreeMap<String, Vec<Template>>,
    /// Servers that no template created (left alone), per backend.
    pub static_servers: BTreeMap<String, Vec<String>>,
    /// Every backend HAProxy has (`BACKEND` rows of `show stat`).
    pub proxies: BTreeSet<String>,
    /// Each backend's load-balancing algorithm (`algo` of its `BACKEND` row: `roundrobin`,
    /// `source`, `static-rr`…). The hash type is not shown, so whether a hashing algorithm
    /// accepts weights is learnt from HAProxy's answer to `set weight`.
    pub algos: BTreeMap<String, String>,
}

/// One `server-template` line as HAProxy shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Name prefix (`web` for `web1`…).
    pub prefix: String,
    /// First and last slot number.
    pub numbers: (u32, u32),
    /// An `agent-check` is configured.
    pub agent: bool,
    /// Health checks configured.
    pub check: bool,
    /// The FQDN placeholder, if the template was declared with a host name.
    pub fqdn: Option<String>,
    /// HAProxy accepts `set server addr` on these slots: an IP placeholder, or a host name
    /// with an IP fallback (`slot.invalid:9 … init-addr last,127.0.0.1`, the form HAProxy's
    /// server-state file needs to restore addresses). A name without an address
    /// (`init-addr none`: "Update for the current server address family is only supported
    /// through configuration file") or a DNS SRV record (`_service._proto.name`) is not.
    pub addr_settable: bool,
}

impl Observed {
    /// Why `backend` cannot be managed, or `None` when it has usable template slots: it
    /// does not exist, has no `server-template`, or its template has an FQDN placeholder
    /// HAProxy will not let the agent readdress (see [`Template::addr_settable`]).
    pub fn backend_problem(&self, backend: &str) -> Option<String> {
        if !self.proxies.contains(backend) && !self.backends.contains_key(backend) {
            return Some(format!(
                "backend {backend:?} does not exist in HAProxy (backends: {})",
                self.proxies.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let Some(templates) = self.templates.get(backend).filter(|t| !t.is_empty()) else {
            let statics = self
                .static_servers
                .get(backend)
                .cloned()
                .unwrap_or_default();
            return Some(format!(
                "backend {backend:?} has no server-template slots (static servers, left alone: {})",
                if statics.is_empty() {
                    "none".to_string()
                } else {
                    statics.join(", ")
                }
            ));
        };
        if let Some(t) = templates
            .iter()
            .find(|t| t.fqdn.is_some() && !t.addr_settable)
        {
            return Some(format!(
                "backend {backend:?}: template {:?} has the FQDN placeholder {:?} and no address; \
                 HAProxy refuses `set server addr` on a server resolved by name (and resolvers \
                 would overwrite it): declare the template with an IP placeholder such as \
                 127.0.0.1:9, or a name with an IP fallback and no resolvers \
                 (`slot.invalid:9 ... init-addr last,127.0.0.1`, for the server-state file)",
                t.prefix,
                t.fqdn.as_deref().unwrap_or("")
            ));
        }
        None
    }
}

/// `web12` → (`web`, 12); `None` without a trailing number.
fn split_numbered(name: &str) -> Option<(&str, u32)> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == name.len() {
        return None;
    }
    let (prefix, n) = name.split_at(name.len() - digits);
    if n.len() > 1 && n.starts_with('0') {
        return None; // templates number without leading zeros
    }
    Some((prefix, n.parse().ok()?))
}

/// Splits one backend's servers (in id order) into template slots and the rest.
///
/// HAProxy does not say which servers came from a `server-template` line, so a template is
/// recognised by what such a line produces: consecutive server ids named `PREFIX1`,
/// `PREFIX2`… with consecutive numbers and identical settings (checks, agent-check, ports,
/// SSL, configured weight, FQDN or not). A run counts as a template when its servers were
/// declared `disabled` (the usual slot line: the admin bit stays set), or when it has at
/// least two servers and two of them still share one address and port (the placeholder).
/// A run of static servers (distinct addresses) is never a template.
pub fn find_templates(servers: &[ObservedSlot]) -> (Vec<Template>, Vec<usize>) {
    let mut templates = Vec::new();
    let mut members = Vec::new();
    let mut i = 0;
    while i < servers.len() {
        let Some((prefix, first)) = split_numbered(&servers[i].name) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < servers.len() {
            let (a, b) = (&servers[j - 1], &servers[j]);
            let next = split_numbered(&b.name);
            let n_prev = first + (j - 1 - i) as u32;
            if next != Some((prefix, n_prev + 1))
                || b.id != a.id + 1
                || b.signature != a.signature
                || b.declared_disabled != a.declared_disabled
            {
                break;
            }
            j += 1;
        }
        let run = &servers[i..j];
        let shared_placeholder = {
            let mut seen = BTreeSet::new();
            run.iter()
                .filter_map(|s| s.addr.map(|a| (a, s.port)))
                .any(|k| !seen.insert(k))
        };
        let is_template = run[0].declared_disabled
            || (run.len() >= 2 && (shared_placeholder || run[0].fqdn.is_some()));
        if is_template {
            templates.push(Template {
                prefix: prefix.to_string(),
                numbers: (first, first + (run.len() - 1) as u32),
                agent: run[0].agent,
                check: run[0].has_check,
                fqdn: run[0].fqdn.clone(),
                addr_settable: run.iter().all(|s| s.addr.is_some())
                    && !run[0].fqdn.as_deref().is_some_and(|f| f.starts_with('_')),
            });
            members.extend(i..j);
        }
        i = j;
    }
    (templates, members)
}

/// Builds the observed view from one snapshot. Rows missing from `show servers state`
/// fall back to what `show stat` says.
pub fn discover(snap: &Snapshot) -> Result<Observed, ParseError> {
    let info = Info::parse(&snap.info)?;
    let stat = StatTable::parse(&snap.stat)?;
    let state = ServersState::parse(&snap.servers_state)?;
    let mut backends: BTreeMap<String, Vec<ObservedSlot>> = BTreeMap::new();
    let proxies: BTreeSet<String> = stat
        .rows()
        .filter(|r| r.kind() == crate::haproxy::RowKind::Backend)
        .map(|r| r.proxy().to_string())
        .collect();
    let algos: BTreeMap<String, String> = stat
        .rows()
        .filter(|r| r.kind() == crate::haproxy::RowKind::Backend)
        .filter_map(|r| Some((r.proxy().to_string(), r.get("algo")?.into_owned())))
        .filter(|(_, a)| !a.is_empty())
        .collect();
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
        // only the forced bits are the runtime API's (and haserf's): maintenance or drain
        // inherited from a tracked server, or the configured `disabled` bit that stays set
        // after `ready`, are not something `set server state` can change
        use crate::haproxy::servers_state::{ADMIN_FDRAIN, ADMIN_FMAINT, ADMIN_RMAINT};
        let admin = match st {
            Some(s) if s.admin_state & (ADMIN_FMAINT | ADMIN_RMAINT) != 0 => AdminState::Maint,
            Some(s) if s.admin_state & ADMIN_FDRAIN != 0 => AdminState::Drain,
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
        let field = |name: &str| st.and_then(|s| state.field(s, name)).map(str::to_string);
        let agent_state: u32 = field("srv_agent_state")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let signature = format!(
            "check={has_check} check_port={} agent_port={} ssl={} iweight={} fqdn={}",
            field("srv_check_port").unwrap_or_default(),
            field("srv_agent_port").unwrap_or_default(),
            field("srv_use_ssl").unwrap_or_default(),
            st.map_or(0, |s| s.iweight),
            field("srv_fqdn").is_some(),
        );
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
                agent: agent_state & 0x02 != 0,
                declared_disabled: st.is_some_and(|s| {
                    s.admin_state & crate::haproxy::servers_state::ADMIN_CMAINT != 0
                }),
                // a DNS SRV record template is resolver-driven too
                fqdn: field("srv_fqdn").or_else(|| field("srvrecord")),
                signature,
            });
    }
    let mut templates = BTreeMap::new();
    let mut static_servers = BTreeMap::new();
    let mut slots_of = BTreeMap::new();
    for (b, mut servers) in backends {
        servers.sort_by_key(|s| s.id);
        let (t, members) = find_templates(&servers);
        let mut slots = Vec::new();
        let mut statics = Vec::new();
        for (i, s) in servers.into_iter().enumerate() {
            if members.contains(&i) {
                slots.push(s);
            } else {
                statics.push(s.name);
            }
        }
        if !slots.is_empty() {
            slots_of.insert(b.clone(), slots);
        }
        if !statics.is_empty() {
            static_servers.insert(b.clone(), statics);
        }
        templates.insert(b, t);
    }
    Ok(Observed {
        pid: info.pid,
        uptime_sec: info.uptime_sec,
        start_time_sec: info.start_time_sec,
        stopping: info.stopping,
        backends: slots_of,
        templates,
        static_servers,
        proxies,
        algos,
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
        let placeholder = template_placeholder(slots, placeholder);
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

/// The placeholder address of a backend's free slots, as haproxy.cfg declares it: the most
/// common address among its slots in maintenance (`fallback` when none is).
pub fn template_placeholder(slots: &[ObservedSlot], fallback: IpAddr) -> IpAddr {
    let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for s in slots.iter().filter(|s| s.admin == AdminState::Maint) {
        if let Some(a) = s.addr {
            *counts.entry(a).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(fallback, |(a, _)| a)
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

//! Every metric family haserf exposes, in one place: name, type, labels and meaning. The
//! collectors encode from these definitions ([`super::encode_counter`],
//! [`super::encode_gauge`], [`super::latency`]), `docs/metrics.md` lists the same names for
//! dashboards (a unit test keeps the two equal), and a new family is added here first.
//!
//! Naming follows Prometheus' conventions: `haserf_` prefix, base units (`_seconds`,
//! `_bytes`), and counters exposed with a `_total` suffix (the OpenMetrics encoder adds it:
//! [`Family::name`] is the family name, [`Family::sample_name`] what a query uses). The
//! standard `process_*` families come from `kubert-prometheus-process` ([`PROCESS`]).

/// Type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter; samples end in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Family name as in `# TYPE` (for counters, without `_total`).
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// Type.
    pub kind: Kind,
    /// Label names, in the order they are written.
    pub labels: &'static [&'static str],
}

impl Family {
    /// The name a query uses for the family's main sample: `NAME_total` for a counter,
    /// `NAME_bucket`… for a histogram (its base name is returned), `NAME` for a gauge.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            Kind::Gauge | Kind::Histogram => self.name.to_string(),
        }
    }
}

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind: Kind::Counter,
        labels,
    }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        help,
        kind: Kind::Gauge,
        labels,
    }
}

// ---- the agent -------------------------------------------------------------------------

/// 1, labelled with the running version.
pub const BUILD_INFO: Family = gauge(
    "haserf_build_info",
    "Always 1; the labels say which haserf is running.",
    &["version"],
);
/// 1 once the agent is ready (member mode: at once; with HAProxy: after the first full
/// reconcile), else 0. The same condition as `haserf status` exit status 0.
pub const READY: Family = gauge(
    "haserf_ready",
    "1 once the agent is ready (with HAProxy: the first full reconcile is done).",
    &[],
);

// ---- gossip (Serf + memberlist) ----------------------------------------------------------

/// Members by Serf status; `suspect` counts alive members under suspicion.
pub const MEMBERS: Family = gauge(
    "haserf_members",
    "Cluster members by status (suspect counts alive members under suspicion).",
    &["status"],
);
/// Gossip UDP packets.
pub const GOSSIP_PACKETS: Family = counter(
    "haserf_gossip_packets",
    "Gossip UDP packets by direction.",
    &["direction"],
);
/// Gossip TCP streams (push/pull, joins).
pub const GOSSIP_STREAMS: Family = counter(
    "haserf_gossip_streams",
    "Gossip TCP streams by direction.",
    &["direction"],
);
/// Gossip input dropped, by reason (bad packet, wrong key, unencrypted, …).
pub const GOSSIP_DROPPED: Family = counter(
    "haserf_gossip_dropped",
    "Gossip input dropped, by reason.",
    &["reason"],
);
/// Lifeguard's awareness score, as memberlist's `GetHealthScore` (0 is healthy).
pub const GOSSIP_HEALTH_SCORE: Family = gauge(
    "haserf_gossip_health_score",
    "Lifeguard health score (0 is healthy).",
    &[],
);
/// 1 when gossip is encrypted (a key or keyring is configured).
pub const GOSSIP_ENCRYPTED: Family = gauge(
    "haserf_gossip_encrypted",
    "1 when gossip is encrypted.",
    &[],
);

// ---- the HAProxy manager (with --haproxy-socket) -----------------------------------------

/// Slots by backend and administrative state (ready, drain, maint).
pub const SLOTS: Family = gauge(
    "haserf_slots",
    "Slots by backend and administrative state.",
    &["backend", "state"],
);
/// Slots holding a member.
pub const SLOTS_USED: Family = gauge("haserf_slots_used", "Slots holding a member.", &["backend"]);
/// Slots free for a member.
pub const SLOTS_FREE: Family = gauge(
    "haserf_slots_free",
    "Slots free for a member.",
    &["backend"],
);
/// Members waiting for a free slot.
pub const QUEUE_LENGTH: Family = gauge(
    "haserf_queue_length",
    "Members waiting for a free slot.",
    &["backend"],
);
/// Batches of runtime commands applied.
pub const APPLIES: Family = counter(
    "haserf_applies",
    "Batches of runtime commands applied.",
    &[],
);
/// Commands HAProxy refused, plus failed exchanges.
pub const APPLY_ERRORS: Family = counter(
    "haserf_apply_errors",
    "Runtime commands refused or failed exchanges.",
    &[],
);
/// Managed backends that cannot be managed: missing in HAProxy, without a
/// `server-template`, or with a template haserf refuses (FQDN placeholder).
pub const BACKEND_ERRORS: Family = gauge(
    "haserf_backend_errors",
    "Managed backends that cannot be managed (missing, no server-template, refused template).",
    &["backend"],
);
/// Runtime commands HAProxy refused for a slot's current target (not retried).
pub const REFUSED_COMMANDS: Family = gauge(
    "haserf_refused_commands",
    "Runtime commands HAProxy refused for a slot's current target, not retried.",
    &["backend"],
);
/// Slots changed behind the agent's back and put back.
pub const DRIFT_REPAIRS: Family = counter(
    "haserf_drift_repairs",
    "Slots found changed behind the agent's back and repaired.",
    &[],
);
/// New HAProxy processes detected (restart or reload).
pub const HAPROXY_RESTARTS: Family = counter(
    "haserf_haproxy_restarts",
    "New HAProxy processes detected.",
    &[],
);
/// Members drained because the failure detector suspected them.
pub const SUSPICION_DRAINS: Family = counter(
    "haserf_suspicion_drains",
    "Members drained because they were suspected.",
    &[],
);
/// Policy evaluations of the whole membership.
pub const EVALUATIONS: Family = counter(
    "haserf_evaluations",
    "Evaluations of the membership by the slot policy.",
    &[],
);
/// Members currently refused a slot (outside --allow-cidr, bad tags).
pub const REFUSED_MEMBERS: Family = gauge(
    "haserf_refused_members",
    "Members currently refused a slot.",
    &[],
);
/// Backends whose partition guard holds members in rotation.
pub const PARTITION_GUARD_HOLDING: Family = gauge(
    "haserf_partition_guard_holding",
    "Backends whose partition guard holds members.",
    &[],
);
/// Alerts currently active (resolved ones are not counted), by kind: `partition_guard`,
/// `first_check`.
pub const ALERTS_ACTIVE: Family = gauge(
    "haserf_alerts_active",
    "Alerts currently active, by kind.",
    &["kind"],
);
/// Seconds from a membership change reaching the agent to the runtime command that applies
/// it being answered by HAProxy.
pub const MEMBER_CHANGE_TO_COMMAND: Family = Family {
    name: "haserf_member_change_to_command_seconds",
    help: "Seconds from a membership change reaching the agent to its runtime command being sent and answered.",
    kind: Kind::Histogram,
    labels: &["backend"],
};
/// Seconds from a batch of runtime commands being answered to HAProxy's state read back
/// confirming it.
pub const COMMAND_TO_CONFIRM: Family = Family {
    name: "haserf_command_to_confirm_seconds",
    help: "Seconds from runtime commands being answered to HAProxy's read-back confirming them.",
    kind: Kind::Histogram,
    labels: &["backend"],
};

// ---- HAProxy maps kept by the agent (with --haproxy-map) ---------------------------------

/// Entries a kept map should hold, by map kind (`served-by`, `member-status`, …).
pub const MAP_ENTRIES: Family = gauge(
    "haserf_map_entries",
    "Entries an HAProxy map kept by the agent should hold.",
    &["map"],
);
/// 1 when HAProxy's copy of the map was read back equal to the desired entries.
pub const MAP_IN_SYNC: Family = gauge(
    "haserf_map_in_sync",
    "1 when HAProxy's copy of the map was read back equal to the desired entries.",
    &["map"],
);
/// Runtime commands sent to keep the map.
pub const MAP_COMMANDS: Family = counter(
    "haserf_map_commands",
    "Runtime commands sent to keep the map.",
    &["map"],
);
/// Times the map file was rewritten.
pub const MAP_FILE_WRITES: Family = counter(
    "haserf_map_file_writes",
    "Times the map file was rewritten.",
    &["map"],
);
/// Failed exchanges, refused commands and failed file writes for the map.
pub const MAP_ERRORS: Family = counter(
    "haserf_map_errors",
    "Failed exchanges, refused commands and failed file writes for the map.",
    &["map"],
);

// ---- the SPOE agent (with --spoe-bind) ---------------------------------------------------

/// SPOE NOTIFY frames answered.
pub const SPOE_NOTIFIES: Family =
    counter("haserf_spoe_notifies", "SPOE NOTIFY frames answered.", &[]);
/// SPOE answers cut to fit HAProxy's max-frame-size (a list cut and flagged
/// `<name>_truncated`, or a fact left out).
pub const SPOE_TRUNCATED: Family = counter(
    "haserf_spoe_truncated",
    "SPOE answers cut to fit max-frame-size (a list cut, flagged <name>_truncated, or a fact left out).",
    &[],
);
/// SPOE connections closed for bad input or timeouts.
pub const SPOE_REJECTED: Family = counter(
    "haserf_spoe_rejected",
    "SPOE connections closed for bad input or timeouts.",
    &[],
);

// ---- event handler scripts (`--event-handler`) ----------------------------------------

/// Handler script runs by result: `ok` (exit 0), `failed` (non-zero exit, signal, could not
/// start), `timeout` (killed at the handler timeout).
pub const EVENT_HANDLER_RUNS: Family = counter(
    "haserf_event_handler_runs",
    "Event handler script runs, by result (ok, failed, timeout).",
    &["result"],
);
/// Events not handed to a script because its queue was full.
pub const EVENT_HANDLER_DROPPED: Family = counter(
    "haserf_event_handler_dropped",
    "Events dropped because an event handler's queue was full.",
    &[],
);
/// Query handler outputs that could not be sent as the response (over
/// `query_response_size_limit`, or after the query's deadline).
pub const EVENT_HANDLER_RESPONSES_REFUSED: Family = counter(
    "haserf_event_handler_responses_refused",
    "Query handler outputs not sent as the response (too large or too late).",
    &[],
);

// ---- the metrics endpoint itself ---------------------------------------------------------

/// Connections to `--metrics-bind` refused or cut (over a limit, too slow, bad request).
pub const METRICS_HTTP_REFUSED: Family = counter(
    "haserf_metrics_http_refused",
    "Connections to the metrics endpoint refused or closed early, by reason.",
    &["reason"],
);

/// Every `haserf_*` family, for documentation checks.
pub const ALL: &[Family] = &[
    BUILD_INFO,
    READY,
    MEMBERS,
    GOSSIP_PACKETS,
    GOSSIP_STREAMS,
    GOSSIP_DROPPED,
    GOSSIP_HEALTH_SCORE,
    GOSSIP_ENCRYPTED,
    SLOTS,
    SLOTS_USED,
    SLOTS_FREE,
    QUEUE_LENGTH,
    APPLIES,
    APPLY_ERRORS,
    BACKEND_ERRORS,
    REFUSED_COMMANDS,
    DRIFT_REPAIRS,
    HAPROXY_RESTARTS,
    SUSPICION_DRAINS,
    EVALUATIONS,
    REFUSED_MEMBERS,
    PARTITION_GUARD_HOLDING,
    ALERTS_ACTIVE,
    MEMBER_CHANGE_TO_COMMAND,
    COMMAND_TO_CONFIRM,
    MAP_ENTRIES,
    MAP_IN_SYNC,
    MAP_COMMANDS,
    MAP_FILE_WRITES,
    MAP_ERRORS,
    SPOE_NOTIFIES,
    SPOE_TRUNCATED,
    SPOE_REJECTED,
    EVENT_HANDLER_RUNS,
    EVENT_HANDLER_DROPPED,
    EVENT_HANDLER_RESPONSES_REFUSED,
    METRICS_HTTP_REFUSED,
];

/// The standard process families (Prometheus' client guidelines), registered under the
/// `process_` prefix by `kubert-prometheus-process` (Linux: read from `/proc/self`).
pub const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_name_is_unique_prefixed_and_counter_names_do_not_end_in_total() {
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("haserf_"), "{}", f.name);
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name
            );
            if f.kind == Kind::Counter {
                assert!(!f.name.ends_with("_total"), "{}", f.name);
            }
        }
    }

    #[test]
    fn docs_metrics_md_lists_exactly_the_families_defined_here() {
        let doc = include_str!("../../docs/metrics.md");
        let documented: std::collections::BTreeSet<String> = doc
            .split('`')
            .filter(|w| w.starts_with("haserf_") || w.starts_with("process_"))
            .map(|w| w.split(['{', ' ']).next().unwrap_or(w).to_string())
            .collect();
        let defined: std::collections::BTreeSet<String> = ALL
            .iter()
            .map(Family::sample_name)
            .chain(PROCESS.iter().map(|s| s.to_string()))
            .collect();
        let missing: Vec<_> = defined.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&defined).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "docs/metrics.md lacks {missing:?}; names it that do not exist: {unknown:?}"
        );
    }
}

//! `haserf status` for people: `ready` first (and, when not ready, what it waits for), then
//! sections — cluster, HAProxy, backends, refused members, alerts — with times as RFC 3339
//! plus how long ago, and durations in `2h 5m` form. Reads the `status` reply's JSON, so a
//! field an older or newer agent lacks is simply left out.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::table::table;

/// `1d 2h`, `2h 5m`, `5m 3s`, `42s` (the two largest units).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// `2026-11-30T07:01:02Z (42s ago)` for a Unix time in seconds.
pub fn human_time(epoch_secs: f64, now: SystemTime) -> String {
    let Some(t) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(epoch_secs.max(0.0)))
    else {
        return epoch_secs.to_string();
    };
    let at = humantime::format_rfc3339_seconds(t);
    match now.duration_since(t) {
        Ok(ago) => format!("{at} ({} ago)", human_duration(ago)),
        Err(_) => at.to_string(),
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Why a load balancer is not ready yet, from its `haproxy` object.
fn waiting_for(h: &Value) -> String {
    if let Some(errors) = h["backend_errors"].as_object().filter(|e| !e.is_empty()) {
        let names: Vec<&str> = errors.keys().map(String::as_str).collect();
        return format!("backends that cannot be managed: {}", names.join(", "));
    }
    if h["membership_synced"] == false {
        return "waiting for the cluster (joining the --join seeds)".into();
    }
    match h.get("last_error").and_then(Value::as_str) {
        Some(e) => format!("waiting for HAProxy: {e}"),
        None => "waiting for the first reconcile with HAProxy".into(),
    }
}

/// The text of `haserf status` for a `status` reply, as of `now`.
pub fn status_text(v: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let h = &v["haproxy"];
    let ready = v["ready"] == true;
    if ready {
        out.push_str("ready: true\n");
    } else if h.is_object() {
        let _ = writeln!(out, "ready: false ({})", waiting_for(h));
    } else {
        out.push_str("ready: false\n");
    }
    let _ = writeln!(out, "node: {}", str_of(&v["node"]));
    let _ = writeln!(out, "mode: {}", str_of(&v["mode"]));

    out.push_str("\nCluster\n");
    let m = &v["members"];
    let _ = writeln!(
        out,
        "  members: {} alive ({} suspect), {} leaving, {} left, {} failed",
        count(m, "alive"),
        count(m, "suspect"),
        count(m, "leaving"),
        count(m, "left"),
        count(m, "failed")
    );
    let g = &v["gossip"];
    if g.is_object() {
        let dropped: u64 = g["dropped"]
            .as_object()
            .map(|d| d.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "  gossip: {}, health score {}, {} packets in / {} out, {} dropped",
            if g["encrypted"] == true {
                "encrypted"
            } else {
                "not encrypted"
            },
            count(g, "health_score"),
            count(g, "udp_packets_in"),
            count(g, "udp_packets_out"),
            dropped
        );
    }

    if !h.is_object() {
        return out;
    }
    out.push_str("\nHAProxy\n");
    let _ = writeln!(out, "  socket: {}", str_of(&h["socket"]));
    let uptime = h["uptime_sec"]
        .as_u64()
        .map(|s| human_duration(Duration::from_secs(s)))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  pid: {}, up {uptime}, restarts seen: {}",
        str_of(&h["pid"]),
        count(h, "restarts_seen")
    );
    let last = h["last_apply"]
        .as_f64()
        .map(|t| human_time(t, now))
        .unwrap_or_else(|| "never".into());
    let _ = writeln!(out, "  last apply: {last}");
    let _ = writeln!(
        out,
        "  applies: {}, apply errors: {}, drift repairs: {}, suspicion drains: {}",
        count(h, "applies"),
        count(h, "apply_errors"),
        count(h, "drift_repairs"),
        count(h, "suspicion_drains")
    );
    if let Some(e) = h["last_error"].as_str() {
        let _ = writeln!(out, "  last error: {e}");
    }

    if let Some(backends) = h["backends"].as_object() {
        out.push_str("\nBackends\n");
        let rows: Vec<Vec<String>> = backends
            .iter()
            .map(|(name, b)| {
                let list = |key: &str| {
                    let names: Vec<String> = b[key]
                        .as_array()
                        .map(|a| a.iter().map(str_of).collect())
                        .unwrap_or_default();
                    if names.is_empty() {
                        "-".to_string()
                    } else {
                        names.join(",")
                    }
                };
                vec![
                    name.clone(),
                    count(b, "slots").to_string(),
                    count(b, "used").to_string(),
                    count(b, "free").to_string(),
                    list("queued"),
                    list("guard_holding"),
                ]
            })
            .collect();
        for line in table(
            &[
                "BACKEND",
                "SLOTS",
                "USED",
                "FREE",
                "QUEUED",
                "GUARD HOLDING",
            ],
            &rows,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }

    if let Some(errors) = h["backend_errors"].as_object().filter(|e| !e.is_empty()) {
        out.push_str("\nBackends that cannot be managed\n");
        for (b, e) in errors {
            let _ = writeln!(out, "  {b}: {}", str_of(e));
        }
    }

    if let Some(refused) = h["refused_commands"].as_array().filter(|r| !r.is_empty()) {
        out.push_str("\nCommands HAProxy refused (not retried)\n");
        for r in refused {
            let _ = writeln!(
                out,
                "  {}/{} ({}): `{}`: {}",
                str_of(&r["backend"]),
                str_of(&r["slot"]),
                str_of(&r["member"]),
                str_of(&r["command"]),
                str_of(&r["reply"]).trim()
            );
        }
    }

    if let Some(refused) = h["refused"].as_array().filter(|r| !r.is_empty()) {
        out.push_str("\nRefused members\n");
        for r in refused {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                str_of(&r["member"]),
                str_of(&r["backend"]),
                str_of(&r["reason"])
            );
        }
    }

    if let Some(alerts) = h["alerts"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\nAlerts\n");
        for a in alerts {
            let state = if a["active"] == false {
                format!(
                    "resolved {}: {}",
                    str_of(&a["resolved_at"]),
                    str_of(&a["resolution"])
                )
            } else {
                "ACTIVE".to_string()
            };
            let _ = writeln!(
                out,
                "  {} {} {}: {} [{state}]",
                str_of(&a["at"]),
                str_of(&a["backend"]),
                str_of(&a["kind"]),
                str_of(&a["message"])
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_keep_the_two_largest_units() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(303)), "5m 3s");
        assert_eq!(human_duration(Duration::from_secs(7_500)), "2h 5m");
        assert_eq!(human_duration(Duration::from_secs(93_600)), "1d 2h");
    }

    #[test]
    fn ready_comes_first_then_sections_with_human_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_042);
        let v = json!({
            "node": "lb1", "mode": "load-balancer", "ready": true,
            "members": {"alive": 3, "left": 1, "suspect": 0},
            "gossip": {"encrypted": true, "health_score": 0, "udp_packets_in": 5,
                       "udp_packets_out": 6, "dropped": {"bad_packet": 2}},
            "haproxy": {"ready": true, "membership_synced": true, "socket": "/run/haproxy/admin.sock",
                        "pid": 42, "uptime_sec": 7500, "restarts_seen": 0,
                        "last_apply": 1_800_000_000.5, "applies": 3, "apply_errors": 0,
                        "drift_repairs": 1, "suspicion_drains": 0, "last_error": null,
                        "backends": {"web": {"slots": 10, "used": 3, "free": 7, "queued": [],
                                             "guard_holding": []}},
                        "refused": [{"member": "x", "backend": "web", "reason": "address 192.0.2.1 is outside --allow-cidr"}],
                        "alerts": [{"kind": "partition_guard", "backend": "web", "message": "holding 2 failed members in rotation: a, b",
                                    "active": false, "at": "2027-01-15T07:59:00Z",
                                    "resolved_at": "2027-01-15T07:59:30Z", "resolution": "held members recovered"}]}
        });
        let text = status_text(&v, now);
        assert!(text.starts_with("ready: true\nnode: lb1\n"), "{text}");
        for part in [
            "\nCluster\n  members: 3 alive (0 suspect), 0 leaving, 1 left, 0 failed\n",
            "  gossip: encrypted, health score 0, 5 packets in / 6 out, 2 dropped\n",
            "\nHAProxy\n",
            "  pid: 42, up 2h 5m, restarts seen: 0\n",
            "  last apply: 2027-01-15T08:00:00Z (41s ago)\n",
            "  BACKEND  SLOTS  USED  FREE  QUEUED  GUARD HOLDING\n  web      10     3     7     -       -\n",
            "\nRefused members\n  x (web): address 192.0.2.1 is outside --allow-cidr\n",
            "[resolved 2027-01-15T07:59:30Z: held members recovered]",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
        assert!(!text.contains("1800000000"), "no raw epoch: {text}");
    }

    #[test]
    fn a_load_balancer_that_is_not_ready_says_what_it_waits_for() {
        let now = SystemTime::now();
        let v = json!({"ready": false, "haproxy": {"membership_synced": true,
            "last_error": "connect /run/haproxy/admin.sock: No such file or directory"}});
        assert!(status_text(&v, now).starts_with(
            "ready: false (waiting for HAProxy: connect /run/haproxy/admin.sock: No such file or directory)\n"
        ));
        let v = json!({"ready": false, "haproxy": {"membership_synced": false}});
        assert!(status_text(&v, now).starts_with("ready: false (waiting for the cluster"));
    }

    #[test]
    fn backend_errors_and_refused_commands_are_shown_with_their_reasons() {
        let now = SystemTime::now();
        let v = json!({"ready": false, "haproxy": {"membership_synced": true,
            "backend_errors": {"nope": "backend \"nope\" does not exist in HAProxy (backends: web)"},
            "refused_commands": [{"backend": "web", "slot": "web2", "member": "n1",
                "command": "set weight web/web2 5",
                "reply": "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n"}]}});
        let text = status_text(&v, now);
        assert!(
            text.starts_with("ready: false (backends that cannot be managed: nope)\n"),
            "{text}"
        );
        for part in [
            "\nBackends that cannot be managed\n  nope: backend \"nope\" does not exist in HAProxy (backends: web)\n",
            "\nCommands HAProxy refused (not retried)\n  web/web2 (n1): `set weight web/web2 5`: Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
    }
}

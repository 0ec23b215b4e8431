//! Serf agent config compatibility: several config files and directories merged in serf's
//! order ([`read_paths`], as serf's `ReadConfigPaths` + `MergeConfig`), and the table of
//! every key `serf agent` reads ([`SERF_KEYS`]): each is read by [`super::FileConfig`]
//! (haserf gives it serf's meaning), implemented here ([`SerfFile`] → [`SerfSettings`]), or
//! accepted with one startup warning that says why it is ignored. A serf config never stops
//! the agent for its keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{parse_duration, ConfigError};
use crate::handlers::{parse_event_script, EventScript};

/// What haserf does with one of serf's agent config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Read by [`super::FileConfig`] with serf's meaning.
    Native,
    /// Read by [`SerfFile`] with serf's meaning.
    Implemented,
    /// Accepted with a startup warning giving this reason.
    Ignored(&'static str),
}

/// Every key of serf's agent `Config` (`cmd/serf/command/agent/config.go`, serf 0.10) and
/// what haserf does with it.
pub const SERF_KEYS: &[(&str, KeyUse)] = &[
    ("node_name", KeyUse::Native),
    ("bind", KeyUse::Native),
    ("advertise", KeyUse::Native),
    ("encrypt_key", KeyUse::Native),
    ("keyring_file", KeyUse::Native),
    ("tags", KeyUse::Native),
    ("start_join", KeyUse::Native),
    ("retry_join", KeyUse::Native),
    ("log_level", KeyUse::Native),
    ("profile", KeyUse::Native),
    ("role", KeyUse::Implemented),
    ("tags_file", KeyUse::Implemented),
    ("event_handlers", KeyUse::Implemented),
    ("snapshot_path", KeyUse::Implemented),
    ("rejoin_after_leave", KeyUse::Implemented),
    ("retry_interval", KeyUse::Implemented),
    ("retry_max_attempts", KeyUse::Implemented),
    ("leave_on_terminate", KeyUse::Implemented),
    ("skip_leave_on_interrupt", KeyUse::Implemented),
    ("reconnect_interval", KeyUse::Implemented),
    ("reconnect_timeout", KeyUse::Implemented),
    ("tombstone_timeout", KeyUse::Implemented),
    ("broadcast_timeout", KeyUse::Implemented),
    ("query_response_size_limit", KeyUse::Implemented),
    ("query_size_limit", KeyUse::Implemented),
    ("user_event_size_limit", KeyUse::Implemented),
    ("enable_compression", KeyUse::Implemented),
    (
        "rpc_addr",
        KeyUse::Ignored("this haserf build serves no Serf RPC; use the status socket and the haserf client commands"),
    ),
    (
        "rpc_auth",
        KeyUse::Ignored("this haserf build serves no Serf RPC; the status socket is protected by its file mode"),
    ),
    (
        "protocol",
        KeyUse::Ignored("haserf speaks serf protocol 5 (memberlist 2..5) and negotiates down like serf"),
    ),
    (
        "replay_on_join",
        KeyUse::Ignored("it applies to mDNS discovery joins, which haserf does not do"),
    ),
    (
        "discover",
        KeyUse::Ignored("mDNS discovery is not implemented; list seeds in start_join or retry_join"),
    ),
    (
        "interface",
        KeyUse::Ignored("give the address to bind to with bind (IP:PORT) instead"),
    ),
    (
        "disable_coordinates",
        KeyUse::Ignored("haserf computes no network coordinates"),
    ),
    (
        "disable_name_resolution",
        KeyUse::Ignored("haserf keeps the first holder of a name, as serf with resolution disabled"),
    ),
    (
        "enable_syslog",
        KeyUse::Ignored("haserf logs to stderr (journald under systemd); --log-format json for shippers"),
    ),
    (
        "syslog_facility",
        KeyUse::Ignored("haserf logs to stderr (journald under systemd)"),
    ),
    (
        "statsite_addr",
        KeyUse::Ignored("haserf exposes Prometheus metrics: set metrics_bind"),
    ),
    (
        "statsd_addr",
        KeyUse::Ignored("haserf exposes Prometheus metrics: set metrics_bind"),
    ),
];

/// What [`SERF_KEYS`] says about `key` (`None`: not a serf key).
pub fn key_use(key: &str) -> Option<KeyUse> {
    SERF_KEYS.iter().find(|(k, _)| *k == key).map(|(_, u)| *u)
}

/// Serf's "zero value": such a value in a later file does not override (`MergeConfig`
/// copies only set strings, numbers, durations and true booleans).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Merges config `b` over `a` as serf's `MergeConfig`: set values replace, lists
/// (`event_handlers`, `start_join`, `retry_join`, and haserf's own) are appended, objects
/// (`tags`) are merged key by key.
pub fn merge_values(a: &mut Map<String, Value>, b: Map<String, Value>) {
    for (k, v) in b {
        let present = a.contains_key(&k);
        match (a.get_mut(&k), v) {
            (Some(Value::Array(old)), Value::Array(new)) => old.extend(new),
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (tk, tv) in new {
                    old.insert(tk, tv);
                }
            }
            (_, v) if is_zero(&v) && present => {}
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::Parse {
            path: path.to_owned(),
            message: "a config file holds one JSON object".into(),
        }),
        Err(e) => Err(ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Reads config files and directories in the order given and merges them as serf does: a
/// directory contributes its `*.json` files (not subdirectories) in lexical order.
pub fn read_paths(paths: &[PathBuf]) -> Result<Map<String, Value>, ConfigError> {
    let mut merged = Map::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| !p.is_dir() && p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for f in files {
                merge_values(&mut merged, read_json(&f)?);
            }
        } else {
            merge_values(&mut merged, read_json(path)?);
        }
    }
    Ok(merged)
}

/// Does [`super::FileConfig`] read `key` itself (another part of haserf may implement a key
/// this table still lists as ignored)?
fn file_config_reads(key: &str) -> bool {
    let mut probe = Map::new();
    probe.insert(key.to_string(), Value::Null);
    match serde_json::from_value::<super::FileConfig>(Value::Object(probe)) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown field"),
    }
}

/// A merged config split three ways (see [`split`]).
#[derive(Debug)]
pub struct Split {
    /// The keys for [`super::FileConfig`].
    pub rest: Map<String, Value>,
    /// The serf keys implemented here.
    pub serf: SerfFile,
    /// One warning per ignored key.
    pub warnings: Vec<String>,
}

/// The merged config split three ways: keys for [`super::FileConfig`], the serf keys
/// implemented here, and one warning per ignored key.
pub fn split(mut merged: Map<String, Value>) -> Result<Split, ConfigError> {
    let mut serf = Map::new();
    let mut warnings = Vec::new();
    let keys: Vec<String> = merged.keys().cloned().collect();
    for k in keys {
        match key_use(&k) {
            Some(KeyUse::Implemented) => {
                serf.insert(k.clone(), merged.remove(&k).unwrap_or_default());
            }
            Some(KeyUse::Ignored(why)) if !file_config_reads(&k) => {
                merged.remove(&k);
                warnings.push(format!("config key {k:?} is ignored: {why}"));
            }
            _ if HASERF_KEYS.contains(&k.as_str()) => {
                serf.insert(k.clone(), merged.remove(&k).unwrap_or_default());
            }
            _ => {}
        }
    }
    let file: SerfFile =
        serde_json::from_value(Value::Object(serf)).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("(merged config)"),
            message: e.to_string(),
        })?;
    Ok(Split {
        rest: merged,
        serf: file,
        warnings,
    })
}

/// haserf's own keys that [`SerfFile`] reads (with the serf ones).
const HASERF_KEYS: &[&str] = &["event_handler_timeout"];

/// The serf keys implemented here, as written in the config.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SerfFile {
    /// Serf (deprecated): the `role` tag.
    pub role: Option<String>,
    /// Serf: tags persisted in this JSON file.
    pub tags_file: Option<PathBuf>,
    /// Serf: `[filter=]script` handlers.
    pub event_handlers: Option<Vec<String>>,
    /// haserf: longest a handler run may take (duration string, default 60s).
    pub event_handler_timeout: Option<String>,
    /// Serf: snapshot file.
    pub snapshot_path: Option<PathBuf>,
    /// Serf: rejoin from the snapshot even after a graceful leave.
    pub rejoin_after_leave: Option<bool>,
    /// Serf: time between retry_join attempts.
    pub retry_interval: Option<String>,
    /// Serf: retry_join attempts before giving up (0: forever).
    pub retry_max_attempts: Option<u32>,
    /// Serf: leave gracefully on SIGTERM.
    pub leave_on_terminate: Option<bool>,
    /// Serf: shut down without leaving on SIGINT.
    pub skip_leave_on_interrupt: Option<bool>,
    /// Serf: how often failed members are tried again.
    pub reconnect_interval: Option<String>,
    /// Serf: how long failed members are tried before being reaped.
    pub reconnect_timeout: Option<String>,
    /// Serf: how long left members are remembered.
    pub tombstone_timeout: Option<String>,
    /// Serf: how long a broadcast (leave) waits to be sent.
    pub broadcast_timeout: Option<String>,
    /// Serf: largest query response, bytes (encoded).
    pub query_response_size_limit: Option<usize>,
    /// Serf: largest query, bytes (encoded).
    pub query_size_limit: Option<usize>,
    /// Serf: largest user event, bytes.
    pub user_event_size_limit: Option<usize>,
    /// Serf: compress gossip messages.
    pub enable_compression: Option<bool>,
}

/// The flags that set these settings (`haserf agent --event-handler`, `--snapshot`,
/// `--tags-file`…; `None`/empty: not given).
#[derive(Debug, Default, Clone)]
pub struct SerfFlags {
    /// `--event-handler` (repeated): appended after the files' handlers, as serf does.
    pub event_handlers: Vec<String>,
    /// `--snapshot`.
    pub snapshot: Option<PathBuf>,
    /// `--rejoin`.
    pub rejoin: bool,
    /// `--tags-file`.
    pub tags_file: Option<PathBuf>,
}

/// The validated serf settings of the agent.
#[derive(Debug, Clone)]
pub struct SerfSettings {
    /// Handler scripts with their filters.
    pub event_scripts: Vec<EventScript>,
    /// Per-run timeout of a handler script.
    pub event_handler_timeout: Duration,
    /// Snapshot file.
    pub snapshot_path: Option<PathBuf>,
    /// Rejoin from the snapshot even after a graceful leave.
    pub rejoin_after_leave: bool,
    /// Tags file (read at start, written with the tags in effect).
    pub tags_file: Option<PathBuf>,
    /// `role` tag from the deprecated `role` key.
    pub role: Option<String>,
    /// Time between join attempts (serf default 30 s); `None`: haserf's backoff (1 s doubling to 30 s).
    pub retry_interval: Option<Duration>,
    /// Join attempts before the agent gives up and exits (0: forever).
    pub retry_max_attempts: u32,
    /// SIGTERM: leave gracefully (`None`: haserf's default, leave).
    pub leave_on_terminate: Option<bool>,
    /// SIGINT: shut down without leaving.
    pub skip_leave_on_interrupt: bool,
    /// Serf's reconnect interval.
    pub reconnect_interval: Option<Duration>,
    /// Serf's reconnect timeout.
    pub reconnect_timeout: Option<Duration>,
    /// Serf's tombstone timeout.
    pub tombstone_timeout: Option<Duration>,
    /// Serf's broadcast timeout.
    pub broadcast_timeout: Option<Duration>,
    /// Serf's query response size limit.
    pub query_response_size_limit: Option<usize>,
    /// Serf's query size limit.
    pub query_size_limit: Option<usize>,
    /// Serf's user event size limit.
    pub user_event_size_limit: Option<usize>,
    /// Compress gossip messages.
    pub enable_compression: Option<bool>,
    /// One line per ignored key, logged at start.
    pub warnings: Vec<String>,
}

impl Default for SerfSettings {
    fn default() -> Self {
        SerfSettings {
            event_scripts: Vec::new(),
            event_handler_timeout: Duration::from_secs(60),
            snapshot_path: None,
            rejoin_after_leave: false,
            tags_file: None,
            role: None,
            retry_interval: None,
            retry_max_attempts: 0,
            leave_on_terminate: None,
            skip_leave_on_interrupt: false,
            reconnect_interval: None,
            reconnect_timeout: None,
            tombstone_timeout: None,
            broadcast_timeout: None,
            query_response_size_limit: None,
            query_size_limit: None,
            user_event_size_limit: None,
            enable_compression: None,
            warnings: Vec::new(),
        }
    }
}

fn duration(key: &'static str, v: Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| parse_duration(&s).map_err(|message| ConfigError::Invalid { key, message }))
        .transpose()
}

impl SerfSettings {
    /// Validates the file's serf keys with the flags over them.
    pub fn resolve(
        file: SerfFile,
        flags: &SerfFlags,
        warnings: Vec<String>,
    ) -> Result<Self, ConfigError> {
        let mut event_scripts = Vec::new();
        for spec in file
            .event_handlers
            .unwrap_or_default()
            .iter()
            .chain(&flags.event_handlers)
        {
            event_scripts.extend(parse_event_script(spec).map_err(|message| {
                ConfigError::Invalid {
                    key: "--event-handler",
                    message,
                }
            })?);
        }
        let mut s = SerfSettings {
            event_scripts,
            snapshot_path: flags.snapshot.clone().or(file.snapshot_path),
            rejoin_after_leave: flags.rejoin || file.rejoin_after_leave.unwrap_or(false),
            tags_file: flags.tags_file.clone().or(file.tags_file),
            role: file.role.filter(|r| !r.is_empty()),
            retry_interval: duration("retry_interval", file.retry_interval)?,
            retry_max_attempts: file.retry_max_attempts.unwrap_or(0),
            leave_on_terminate: file.leave_on_terminate,
            skip_leave_on_interrupt: file.skip_leave_on_interrupt.unwrap_or(false),
            reconnect_interval: duration("reconnect_interval", file.reconnect_interval)?,
            reconnect_timeout: duration("reconnect_timeout", file.reconnect_timeout)?,
            tombstone_timeout: duration("tombstone_timeout", file.tombstone_timeout)?,
            broadcast_timeout: duration("broadcast_timeout", file.broadcast_timeout)?,
            query_response_size_limit: file.query_response_size_limit.filter(|n| *n > 0),
            query_size_limit: file.query_size_limit.filter(|n| *n > 0),
            user_event_size_limit: file.user_event_size_limit.filter(|n| *n > 0),
            enable_compression: file.enable_compression,
            warnings,
            ..SerfSettings::default()
        };
        if let Some(t) = duration("event_handler_timeout", file.event_handler_timeout)? {
            s.event_handler_timeout = t;
        }
        // serf raises too-low values to its minimums with a warning (command.go)
        if let Some(r) = s.retry_interval.as_mut() {
            if *r < Duration::from_secs(1) {
                *r = Duration::from_secs(1);
                s.warnings
                    .push("retry_interval is too low: using 1s (as serf)".into());
            }
        }
        if let Some(b) = s.broadcast_timeout.as_mut() {
            if *b < Duration::from_secs(1) {
                *b = Duration::from_secs(1);
                s.warnings
                    .push("broadcast_timeout is too low: using 1s (as serf)".into());
            }
        }
        if s.rejoin_after_leave && s.snapshot_path.is_none() {
            s.warnings
                .push("rejoin_after_leave is set without a snapshot_path (as serf warns)".into());
        }
        Ok(s)
    }

    /// Tags after the serf keys: the deprecated `role` key, then the tags file's tags over
    /// the configured ones when the file exists (serf refuses both at once; haserf lets the
    /// file win and says so).
    pub fn apply_tags(&mut self, tags: &mut BTreeMap<String, String>) -> Result<(), ConfigError> {
        if let Some(role) = &self.role {
            tags.insert("role".into(), role.clone());
        }
        let Some(path) = &self.tags_file else {
            return Ok(());
        };
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let saved: BTreeMap<String, String> =
                serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if !tags.is_empty() {
                self.warnings.push(format!(
                    "tags and tags_file are both set: the {} tag(s) saved in {} win",
                    saved.len(),
                    path.display()
                ));
            }
            tags.extend(saved);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn later_files_win_lists_append_tags_merge_and_zero_values_do_not_override() {
        let mut a = obj(json!({
            "node_name": "a", "log_level": "debug", "tags": {"role": "web", "dc": "1"},
            "start_join": ["10.0.0.1"], "event_handlers": ["a.sh"], "leave_on_terminate": true,
        }));
        merge_values(
            &mut a,
            obj(json!({
                "node_name": "b", "log_level": "", "tags": {"dc": "2"},
                "start_join": ["10.0.0.2"], "event_handlers": ["b.sh"], "leave_on_terminate": false,
                "snapshot_path": "/s",
            })),
        );
        assert_eq!(
            Value::Object(a),
            json!({
                "node_name": "b", "log_level": "debug", "tags": {"role": "web", "dc": "2"},
                "start_join": ["10.0.0.1", "10.0.0.2"], "event_handlers": ["a.sh", "b.sh"],
                "leave_on_terminate": true, "snapshot_path": "/s",
            })
        );
    }

    #[test]
    fn two_files_and_a_directory_merge_in_the_order_given_and_the_directory_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("one.json"),
            r#"{"node_name":"one","event_handlers":["1.sh"]}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("two.json"),
            r#"{"node_name":"two","event_handlers":["2.sh"]}"#,
        )
        .unwrap();
        let conf_d = d.join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(
            conf_d.join("20-b.json"),
            r#"{"node_name":"b","tags":{"x":"b"}}"#,
        )
        .unwrap();
        std::fs::write(
            conf_d.join("10-a.json"),
            r#"{"node_name":"a","tags":{"x":"a","y":"a"},"event_handlers":["a.sh"]}"#,
        )
        .unwrap();
        std::fs::write(conf_d.join("README"), "not json").unwrap();
        std::fs::create_dir(conf_d.join("sub.json")).unwrap();
        let m = read_paths(&[d.join("one.json"), d.join("two.json"), conf_d.clone()]).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"node_name":"b","event_handlers":["1.sh","2.sh","a.sh"],"tags":{"x":"b","y":"a"}})
        );
        // the same paths in another order give serf's other answer
        let m = read_paths(&[conf_d, d.join("two.json"), d.join("one.json")]).unwrap();
        assert_eq!(m["node_name"], json!("one"));
        assert_eq!(m["event_handlers"], json!(["a.sh", "2.sh", "1.sh"]));
    }

    #[test]
    fn every_serf_key_is_read_implemented_or_ignored_with_a_reason_never_refused() {
        let mut all = Map::new();
        for (k, _) in SERF_KEYS {
            all.insert(k.to_string(), Value::Null);
        }
        let Split { rest, warnings, .. } = split(all).unwrap();
        for (k, u) in SERF_KEYS {
            match u {
                KeyUse::Native => {
                    assert!(file_config_reads(k), "{k} is not a FileConfig key");
                    assert!(rest.contains_key(*k));
                }
                KeyUse::Implemented => assert!(!rest.contains_key(*k), "{k}"),
                KeyUse::Ignored(_) => {
                    let warned = warnings
                        .iter()
                        .filter(|w| w.contains(&format!("\"{k}\"")))
                        .count();
                    let native = file_config_reads(k);
                    assert!(native || warned == 1, "{k}: {warnings:?}");
                }
            }
        }
        let rest: super::super::FileConfig = serde_json::from_value(Value::Object(rest)).unwrap();
        assert_eq!(rest, super::super::FileConfig::default());
    }

    #[test]
    fn settings_follow_serf_minimums_and_flags_append_handlers() {
        let file: SerfFile = serde_json::from_value(json!({
            "event_handlers": ["member-join=a.sh"], "retry_interval": "100ms",
            "broadcast_timeout": "5s", "reconnect_timeout": "24h", "query_response_size_limit": 2048,
        }))
        .unwrap();
        let flags = SerfFlags {
            event_handlers: vec!["user:deploy=b.sh".into()],
            ..SerfFlags::default()
        };
        let s = SerfSettings::resolve(file, &flags, Vec::new()).unwrap();
        let scripts: Vec<_> = s.event_scripts.iter().map(|e| e.script.as_str()).collect();
        assert_eq!(scripts, ["a.sh", "b.sh"]);
        assert_eq!(s.retry_interval, Some(Duration::from_secs(1)));
        assert_eq!(s.broadcast_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.reconnect_timeout, Some(Duration::from_secs(86400)));
        assert_eq!(s.query_response_size_limit, Some(2048));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let bad = SerfFile {
            event_handlers: Some(vec!["member-joined=x".into()]),
            ..SerfFile::default()
        };
        assert!(SerfSettings::resolve(bad, &SerfFlags::default(), Vec::new()).is_err());
    }

    #[test]
    fn the_tags_file_wins_over_configured_tags_and_role_sets_the_role_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.json");
        std::fs::write(&path, r#"{"role":"db","zone":"b"}"#).unwrap();
        let mut s = SerfSettings {
            tags_file: Some(path),
            role: Some("web".into()),
            ..SerfSettings::default()
        };
        let mut tags: BTreeMap<String, String> = [("zone".into(), "a".into())].into();
        s.apply_tags(&mut tags).unwrap();
        assert_eq!(tags["role"], "db");
        assert_eq!(tags["zone"], "b");
        assert_eq!(s.warnings.len(), 1);
    }
}

//! `haserf agent` configuration: the `--config` JSON file ([`FileConfig`]: Serf agent keys
//! where they mean the same thing, plus haserf's own), overridden by the command-line flags
//! ([`AgentOptions`]), validated into one [`AgentConfig`]. An unknown key, a bad address or a
//! bad duration is an error naming it.
//!
//! A new agent setting: its flag goes in `src/cli.rs` (`AgentArgs`, the one place that knows
//! clap) and is moved into the same-named field of [`AgentOptions`] there; its config-file
//! key in [`FileConfig`]; its validated value in [`AgentConfig`], computed in
//! [`AgentConfig::merge`].
//!
//! (Over ~900 lines only with its unit tests: the code above them is about 770 lines, one
//! field and one merge rule per key.)

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod serf_compat;

use crate::control::DEFAULT_STATUS_SOCKET;

/// Serf's default RPC address (`rpc_addr`): loopback only.
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:7373";
use crate::policy::{BackendSelector, Cidr, GuardConfig};

/// Serf's default gossip port.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

/// The `haserf agent` flags as given, before the config file is merged in and anything is
/// validated: one field per flag, named after it (`--allow-cidr` → `allow_cidrs`). `None`
/// or empty means "not given" (the file's value or the default applies). Filled by
/// `src/cli.rs`; tests build it directly.
#[derive(Debug, Default, Clone)]
pub struct AgentOptions {
    /// `--node`: node name.
    pub node: Option<String>,
    /// `--bind`: gossip address (`IP:PORT`, `IP`, `HOST:PORT`).
    pub bind: Option<String>,
    /// `--advertise`: address other members use.
    pub advertise: Option<String>,
    /// `--join` (repeated): seeds.
    pub join: Vec<String>,
    /// `--tag KEY=VALUE` (repeated).
    pub tags: Vec<String>,
    /// `--encrypt`: base64 gossip key.
    pub encrypt: Option<String>,
    /// `--keyring-file`: Serf keyring file.
    pub keyring_file: Option<PathBuf>,
    /// `--haproxy-socket`: HAProxy runtime API.
    pub haproxy_socket: Option<String>,
    /// `--backend NAME[=KEY=VALUE,...]` (repeated).
    pub backends: Vec<String>,
    /// `--allow-cidr` (repeated).
    pub allow_cidrs: Vec<String>,
    /// `--status-socket`: status socket path.
    pub status_socket: Option<PathBuf>,
    /// `--status-socket-mode`: octal file mode.
    pub status_socket_mode: Option<String>,
    /// `--status-socket-group`: group name or gid.
    pub status_socket_group: Option<String>,
    /// `--haproxy-map KIND=PATH` (repeated): HAProxy maps to keep.
    pub haproxy_maps: Vec<String>,
    /// `--spoe-bind`: SPOP listen address.
    pub spoe_bind: Option<String>,
    /// `--metrics-bind`: HTTP `/metrics` listen address.
    pub metrics_bind: Option<String>,
    /// `--rpc-addr`: Serf RPC listen address ("" = off).
    pub rpc_addr: Option<String>,
    /// `--rpc-auth`: Serf RPC auth token.
    pub rpc_auth: Option<String>,
    /// `--config` (repeatable): JSON config files or directories, merged in this order as
    /// serf merges `-config-file`/`-config-dir` ([`serf_compat::read_paths`]).
    pub config: Vec<PathBuf>,
    /// `--config-dir` (repeatable): directories of `*.json` files, merged after `--config`.
    pub config_dir: Vec<PathBuf>,
    /// Serf's handler, snapshot and tags-file flags.
    pub serf: serf_compat::SerfFlags,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--profile`: gossip timing profile name.
    pub profile: Option<String>,
    /// `--drain-timeout`: duration string.
    pub drain_timeout: Option<String>,
    /// `--first-check-alert`: duration string.
    pub first_check_alert: Option<String>,
    /// `--server-state-file`: HAProxy server-state file to keep.
    pub server_state_file: Option<PathBuf>,
    /// `--no-suspicion-drain`.
    pub no_suspicion_drain: bool,
    /// `--partition-guard-share`.
    pub partition_guard_share: Option<f64>,
    /// `--partition-guard-window`: duration string.
    pub partition_guard_window: Option<String>,
    /// `--partition-guard-hold`: duration string.
    pub partition_guard_hold: Option<String>,
    /// `--admit [BACKEND=]check|gossip` (repeated).
    pub admit: Vec<String>,
    /// `--admit-probe [BACKEND=]tcp|http:/PATH` (repeated).
    pub admit_probe: Vec<String>,
}

/// Log line format of the agent (`--log-format`, `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The config file as written by users. Keys are Serf's where they mean the same.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Serf: node name.
    pub node_name: Option<String>,
    /// Serf: bind address (`IP` or `IP:PORT`).
    pub bind: Option<String>,
    /// Serf: advertise address (`IP` or `IP:PORT`).
    pub advertise: Option<String>,
    /// Serf: base64 gossip key.
    pub encrypt_key: Option<String>,
    /// Serf: keyring file.
    pub keyring_file: Option<PathBuf>,
    /// Serf: tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Serf: join at start.
    pub start_join: Option<Vec<String>>,
    /// Serf: join at start, retried (haserf retries every join).
    pub retry_join: Option<Vec<String>>,
    /// Serf: log level.
    pub log_level: Option<String>,
    /// Serf: timing profile (lan, local, wan).
    pub profile: Option<String>,
    /// haserf: HAProxy runtime API.
    pub haproxy_socket: Option<String>,
    /// haserf: backends (`NAME[=KEY=VALUE,...]`).
    pub backends: Option<Vec<String>>,
    /// haserf: allowed networks.
    pub allow_cidrs: Option<Vec<String>>,
    /// haserf: status socket path.
    pub status_socket: Option<PathBuf>,
    /// haserf: status socket mode, octal string such as "0660".
    pub status_socket_mode: Option<String>,
    /// haserf: status socket group.
    pub status_socket_group: Option<String>,
    /// haserf: HAProxy maps to keep (`KIND=PATH`, as `--haproxy-map`).
    pub haproxy_maps: Option<Vec<String>>,
    /// haserf: SPOP listen address.
    pub spoe_bind: Option<String>,
    /// haserf: HTTP `/metrics` listen address (`IP:PORT`).
    pub metrics_bind: Option<String>,
    /// Serf: RPC listen address (`IP:PORT`; "" = off).
    pub rpc_addr: Option<String>,
    /// Serf: RPC auth token.
    pub rpc_auth: Option<String>,
    /// Serf: no network coordinates (`serf rtt` then finds none for this node).
    pub disable_coordinates: Option<bool>,
    /// haserf: log format (text, json).
    pub log_format: Option<String>,
    /// haserf: drain suspected members (default true).
    pub suspicion_drain: Option<bool>,
    /// haserf: drain deadline for leaving members (e.g. "30s").
    pub drain_timeout: Option<String>,
    /// haserf: a filled slot waiting longer than this for its first passing check raises a
    /// `first_check` alert (e.g. "20s").
    pub first_check_alert: Option<String>,
    /// haserf: HAProxy server-state file to keep (as `--server-state-file`).
    pub server_state_file: Option<PathBuf>,
    /// haserf: partition guard.
    pub partition_guard: Option<FileGuard>,
    /// haserf: admission, `[BACKEND=]check|gossip` items (as `--admit`).
    pub admit: Option<Vec<String>>,
    /// haserf: the agent's admission probe, `[BACKEND=]tcp|http:/PATH` items.
    pub admit_probe: Option<Vec<String>>,
}

/// `partition_guard` object of the config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileGuard {
    /// Share of members (0..1; >= 1 disables).
    pub share: Option<f64>,
    /// Window (duration string).
    pub window: Option<String>,
    /// Hold time (duration string).
    pub hold: Option<String>,
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name.
    pub node_name: String,
    /// Gossip bind address.
    pub bind: SocketAddr,
    /// Gossip advertise address (None = derived from bind).
    pub advertise: Option<SocketAddr>,
    /// Seeds to join (retried with backoff until one succeeds).
    pub join: Vec<String>,
    /// This node's tags.
    pub tags: BTreeMap<String, String>,
    /// Base64 gossip keys, primary first (from `--encrypt` or the keyring file).
    pub keys: Vec<String>,
    /// Keyring file to load and keep up to date.
    pub keyring_file: Option<PathBuf>,
    /// Gossip timing profile.
    pub profile: Profile,
    /// HAProxy runtime API (None = backend-node mode).
    pub haproxy_socket: Option<String>,
    /// Managed backends.
    pub backends: Vec<BackendSelector>,
    /// Allowed networks.
    pub allow_cidrs: Vec<Cidr>,
    /// Status socket path.
    pub status_socket: PathBuf,
    /// Status socket mode.
    pub status_socket_mode: u32,
    /// Status socket group.
    pub status_socket_group: Option<String>,
    /// HAProxy maps to keep (`--haproxy-map`).
    pub maps: Vec<crate::maps::MapSpec>,
    /// SPOP listen address.
    pub spoe_bind: Option<SocketAddr>,
    /// HTTP `/metrics` listen address (Prometheus scrapes).
    pub metrics_bind: Option<SocketAddr>,
    /// Serf RPC listen address (None = off; default 127.0.0.1:7373 like serf).
    pub rpc_addr: Option<SocketAddr>,
    /// True when `rpc_addr` is the default, not configured: then an address in use only
    /// turns the RPC off (with a warning) instead of stopping the agent.
    pub rpc_addr_default: bool,
    /// Serf RPC auth token (`rpc_auth`).
    pub rpc_auth: Option<String>,
    /// Serf's `disable_coordinates`.
    pub disable_coordinates: bool,
    /// Log level.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Drain suspected members.
    pub suspicion_drain: bool,
    /// Drain deadline for leaving members.
    pub drain_timeout: Duration,
    /// Serf agent settings: handlers, snapshot, retry, leave, timeouts, limits.
    pub serf: serf_compat::SerfSettings,
    /// A filled slot waiting longer than this for its first passing health check raises a
    /// `first_check` alert (default [`crate::manager::first_check::FIRST_CHECK_ALERT`]).
    pub first_check_alert: Duration,
    /// HAProxy's server-state file, kept after every applied change (`--server-state-file`).
    pub server_state_file: Option<PathBuf>,
    /// Partition guard.
    pub guard: GuardConfig,
    /// Admission per managed backend (`--admit`, `--admit-probe`).
    pub admission: BTreeMap<String, crate::slots::Admission>,
}

/// Gossip timing profile (Serf's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Serf's default.
    Lan,
    /// Fast timers for one machine.
    Local,
    /// Slow timers for wide-area links.
    Wan,
}

/// A configuration error, naming the key or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid (unknown key, wrong type, bad JSON).
    #[error("config file {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// serde's message, which names the key.
        message: String,
    },
    /// A value is invalid.
    #[error("{key}: {message}")]
    Invalid {
        /// Flag or key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl AgentConfig {
    /// Builds the configuration from the flags and the `--config` files and directories
    /// (merged as serf merges them); flags win over the files.
    pub fn from_options(args: &AgentOptions) -> Result<Self, ConfigError> {
        let paths: Vec<PathBuf> = args
            .config
            .iter()
            .chain(&args.config_dir)
            .cloned()
            .collect();
        let merged = serf_compat::read_paths(&paths)?;
        let serf_compat::Split {
            rest,
            serf: serf_file,
            warnings,
        } = serf_compat::split(merged)?;
        let file: FileConfig =
            serde_json::from_value(serde_json::Value::Object(rest)).map_err(|e| {
                ConfigError::Parse {
                    path: paths.first().cloned().unwrap_or_default(),
                    message: e.to_string(),
                }
            })?;
        let mut cfg = Self::merge(args, file)?;
        cfg.serf = serf_compat::SerfSettings::resolve(serf_file, &args.serf, warnings)?;
        cfg.serf.apply_tags(&mut cfg.tags)?;
        Ok(cfg)
    }

    /// Merges flags over a parsed file and validates everything.
    pub fn merge(args: &AgentOptions, file: FileConfig) -> Result<Self, ConfigError> {
        let node_name = match args.node.clone().or(file.node_name) {
            Some(name) => name,
            None => hostname()?,
        };
        if node_name.is_empty() || node_name.len() > 128 {
            return Err(invalid("--node", "a node name has 1 to 128 characters"));
        }
        let bind = args.bind.clone().or(file.bind);
        let bind = match bind {
            Some(b) => parse_gossip_addr("--bind", &b)?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_GOSSIP_PORT),
        };
        let advertise = args
            .advertise
            .clone()
            .or(file.advertise)
            .map(|a| parse_gossip_addr("--advertise", &a))
            .transpose()?;
        let join = if args.join.is_empty() {
            let mut j = file.start_join.unwrap_or_default();
            j.extend(file.retry_join.unwrap_or_default());
            j
        } else {
            args.join.clone()
        };
        let mut tags = file.tags.unwrap_or_default();
        for tag in &args.tags {
            let (k, v) = tag
                .split_once('=')
                .ok_or_else(|| invalid("--tag", format!("{tag:?} is not KEY=VALUE")))?;
            if k.is_empty() {
                return Err(invalid("--tag", format!("{tag:?} has an empty key")));
            }
            tags.insert(k.to_string(), v.to_string());
        }
        let encrypt = args.encrypt.clone().or(file.encrypt_key);
        let keyring_file = args.keyring_file.clone().or(file.keyring_file);
        if encrypt.is_some() && keyring_file.is_some() {
            return Err(invalid(
                "--encrypt",
                "use either --encrypt or --keyring-file, not both (as serf)",
            ));
        }
        let keys = match (&encrypt, &keyring_file) {
            (Some(key), _) => {
                check_key("--encrypt", key)?;
                vec![key.clone()]
            }
            (None, Some(path)) => read_keyring(path)?,
            (None, None) => Vec::new(),
        };
        let profile = match args.profile.clone().or(file.profile).as_deref() {
            None | Some("lan") => Profile::Lan,
            Some("local") => Profile::Local,
            Some("wan") => Profile::Wan,
            Some(other) => {
                return Err(invalid(
                    "--profile",
                    format!("{other:?}: expected lan, local or wan"),
                ))
            }
        };
        let backend_specs = if args.backends.is_empty() {
            file.backends.unwrap_or_default()
        } else {
            args.backends.clone()
        };
        let backends = backend_specs
            .iter()
            .map(|b| BackendSelector::parse(b).map_err(|e| invalid("--backend", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for b in &backends {
            if !seen.insert(&b.backend) {
                return Err(invalid(
                    "--backend",
                    format!("backend {:?} given twice", b.backend),
                ));
            }
        }
        let cidr_specs = if args.allow_cidrs.is_empty() {
            file.allow_cidrs.unwrap_or_default()
        } else {
            args.allow_cidrs.clone()
        };
        let allow_cidrs = cidr_specs
            .iter()
            .map(|c| {
                c.parse::<Cidr>()
                    .map_err(|e| invalid("--allow-cidr", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let haproxy_socket = args.haproxy_socket.clone().or(file.haproxy_socket);
        if haproxy_socket.is_none() && !backends.is_empty() {
            return Err(invalid("--backend", "needs --haproxy-socket"));
        }
        if haproxy_socket.is_some() && backends.is_empty() {
            return Err(invalid(
                "--haproxy-socket",
                "needs at least one --backend NAME to manage",
            ));
        }
        let map_specs = if args.haproxy_maps.is_empty() {
            file.haproxy_maps.unwrap_or_default()
        } else {
            args.haproxy_maps.clone()
        };
        let maps =
            crate::maps::MapSpec::parse_all(&map_specs).map_err(|e| invalid("--haproxy-map", e))?;
        if haproxy_socket.is_none() && !maps.is_empty() {
            return Err(invalid("--haproxy-map", "needs --haproxy-socket"));
        }
        let status_socket = args
            .status_socket
            .clone()
            .or(file.status_socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_SOCKET));
        let mode = args.status_socket_mode.clone().or(file.status_socket_mode);
        let status_socket_mode = match mode {
            None => 0o600,
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    invalid(
                        "--status-socket-mode",
                        format!("{m:?} is not an octal mode such as 0660"),
                    )
                })?,
        };
        let spoe_bind = listen_addr("--spoe-bind", args.spoe_bind.clone().or(file.spoe_bind))?;
        let metrics_bind = listen_addr(
            "--metrics-bind",
            args.metrics_bind.clone().or(file.metrics_bind),
        )?;
        let rpc_configured = args.rpc_addr.clone().or(file.rpc_addr);
        let rpc_addr_default = rpc_configured.is_none();
        let rpc_addr = match rpc_configured {
            Some(a) if a.is_empty() => None,
            a => listen_addr(
                "--rpc-addr",
                Some(a.unwrap_or_else(|| DEFAULT_RPC_ADDR.to_string())),
            )?,
        };
        let rpc_auth = args
            .rpc_auth
            .clone()
            .or(file.rpc_auth)
            .filter(|t| !t.is_empty());
        let log_level = args
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid(
                "--log-level",
                format!("{log_level:?}: expected error, warn, info, debug or trace"),
            ));
        }
        let log_format = match (args.log_format, file.log_format.as_deref()) {
            (Some(f), _) => f,
            (None, None | Some("text")) => LogFormat::Text,
            (None, Some("json")) => LogFormat::Json,
            (None, Some(other)) => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?}: expected text or json"),
                ))
            }
        };
        let suspicion_drain = !args.no_suspicion_drain && file.suspicion_drain.unwrap_or(true);
        let drain_timeout = args
            .drain_timeout
            .clone()
            .or(file.drain_timeout)
            .map(|d| parse_duration(&d).map_err(|m| invalid("--drain-timeout", m)))
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        let first_check_alert = args
            .first_check_alert
            .clone()
            .or(file.first_check_alert)
            .map(|d| parse_duration(&d).map_err(|m| invalid("--first-check-alert", m)))
            .transpose()?
            .unwrap_or(crate::manager::first_check::FIRST_CHECK_ALERT);
        let fg = file.partition_guard.unwrap_or_default();
        let default_guard = GuardConfig::default();
        let share = args
            .partition_guard_share
            .or(fg.share)
            .unwrap_or(default_guard.share);
        if !(share.is_finite() && share > 0.0) {
            return Err(invalid(
                "--partition-guard-share",
                "a share is a number above 0 (1 or more disables the guard)",
            ));
        }
        let window = args
            .partition_guard_window
            .clone()
            .or(fg.window)
            .map(|d| parse_duration(&d).map_err(|m| invalid("--partition-guard-window", m)))
            .transpose()?
            .unwrap_or(default_guard.window);
        let hold = args
            .partition_guard_hold
            .clone()
            .or(fg.hold)
            .map(|d| parse_duration(&d).map_err(|m| invalid("--partition-guard-hold", m)))
            .transpose()?
            .unwrap_or(default_guard.hold);
        // the file's items first, then the flags (the last one for a backend wins)
        let then =
            |f: Option<Vec<String>>, a: &[String]| [f.unwrap_or_default(), a.to_vec()].concat();
        let admission = admission(
            &backends,
            &then(file.admit, &args.admit),
            &then(file.admit_probe, &args.admit_probe),
        )?;
        Ok(AgentConfig {
            node_name,
            bind,
            advertise,
            join,
            tags,
            keys,
            keyring_file,
            profile,
            haproxy_socket,
            backends,
            allow_cidrs,
            status_socket,
            status_socket_mode,
            status_socket_group: args
                .status_socket_group
                .clone()
                .or(file.status_socket_group),
            maps,
            spoe_bind,
            metrics_bind,
            rpc_addr,
            rpc_addr_default,
            rpc_auth,
            disable_coordinates: file.disable_coordinates.unwrap_or(false),
            log_level,
            log_format,
            suspicion_drain,
            drain_timeout,
            first_check_alert,
            server_state_file: args.server_state_file.clone().or(file.server_state_file),
            guard: GuardConfig {
                share,
                window,
                hold,
            },
            admission,
            serf: serf_compat::SerfSettings::default(),
        })
    }
}

/// Parses a listen address given as `IP:PORT` (`--spoe-bind`, `--metrics-bind`).
fn listen_addr(key: &'static str, s: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    s.map(|s| {
        s.parse::<SocketAddr>()
            .map_err(|_| invalid(key, format!("{s:?} is not IP:PORT")))
    })
    .transpose()
}

/// Parses a gossip address: `IP:PORT`, `IP` (port 7946) or `HOST:PORT`.
pub fn parse_gossip_addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_GOSSIP_PORT));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:{DEFAULT_GOSSIP_PORT}")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| {
            invalid(
                key,
                format!("{s:?} is not IP:PORT, IP or a resolvable HOST:PORT"),
            )
        })
}

/// Parses Go-style durations: `500ms`, `30s`, `2m`, `1h`, `1m30s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 500ms, 30s or 2m");
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn check_key(key: &'static str, b64: &str) -> Result<(), ConfigError> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| invalid(key, format!("not base64: {e}")))?;
    if ![16, 24, 32].contains(&raw.len()) {
        return Err(invalid(
            key,
            format!("a key is 16, 24 or 32 bytes, this one is {}", raw.len()),
        ));
    }
    Ok(())
}

fn read_keyring(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("--keyring-file", format!("{}: {e}", path.display())))?;
    let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        invalid(
            "--keyring-file",
            format!(
                "{}: expected a JSON list of base64 keys: {e}",
                path.display()
            ),
        )
    })?;
    if keys.is_empty() {
        return Err(invalid(
            "--keyring-file",
            format!("{}: no keys", path.display()),
        ));
    }
    for key in &keys {
        check_key("--keyring-file", key)?;
    }
    Ok(keys)
}

fn hostname() -> Result<String, ConfigError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("--node", "no hostname found; give --node NAME"))
}

/// Each managed backend's admission from the `--admit` and `--admit-probe` values (the
/// file's items first, then the flags: a later value for the same backend, or a later
/// default, wins). A backend named there but not managed is an error.
fn admission(
    backends: &[BackendSelector],
    admit: &[String],
    probes: &[String],
) -> Result<BTreeMap<String, crate::slots::Admission>, ConfigError> {
    use crate::slots::admission::parse_per_backend;
    use crate::slots::{Admission, Admit, Probe};
    let (mode, modes) =
        parse_per_backend(admit, Admit::parse).map_err(|m| invalid("--admit", m))?;
    let (probe, per_probe) =
        parse_per_backend(probes, Probe::parse).map_err(|m| invalid("--admit-probe", m))?;
    for (flag, name) in modes
        .keys()
        .map(|n| ("--admit", n))
        .chain(per_probe.keys().map(|n| ("--admit-probe", n)))
    {
        if !backends.iter().any(|b| &b.backend == name) {
            return Err(invalid(
                flag,
                format!("{name:?} is not a managed --backend"),
            ));
        }
    }
    Ok(backends
        .iter()
        .map(|b| {
            let a = Admission {
                mode: modes.get(&b.backend).copied().or(mode).unwrap_or_default(),
                probe: per_probe
                    .get(&b.backend)
                    .cloned()
                    .or_else(|| probe.clone())
                    .unwrap_or_default(),
            };
            (b.backend.clone(), a)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentOptions {
        AgentOptions {
            node: Some("lb1".into()),
            ..AgentOptions::default()
        }
    }

    #[test]
    fn defaults_match_serf() {
        let c = AgentConfig::merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(c.bind, "0.0.0.0:7946".parse().unwrap());
        assert_eq!(c.profile, Profile::Lan);
        assert_eq!(c.status_socket, PathBuf::from("/run/haserf/haserf.sock"));
        assert_eq!(c.status_socket_mode, 0o600);
        assert!(c.suspicion_drain);
        assert!(c.keys.is_empty());
    }

    #[test]
    fn admission_is_check_by_default_and_set_per_backend_with_flags_over_the_file() {
        use crate::slots::{Admit, Probe};
        let mut a = args();
        a.backends = vec!["web".into(), "api".into()];
        a.haproxy_socket = Some("/run/haproxy/admin.sock".into());
        let c = AgentConfig::merge(&a, FileConfig::default()).unwrap();
        assert_eq!(c.admission["web"].mode, Admit::Check);
        assert_eq!(c.admission["web"].probe, Probe::Tcp);
        a.admit = vec!["api=check".into()];
        a.admit_probe = vec!["web=http:/healthz".into()];
        let file = FileConfig {
            admit: Some(vec!["gossip".into(), "api=gossip".into()]),
            ..FileConfig::default()
        };
        let c = AgentConfig::merge(&a, file).unwrap();
        assert_eq!(c.admission["web"].mode, Admit::Gossip, "the file's default");
        assert_eq!(c.admission["api"].mode, Admit::Check, "the flag wins");
        assert_eq!(c.admission["web"].probe.to_string(), "http:/healthz");
        a.admit = vec!["db=gossip".into()];
        let err = AgentConfig::merge(&a, FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("not a managed --backend"), "{err}");
        a.admit = vec!["soon".into()];
        assert!(AgentConfig::merge(&a, FileConfig::default()).is_err());
    }

    #[test]
    fn an_unknown_config_key_is_an_error_that_names_it() {
        let err =
            serde_json::from_str::<FileConfig>(r#"{"node_name":"a","bind_addr":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("bind_addr"), "{err}");
    }

    #[test]
    fn serf_keys_are_read_and_flags_win() {
        let file: FileConfig = serde_json::from_str(
            r#"{"node_name":"from-file","bind":"127.0.0.9","tags":{"role":"lb","dc":"x"},
                "start_join":["127.0.0.1:7946"],"log_level":"DEBUG"}"#,
        )
        .unwrap();
        let mut a = args();
        a.tags = vec!["dc=y".into()];
        let c = AgentConfig::merge(&a, file).unwrap();
        assert_eq!(c.node_name, "lb1");
        assert_eq!(c.bind, "127.0.0.9:7946".parse().unwrap());
        assert_eq!(c.tags["role"], "lb");
        assert_eq!(c.tags["dc"], "y");
        assert_eq!(c.join, vec!["127.0.0.1:7946".to_string()]);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.metrics_bind, None);
        let file: FileConfig =
            serde_json::from_str(r#"{"metrics_bind":"127.0.0.1:9101"}"#).unwrap();
        let c = AgentConfig::merge(&args(), file).unwrap();
        assert_eq!(c.metrics_bind, Some("127.0.0.1:9101".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: Vec<(AgentOptions, &str)> = vec![
            (
                AgentOptions {
                    bind: Some("nope:x".into()),
                    ..args()
                },
                "--bind",
            ),
            (
                AgentOptions {
                    tags: vec!["novalue".into()],
                    ..args()
                },
                "--tag",
            ),
            (
                AgentOptions {
                    encrypt: Some("c2hvcnQ=".into()),
                    ..args()
                },
                "--encrypt",
            ),
            (
                AgentOptions {
                    backends: vec!["web".into()],
                    ..args()
                },
                "--backend",
            ),
            (
                AgentOptions {
                    haproxy_socket: Some("/x".into()),
                    ..args()
                },
                "--haproxy-socket",
            ),
            (
                AgentOptions {
                    drain_timeout: Some("soon".into()),
                    ..args()
                },
                "--drain-timeout",
            ),
            (
                AgentOptions {
                    profile: Some("fast".into()),
                    ..args()
                },
                "--profile",
            ),
            (
                AgentOptions {
                    log_level: Some("loud".into()),
                    ..args()
                },
                "--log-level",
            ),
            (
                AgentOptions {
                    status_socket_mode: Some("999".into()),
                    ..args()
                },
                "--status-socket-mode",
            ),
            (
                AgentOptions {
                    allow_cidrs: vec!["10/8".into()],
                    ..args()
                },
                "--allow-cidr",
            ),
            (
                AgentOptions {
                    metrics_bind: Some("9100".into()),
                    ..args()
                },
                "--metrics-bind",
            ),
        ];
        for (a, flag) in cases {
            let err = AgentConfig::merge(&a, FileConfig::default()).unwrap_err();
            assert!(err.to_string().starts_with(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn a_backend_needs_a_socket_and_selectors_parse() {
        let a = AgentOptions {
            haproxy_socket: Some("/run/haproxy/admin.sock".into()),
            backends: vec!["web".into(), "api=role=web,tier=api".into()],
            ..args()
        };
        let c = AgentConfig::merge(&a, FileConfig::default()).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[1].tags["tier"], "api");
    }
}

//! Command-line definitions (clap). `src/main.rs` parses these and calls [`run`];
//! each subcommand is handled by the module that owns it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::control::model::Request;

/// Default path of the agent's status socket.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/haserf/haserf.sock";

/// haserf: keep HAProxy server-template slots filled from a Serf cluster, with zero reloads.
#[derive(Debug, Parser)]
#[command(name = "haserf", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of DESIGN.md.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cluster member (and the HAProxy manager if --haproxy-socket is given).
    Agent(Box<AgentArgs>),
    /// Members as the running agent sees them (like `serf members`).
    Members(ClientArgs),
    /// Slot table: backend, slot, member, addr, state, HAProxy status.
    Slots(ClientArgs),
    /// Cluster, slots used/free, HAProxy pid/uptime, last apply, errors.
    Status(ClientArgs),
    /// Graceful leave of the running agent.
    Leave(ClientArgs),
    /// Print a new base64 gossip encryption key (32 bytes, AES-256).
    Keygen,
    /// Read HAProxy's slots once (nom parser); non-zero exit on any error.
    Verify(VerifyArgs),
    /// Dry run: the runtime commands a membership would send.
    Plan(PlanArgs),
}

/// Output format of client subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable table.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `haserf agent`.
#[derive(Debug, Args, Default, Clone)]
pub struct AgentArgs {
    /// Node name (default: hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// Gossip UDP+TCP address (default 0.0.0.0:7946).
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<String>,
    /// Address other members should use to reach this one.
    #[arg(long, value_name = "IP:PORT")]
    pub advertise: Option<String>,
    /// Join through this member; repeatable; retried with backoff until one succeeds.
    #[arg(long, value_name = "IP:PORT")]
    pub join: Vec<String>,
    /// This node's tags; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Serf-compatible gossip key (base64 of 16, 24 or 32 bytes).
    #[arg(long, value_name = "BASE64KEY")]
    pub encrypt: Option<String>,
    /// Serf keyring file (JSON list of base64 keys, first is primary).
    #[arg(long, value_name = "PATH")]
    pub keyring_file: Option<PathBuf>,
    /// HAProxy runtime API (admin level): unix socket path or IP:PORT.
    #[arg(long, value_name = "PATH|IP:PORT")]
    pub haproxy_socket: Option<String>,
    /// Members matching all tags fill NAME's slots (default selector: role=NAME); repeatable.
    #[arg(long = "backend", value_name = "NAME[=KEY=VALUE,...]")]
    pub backends: Vec<String>,
    /// Only members whose address is inside these networks get a slot; repeatable (default: any).
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
    /// Status socket path (default /run/haserf/haserf.sock).
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
    /// Status socket file mode, octal (default 0600).
    #[arg(long, value_name = "MODE")]
    pub status_socket_mode: Option<String>,
    /// Status socket group (name or gid).
    #[arg(long, value_name = "GROUP")]
    pub status_socket_group: Option<String>,
    /// Keep an HAProxy map (declared in haproxy.cfg with `map(PATH)`) and its file equal to
    /// the cluster; KIND: served-by, member-status, member-tags, tag:NAME; repeatable.
    #[arg(long = "haproxy-map", value_name = "KIND=PATH")]
    pub haproxy_maps: Vec<String>,
    /// Serve SPOP to HAProxy on this address.
    #[arg(long, value_name = "IP:PORT")]
    pub spoe_bind: Option<String>,
    /// JSON config file: Serf agent keys where they mean the same thing, plus haserf's own.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Gossip timing profile: lan (Serf's default), local, wan.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Longest a leaving member's slot stays DRAIN before it goes to MAINT (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Do not drain a member as soon as the failure detector suspects it.
    #[arg(long)]
    pub no_suspicion_drain: bool,
    /// Partition guard: hold when this share of a backend or more fails at once (>= 1 disables).
    #[arg(long, value_name = "SHARE")]
    pub partition_guard_share: Option<f64>,
    /// Partition guard: how far back failures count together (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub partition_guard_window: Option<String>,
    /// Partition guard: how long the last good set is held (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub partition_guard_hold: Option<String>,
}

/// Flags shared by the client subcommands that talk to a running agent.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The agent's status socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATUS_SOCKET)]
    pub status_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Flags of `haserf verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// HAProxy runtime API: unix socket path or IP:PORT.
    #[arg(long, value_name = "PATH|IP:PORT")]
    pub haproxy_socket: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Accepted for symmetry with the other clients; unused.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATUS_SOCKET, hide = true)]
    pub status_socket: PathBuf,
}

/// Flags of `haserf plan`.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// HAProxy runtime API: unix socket path or IP:PORT.
    #[arg(long, value_name = "PATH|IP:PORT")]
    pub haproxy_socket: String,
    /// Membership as JSON (the `haserf members --format json` shape); default: ask the running agent.
    #[arg(long, value_name = "FILE")]
    pub members: Option<PathBuf>,
    /// Backends and selectors, as for `haserf agent`; repeatable.
    #[arg(long = "backend", value_name = "NAME[=KEY=VALUE,...]")]
    pub backends: Vec<String>,
    /// The running agent's status socket (used when --members is not given).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATUS_SOCKET)]
    pub status_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Keygen => {
            println!("{}", crate::keygen::generate());
            0
        }
        Command::Agent(args) => crate::agent::run(&args),
        Command::Members(args) => crate::control::client::run(&args, Request::Members),
        Command::Slots(args) => crate::control::client::run(&args, Request::Slots),
        Command::Status(args) => crate::control::client::run(&args, Request::Status),
        Command::Leave(args) => crate::control::client::run(&args, Request::Leave),
        Command::Verify(args) => crate::slots::cmd::verify(&args),
        Command::Plan(args) => crate::slots::cmd::plan_cmd(&args),
    }
}

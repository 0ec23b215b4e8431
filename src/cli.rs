//! The command line (clap), private to the `haserf` binary: the library never sees it.
//! `src/main.rs` parses [`Cli`] and calls [`run`], the one place where the parsed arguments
//! become library types and each subcommand is handed to the library:
//!
//! - `agent`: [`AgentArgs`] → [`AgentOptions`] (same-named fields) → [`AgentConfig`] (merged
//!   with `--config`, validated) → [`haserf::agent::run`];
//! - `members`, `slots`: [`MembersArgs`], [`SlotsArgs`] → [`ListRequest`] with their filters;
//!   `status`: [`StatusArgs`] → [`StatusRequest`]; `leave`: [`LeaveArgs`] → [`LeaveRequest`];
//!   `metrics`: [`ClientArgs`] → [`haserf::client::socket::ask`]. Every `--status-socket`
//!   (the agent's too) reads `HASERF_STATUS_SOCKET` when the flag is not given;
//! - `verify`: [`VerifyArgs`] → [`VerifyRequest`]; `plan`: [`PlanArgs`] → [`PlanRequest`].
//!
//! A new flag is declared here (its help text is the doc comment) and moved into its
//! library-side field in the `From` impl below its struct; a new agent setting's field goes
//! in `src/config.rs`.
//!
//! (Over ~900 lines only with its unit tests: the code above them is about 750 lines, one
//! clap declaration per flag.)

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use haserf::client::verbs::Verb;
use haserf::client::{
    self, LeaveRequest, ListRequest, MemberFilter, MembershipSource, PlanRequest, SlotFilter,
    StatusRequest, VerifyRequest,
};
use haserf::config::{self, AgentConfig, AgentOptions};
use haserf::control::model::{Request, SlotState};
use haserf::control::DEFAULT_STATUS_SOCKET;

/// The environment variable every `--status-socket` falls back to.
pub const STATUS_SOCKET_ENV: &str = "HASERF_STATUS_SOCKET";

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
    /// Members as the running agent sees them (like `serf members`, with its filters).
    Members(MembersArgs),
    /// Slot table: backend, slot, member, addr, state, HAProxy status.
    Slots(SlotsArgs),
    /// Ready first, then cluster, HAProxy, backends, refused members, alerts.
    /// Exit status: 0 ready, 1 not ready, 2 agent unreachable.
    Status(StatusArgs),
    /// Graceful leave of the running agent; waits until it has left.
    Leave(LeaveArgs),
    /// The agent's Prometheus metrics (OpenMetrics text), as served on --metrics-bind.
    Metrics(ClientArgs),
    /// Print a new base64 gossip encryption key (32 bytes, AES-256).
    Keygen,
    /// Read HAProxy's slots once (nom parser); non-zero exit on any error.
    Verify(VerifyArgs),
    /// Dry run: the runtime commands a membership would send.
    Plan(PlanArgs),
    /// Send a user event (like `serf event`), over the agent's Serf RPC.
    Event(EventArgs),
    /// Send a query and print acks and responses (like `serf query`).
    Query(QueryArgs),
    /// Set or delete the agent's tags (like `serf tags`).
    Tags(TagsArgs),
    /// Make the agent join through these members (like `serf join`).
    Join(JoinArgs),
    /// Mark a failed member as left (like `serf force-leave`).
    ForceLeave(ForceLeaveArgs),
    /// Stream the agent's log (like `serf monitor`).
    Monitor(MonitorArgs),
    /// List or change the gossip keys on every member (like `serf keys`).
    Keys(KeysArgs),
    /// Estimated round-trip time between two members (like `serf rtt`).
    Rtt(RttArgs),
    /// The agent's Serf counters, clocks and tags (like `serf info`).
    Info(RpcArgs),
}

/// Where the agent's Serf RPC is (every Serf verb).
#[derive(Debug, Args, Clone)]
pub struct RpcArgs {
    /// The agent's Serf RPC address.
    #[arg(long, value_name = "IP:PORT", env = "HASERF_RPC_ADDR", default_value = haserf::config::DEFAULT_RPC_ADDR)]
    pub rpc_addr: String,
    /// The agent's `rpc_auth` token.
    #[arg(long, value_name = "TOKEN", env = "HASERF_RPC_AUTH")]
    pub rpc_auth: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl From<RpcArgs> for client::verbs::RpcTarget {
    fn from(a: RpcArgs) -> Self {
        client::verbs::RpcTarget {
            addr: a.rpc_addr,
            auth: a.rpc_auth,
            format: a.format.into(),
        }
    }
}

/// `haserf event NAME [PAYLOAD]`.
#[derive(Debug, Args, Clone)]
pub struct EventArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Let receivers coalesce events of this name.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub coalesce: bool,
    /// Event name.
    pub name: String,
    /// Payload.
    #[arg(default_value = "")]
    pub payload: String,
}

/// `haserf query NAME [PAYLOAD]`.
#[derive(Debug, Args, Clone)]
pub struct QueryArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Only this node answers; repeatable.
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Only nodes whose tag matches the regexp answer; repeatable.
    #[arg(long = "tag", value_name = "KEY=REGEXP")]
    pub tags: Vec<String>,
    /// Do not ask for acks.
    #[arg(long)]
    pub no_ack: bool,
    /// How long to collect answers (default: serf's, from the cluster size).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,
    /// Extra members that relay each response back.
    #[arg(long, default_value_t = 0)]
    pub relay_factor: u8,
    /// Query name.
    pub name: String,
    /// Payload.
    #[arg(default_value = "")]
    pub payload: String,
}

/// `haserf tags --set K=V --delete K`.
#[derive(Debug, Args, Clone)]
pub struct TagsArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Set a tag; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Delete a tag; repeatable.
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
}

/// `haserf join ADDR…`.
#[derive(Debug, Args, Clone)]
pub struct JoinArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Also replay old user events (accepted; haserf does not replay).
    #[arg(long)]
    pub replay: bool,
    /// Members to join through (IP, IP:PORT, HOST:PORT).
    #[arg(required = true)]
    pub addrs: Vec<String>,
}

/// `haserf force-leave NODE`.
#[derive(Debug, Args, Clone)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Forget the member at once.
    #[arg(long)]
    pub prune: bool,
    /// The member.
    pub node: String,
}

/// `haserf monitor`.
#[derive(Debug, Args, Clone)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Lowest level shown: trace, debug, info, warn, err.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

/// `haserf keys --list | --install K | --use K | --remove K`.
#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("op").required(true).args(["list", "install", "use_key", "remove"])))]
pub struct KeysArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// List the keys and how many members hold each.
    #[arg(long)]
    pub list: bool,
    /// Install a key on every member.
    #[arg(long, value_name = "KEY")]
    pub install: Option<String>,
    /// Make an installed key the primary one.
    #[arg(long = "use", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Remove a key from every member.
    #[arg(long, value_name = "KEY")]
    pub remove: Option<String>,
}

/// `haserf rtt NODE [NODE]`.
#[derive(Debug, Args, Clone)]
pub struct RttArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// A member.
    pub a: String,
    /// Another member (default: the agent itself).
    pub b: Option<String>,
}

/// Output format of client subcommands (`--format`; becomes [`client::Format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable table.
    Text,
    /// One JSON document.
    Json,
}

impl From<Format> for client::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Text => client::Format::Text,
            Format::Json => client::Format::Json,
        }
    }
}

/// Log line format (`--log-format`; becomes [`config::LogFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormat> for config::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => config::LogFormat::Text,
            LogFormat::Json => config::LogFormat::Json,
        }
    }
}

/// Flags of `haserf agent`.
#[derive(Debug, Args, Clone)]
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
    #[arg(long, value_name = "PATH", env = STATUS_SOCKET_ENV)]
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
    /// Serve Prometheus metrics over HTTP (GET /metrics) on this address.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_bind: Option<String>,
    /// Serf's RPC protocol, for the stock `serf` CLI (default 127.0.0.1:7373; "" = off).
    #[arg(long, value_name = "IP:PORT")]
    pub rpc_addr: Option<String>,
    /// Token Serf RPC clients must send first (`serf … -rpc-auth=TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub rpc_auth: Option<String>,
    /// JSON config file (or directory of *.json): Serf agent keys, plus haserf's own;
    /// repeatable, merged in order as serf merges -config-file.
    #[arg(long, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Directory of *.json config files (lexical order), merged after --config; repeatable.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// Run SCRIPT for events (serf's handler contract); FILTER: member-join, member-leave,
    /// member-failed, member-update, member-reap, user[:NAME], query[:NAME], comma-separated;
    /// repeatable.
    #[arg(long = "event-handler", value_name = "[FILTER=]SCRIPT")]
    pub event_handlers: Vec<String>,
    /// Serf snapshot file: membership and clocks kept across restarts.
    #[arg(long, value_name = "PATH")]
    pub snapshot: Option<PathBuf>,
    /// Rejoin from the snapshot even after a graceful leave (serf's -rejoin).
    #[arg(long)]
    pub rejoin: bool,
    /// Serf tags file: tags read at start and kept there.
    #[arg(long, value_name = "PATH")]
    pub tags_file: Option<PathBuf>,
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
    /// Raise a `first_check` alert when a filled slot waits longer than this for its first
    /// passing health check (default 20s: ten times HAProxy's default `inter 2s`).
    #[arg(long, value_name = "DURATION")]
    pub first_check_alert: Option<String>,
    /// Keep HAProxy's server-state file here (haproxy.cfg: `server-state-file PATH` and
    /// `load-server-state-from-file global`), so a reloaded HAProxy starts with its slots.
    #[arg(long, value_name = "PATH")]
    pub server_state_file: Option<PathBuf>,
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
    /// When a placed member goes in rotation: check (after a passed health check, default)
    /// or gossip (at once); MODE for every backend or BACKEND=MODE; repeatable.
    #[arg(long = "admit", value_name = "[BACKEND=]check|gossip")]
    pub admit: Vec<String>,
    /// The agent's own check of a new member in `check` mode, as the backend's check line:
    /// tcp (default), http:/PATH, or haproxy (no probe: wait for HAProxy's first check);
    /// repeatable per backend.
    #[arg(long = "admit-probe", value_name = "[BACKEND=]tcp|http:/PATH|haproxy")]
    pub admit_probe: Vec<String>,
}

impl From<AgentArgs> for AgentOptions {
    /// Every flag to its same-named field. The pattern names every flag, so a new flag that
    /// is not moved over here does not compile.
    fn from(args: AgentArgs) -> Self {
        let AgentArgs {
            node,
            bind,
            advertise,
            join,
            tags,
            encrypt,
            keyring_file,
            haproxy_socket,
            backends,
            allow_cidrs,
            status_socket,
            status_socket_mode,
            status_socket_group,
            haproxy_maps,
            spoe_bind,
            metrics_bind,
            rpc_addr,
            rpc_auth,
            config,
            config_dir,
            event_handlers,
            snapshot,
            rejoin,
            tags_file,
            log_level,
            log_format,
            profile,
            drain_timeout,
            first_check_alert,
            server_state_file,
            no_suspicion_drain,
            partition_guard_share,
            partition_guard_window,
            partition_guard_hold,
            admit,
            admit_probe,
        } = args;
        AgentOptions {
            node,
            bind,
            advertise,
            join,
            tags,
            encrypt,
            keyring_file,
            haproxy_socket,
            backends,
            allow_cidrs,
            status_socket,
            status_socket_mode,
            status_socket_group,
            haproxy_maps,
            spoe_bind,
            metrics_bind,
            rpc_addr,
            rpc_auth,
            config,
            config_dir,
            serf: config::serf_compat::SerfFlags {
                event_handlers,
                snapshot,
                rejoin,
                tags_file,
            },
            log_level,
            log_format: log_format.map(Into::into),
            profile,
            drain_timeout,
            first_check_alert,
            server_state_file,
            no_suspicion_drain,
            partition_guard_share,
            partition_guard_window,
            partition_guard_hold,
            admit,
            admit_probe,
        }
    }
}

/// Flags shared by the client subcommands that talk to a running agent.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The agent's status socket.
    #[arg(long, value_name = "PATH", env = STATUS_SOCKET_ENV, default_value = DEFAULT_STATUS_SOCKET)]
    pub status_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A duration flag (`500ms`, `30s`, `2m`, a bare number of seconds).
fn duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s)
}

/// Flags of `haserf members`: serf's filters (regular expressions anchored at both ends).
#[derive(Debug, Args, Clone)]
pub struct MembersArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only members whose status (alive, leaving, left, failed) matches this regexp.
    #[arg(long, value_name = "REGEXP")]
    pub status: Option<String>,
    /// Only members whose name matches this regexp.
    #[arg(long, value_name = "REGEXP")]
    pub name: Option<String>,
    /// Only members whose tag KEY matches the regexp (a missing tag is ""); repeatable.
    #[arg(long = "tag", value_name = "KEY=REGEXP")]
    pub tags: Vec<String>,
}

/// A slot state for `haserf slots --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotStateArg {
    /// In rotation.
    Ready,
    /// Draining.
    Drain,
    /// Out of rotation (free slots are maint).
    Maint,
}

impl From<SlotStateArg> for SlotState {
    fn from(s: SlotStateArg) -> Self {
        match s {
            SlotStateArg::Ready => SlotState::Ready,
            SlotStateArg::Drain => SlotState::Drain,
            SlotStateArg::Maint => SlotState::Maint,
        }
    }
}

/// Flags of `haserf slots`.
#[derive(Debug, Args, Clone)]
pub struct SlotsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only slots holding a member.
    #[arg(long)]
    pub used: bool,
    /// Only slots in these states; repeatable or comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE")]
    pub state: Vec<SlotStateArg>,
}

/// Flags of `haserf status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Wait until the agent is ready, up to TIMEOUT (default 60s); exit status as without.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = "60s", value_parser = duration)]
    pub wait_ready: Option<Duration>,
}

/// Flags of `haserf leave`.
#[derive(Debug, Args, Clone)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Longest wait for the leave to complete.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub timeout: Duration,
}

impl From<StatusArgs> for StatusRequest {
    fn from(args: StatusArgs) -> Self {
        StatusRequest {
            socket: args.client.status_socket,
            format: args.client.format.into(),
            wait_ready: args.wait_ready,
        }
    }
}

impl From<LeaveArgs> for LeaveRequest {
    fn from(args: LeaveArgs) -> Self {
        LeaveRequest {
            socket: args.client.status_socket,
            format: args.client.format.into(),
            timeout: args.timeout,
        }
    }
}

impl From<SlotsArgs> for ListRequest {
    fn from(args: SlotsArgs) -> Self {
        ListRequest::Slots(SlotFilter {
            used: args.used,
            states: args.state.into_iter().map(Into::into).collect(),
        })
    }
}

/// Flags of `haserf verify`.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// HAProxy runtime API: unix socket path or IP:PORT.
    #[arg(long, value_name = "PATH|IP:PORT")]
    pub haproxy_socket: String,
    /// Only this backend's slots (repeatable); default: every backend with server-template slots.
    #[arg(long = "backend", value_name = "NAME")]
    pub backends: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Accepted for symmetry with the other clients; unused.
    #[arg(long, value_name = "PATH", env = STATUS_SOCKET_ENV, default_value = DEFAULT_STATUS_SOCKET, hide = true)]
    pub status_socket: PathBuf,
}

impl From<VerifyArgs> for VerifyRequest {
    fn from(args: VerifyArgs) -> Self {
        VerifyRequest {
            haproxy_socket: args.haproxy_socket,
            // `NAME=KEY=VALUE` selectors are accepted as for `plan`; only the name counts
            backends: args
                .backends
                .iter()
                .map(|b| b.split('=').next().unwrap_or(b).to_string())
                .collect(),
            format: args.format.into(),
        }
    }
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
    /// Members' addresses must be in one of these networks, as for `haserf agent`; repeatable.
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
    /// The running agent's status socket (used when --members is not given).
    #[arg(long, value_name = "PATH", env = STATUS_SOCKET_ENV, default_value = DEFAULT_STATUS_SOCKET)]
    pub status_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl From<PlanArgs> for PlanRequest {
    fn from(args: PlanArgs) -> Self {
        PlanRequest {
            haproxy_socket: args.haproxy_socket,
            members: match args.members {
                Some(file) => MembershipSource::File(file),
                None => MembershipSource::Agent(args.status_socket),
            },
            backends: args.backends,
            allow_cidrs: args.allow_cidrs,
            format: args.format.into(),
        }
    }
}

/// Runs a parsed command line and returns the process exit status: 0; 1 when the command
/// failed; 2 for a bad agent configuration (as clap's usage errors). `status`: 0 ready, 1
/// not ready, 2 agent unreachable.
pub fn run(cli: Cli) -> i32 {
    let list = |args: &ClientArgs, req: &ListRequest| {
        client::filter::run(&args.status_socket, req, args.format.into())
    };
    match cli.command {
        Command::Keygen => {
            println!("{}", haserf::keygen::generate());
            0
        }
        Command::Agent(args) => match AgentConfig::from_options(&AgentOptions::from(*args)) {
            Ok(cfg) => haserf::agent::run(cfg),
            Err(e) => {
                eprintln!("haserf agent: {e}");
                2
            }
        },
        Command::Members(args) => {
            match MemberFilter::new(args.status.as_deref(), args.name.as_deref(), &args.tags) {
                Ok(f) => list(&args.client, &ListRequest::Members(f)),
                Err(e) => {
                    eprintln!("haserf members: {e}");
                    1
                }
            }
        }
        Command::Slots(args) => list(&args.client.clone(), &args.into()),
        Command::Status(args) => client::status::run(&args.into()),
        Command::Leave(args) => client::leave::run(&args.into()),
        Command::Metrics(args) => {
            client::socket::ask(&args.status_socket, Request::Metrics, args.format.into())
        }
        Command::Verify(args) => client::verify::run(&args.into()),
        Command::Plan(args) => client::plan::run(&args.into()),
        Command::Event(a) => verb(
            a.rpc,
            Verb::Event {
                name: a.name,
                payload: a.payload,
                coalesce: a.coalesce,
            },
        ),
        Command::Query(a) => verb(
            a.rpc,
            Verb::Query {
                name: a.name,
                payload: a.payload,
                nodes: a.nodes,
                tags: a.tags,
                ack: !a.no_ack,
                timeout: a.timeout,
                relay_factor: a.relay_factor,
            },
        ),
        Command::Tags(a) => verb(
            a.rpc,
            Verb::Tags {
                set: a.set,
                delete: a.delete,
            },
        ),
        Command::Join(a) => verb(
            a.rpc,
            Verb::Join {
                addrs: a.addrs,
                replay: a.replay,
            },
        ),
        Command::ForceLeave(a) => verb(
            a.rpc,
            Verb::ForceLeave {
                node: a.node,
                prune: a.prune,
            },
        ),
        Command::Monitor(a) => verb(a.rpc, Verb::Monitor { level: a.log_level }),
        Command::Keys(a) => {
            let (op, key) = match (a.install, a.use_key, a.remove) {
                (Some(k), _, _) => ("install-key", k),
                (_, Some(k), _) => ("use-key", k),
                (_, _, Some(k)) => ("remove-key", k),
                _ => ("list-keys", String::new()),
            };
            verb(a.rpc, Verb::Keys { op: op.into(), key })
        }
        Command::Rtt(a) => verb(a.rpc, Verb::Rtt { a: a.a, b: a.b }),
        Command::Info(a) => verb(a, Verb::Info),
    }
}

fn verb(rpc: RpcArgs, v: Verb) -> i32 {
    client::verbs::run(&rpc.into(), v)
}

#[cfg(test)]
#[path = "../tests/support/doc_blocks.rs"]
mod doc_blocks;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every `haserf …` line of the docs' shell blocks (and `HASERF_OPTS` of
    /// systemd/haserf.default) is accepted by this command line as written; an agent command
    /// is also validated as a configuration (without `--config`: the file is the user's).
    #[test]
    fn every_haserf_command_in_the_docs_parses_as_written() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut checked = 0;
        let mut failures = Vec::new();
        for c in super::doc_blocks::doc_commands(root) {
            if c.words[0] != "haserf" {
                continue;
            }
            if super::doc_blocks::is_sketch(&c) {
                failures.push(format!(
                    "{}: `{}` is a sketch in a shell block; fence it as text",
                    c.at, c.text
                ));
                continue;
            }
            match Cli::try_parse_from(&c.words) {
                Err(e) => failures.push(format!("{}: `{}`: {e}", c.at, c.text)),
                Ok(cli) => {
                    if let Command::Agent(args) = cli.command {
                        let o = AgentOptions::from(*args);
                        if o.config.is_empty() && o.config_dir.is_empty() {
                            if let Err(e) = AgentConfig::merge(&o, config::FileConfig::default()) {
                                failures.push(format!("{}: `{}`: {e}", c.at, c.text));
                            }
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            checked >= 15,
            "only {checked} haserf commands found in the docs"
        );
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("haserf").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_agent_flag_reaches_its_agent_option() {
        let Command::Agent(args) = parse(&[
            "agent",
            "--node=n",
            "--bind=b",
            "--advertise=a",
            "--join=j1",
            "--join=j2",
            "--tag=k=v",
            "--encrypt=e",
            "--keyring-file=kf",
            "--haproxy-socket=h",
            "--backend=web",
            "--allow-cidr=10.0.0.0/8",
            "--status-socket=s",
            "--status-socket-mode=0660",
            "--status-socket-group=g",
            "--spoe-bind=sp",
            "--metrics-bind=mb",
            "--config=c",
            "--config=c2",
            "--config-dir=d",
            "--event-handler=member-join=j.sh",
            "--event-handler=q.sh",
            "--snapshot=snap",
            "--rejoin",
            "--tags-file=tf",
            "--log-level=debug",
            "--log-format=json",
            "--profile=local",
            "--drain-timeout=5s",
            "--no-suspicion-drain",
            "--partition-guard-share=0.5",
            "--partition-guard-window=1s",
            "--partition-guard-hold=2s",
        ]) else {
            panic!("not the agent subcommand");
        };
        let o = AgentOptions::from(*args);
        let some = |s: &str| Some(s.to_string());
        assert_eq!(o.node, some("n"));
        assert_eq!(o.bind, some("b"));
        assert_eq!(o.advertise, some("a"));
        assert_eq!(o.join, ["j1", "j2"]);
        assert_eq!(o.tags, ["k=v"]);
        assert_eq!(o.encrypt, some("e"));
        assert_eq!(o.keyring_file, Some(PathBuf::from("kf")));
        assert_eq!(o.haproxy_socket, some("h"));
        assert_eq!(o.backends, ["web"]);
        assert_eq!(o.allow_cidrs, ["10.0.0.0/8"]);
        assert_eq!(o.status_socket, Some(PathBuf::from("s")));
        assert_eq!(o.status_socket_mode, some("0660"));
        assert_eq!(o.status_socket_group, some("g"));
        assert_eq!(o.spoe_bind, some("sp"));
        assert_eq!(o.metrics_bind, some("mb"));
        assert_eq!(o.config, [PathBuf::from("c"), PathBuf::from("c2")]);
        assert_eq!(o.config_dir, [PathBuf::from("d")]);
        assert_eq!(o.serf.event_handlers, ["member-join=j.sh", "q.sh"]);
        assert_eq!(o.serf.snapshot, Some(PathBuf::from("snap")));
        assert!(o.serf.rejoin);
        assert_eq!(o.serf.tags_file, Some(PathBuf::from("tf")));
        assert_eq!(o.log_level, some("debug"));
        assert_eq!(o.log_format, Some(config::LogFormat::Json));
        assert_eq!(o.profile, some("local"));
        assert_eq!(o.drain_timeout, some("5s"));
        assert!(o.no_suspicion_drain);
        assert_eq!(o.partition_guard_share, Some(0.5));
        assert_eq!(o.partition_guard_window, some("1s"));
        assert_eq!(o.partition_guard_hold, some("2s"));
    }

    #[test]
    fn plan_reads_members_from_the_file_when_given_else_from_the_agent() {
        let Command::Plan(args) = parse(&[
            "plan",
            "--haproxy-socket=h",
            "--backend=web",
            "--members=m.json",
            "--format=json",
        ]) else {
            panic!("not plan");
        };
        let req = PlanRequest::from(args);
        assert!(matches!(req.members, MembershipSource::File(ref p) if p.as_os_str() == "m.json"));
        assert_eq!(req.backends, ["web"]);
        assert_eq!(req.format, client::Format::Json);
        let Command::Plan(args) = parse(&["plan", "--haproxy-socket=h", "--status-socket=s"])
        else {
            panic!("not plan");
        };
        let req = PlanRequest::from(args);
        assert!(matches!(req.members, MembershipSource::Agent(ref p) if p.as_os_str() == "s"));
        assert_eq!(req.format, client::Format::Text);
    }

    #[test]
    fn verify_keeps_the_socket_and_format() {
        let Command::Verify(args) = parse(&["verify", "--haproxy-socket=h", "--format=json"])
        else {
            panic!("not verify");
        };
        let req = VerifyRequest::from(args);
        assert_eq!(req.haproxy_socket, "h");
        assert_eq!(req.format, client::Format::Json);
    }
}

//! Runtime API commands (validated before sending) and reply classification.

use std::fmt;
use std::net::IpAddr;

use super::error::{ClientError, CommandError};

/// Administrative state of `set server <b>/<s> state …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// `ready`: in rotation (subject to health checks).
    Ready,
    /// `drain`: no new load-balanced traffic; persistent and in-flight requests continue.
    Drain,
    /// `maint`: out of rotation, checks stopped.
    Maint,
}

impl AdminState {
    /// The keyword HAProxy expects.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// One runtime API command. Build the `set` ones with [`Command::set_addr`] and friends,
/// which validate names, ports and weights (HAProxy itself silently wraps a port > 65535).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `set server B/S addr IP [port P]`.
    SetAddr {
        /// Backend.
        backend: String,
        /// Server (slot).
        server: String,
        /// New address.
        addr: IpAddr,
        /// New port (1–65535).
        port: Option<u16>,
    },
    /// `set server B/S state ready|drain|maint`.
    SetState {
        /// Backend.
        backend: String,
        /// Server (slot).
        server: String,
        /// New admin state.
        state: AdminState,
    },
    /// `set weight B/S W` (0–256).
    SetWeight {
        /// Backend.
        backend: String,
        /// Server (slot).
        server: String,
        /// Absolute weight.
        weight: u16,
    },
    /// `shutdown sessions server B/S`.
    ShutdownSessions {
        /// Backend.
        backend: String,
        /// Server (slot).
        server: String,
    },
    /// A read-only `show …` command (e.g. `show stat`), sent verbatim.
    Show(String),
}

/// Checks a backend or server name: non-empty, printable, no space, `;`, `/`, `\` or `#`.
pub fn validate_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'/' | b'\\' | b'#'))
    {
        return Err(ClientError::Invalid(format!(
            "bad backend/server name {name:?}"
        )));
    }
    Ok(())
}

impl Command {
    /// `set server B/S addr IP port P`, validated (port 1–65535).
    pub fn set_addr(
        backend: &str,
        server: &str,
        addr: IpAddr,
        port: Option<u16>,
    ) -> Result<Command, ClientError> {
        validate_name(backend)?;
        validate_name(server)?;
        if port == Some(0) {
            return Err(ClientError::Invalid("port 0".into()));
        }
        Ok(Command::SetAddr {
            backend: backend.into(),
            server: server.into(),
            addr,
            port,
        })
    }

    /// `set server B/S state S`, validated.
    pub fn set_state(
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<Command, ClientError> {
        validate_name(backend)?;
        validate_name(server)?;
        Ok(Command::SetState {
            backend: backend.into(),
            server: server.into(),
            state,
        })
    }

    /// `set weight B/S W`, validated (0–256).
    pub fn set_weight(backend: &str, server: &str, weight: u16) -> Result<Command, ClientError> {
        validate_name(backend)?;
        validate_name(server)?;
        if weight > 256 {
            return Err(ClientError::Invalid(format!(
                "weight {weight} (must be 0–256)"
            )));
        }
        Ok(Command::SetWeight {
            backend: backend.into(),
            server: server.into(),
            weight,
        })
    }

    /// `shutdown sessions server B/S`, validated.
    pub fn shutdown_sessions(backend: &str, server: &str) -> Result<Command, ClientError> {
        validate_name(backend)?;
        validate_name(server)?;
        Ok(Command::ShutdownSessions {
            backend: backend.into(),
            server: server.into(),
        })
    }

    /// The `(backend, server)` a `set`/`shutdown` command targets.
    pub fn target(&self) -> Option<(&str, &str)> {
        match self {
            Command::SetAddr {
                backend, server, ..
            }
            | Command::SetState {
                backend, server, ..
            }
            | Command::SetWeight {
                backend, server, ..
            }
            | Command::ShutdownSessions { backend, server } => Some((backend, server)),
            Command::Show(_) => None,
        }
    }

    /// Classifies HAProxy's reply to this command (severity prefix already allowed for).
    pub fn classify(&self, reply: &str) -> Result<(), CommandError> {
        let text = strip_severity(reply).trim();
        if let Some(e) = known_error(text) {
            return Err(e);
        }
        match self {
            Command::SetAddr { .. } => {
                let ok = text.starts_with("IP changed from")
                    || text.starts_with("no need to change")
                    || text.starts_with("port changed from")
                    || text == "nothing changed";
                if ok {
                    Ok(())
                } else {
                    Err(CommandError::Other(text.into()))
                }
            }
            Command::Show(_) => Ok(()),
            _ if text.is_empty() => Ok(()),
            _ => Err(CommandError::Other(text.into())),
        }
    }
}

/// Strips a `[N]: ` severity prefix (`set severity-output number`).
pub fn strip_severity(reply: &str) -> &str {
    let b = reply.as_bytes();
    if b.len() >= 5 && b[0] == b'[' && b[1].is_ascii_digit() && &b[2..5] == b"]: " {
        &reply[5..]
    } else {
        reply
    }
}

/// Recognises every error text HAProxy 2.6–3.x gives to the commands used here.
pub fn known_error(text: &str) -> Option<CommandError> {
    let t = text.to_string();
    let has = |s: &str| text.contains(s);
    Some(if text.starts_with("Permission denied") {
        CommandError::PermissionDenied(t)
    } else if has("No such backend") || has("No such proxy") {
        CommandError::UnknownBackend(t)
    } else if has("No such server") {
        CommandError::UnknownServer(t)
    } else if text.starts_with("Unknown command") {
        CommandError::UnknownCommand(t)
    } else if has("Require 'backend/server'") {
        CommandError::Syntax(t)
    } else if has("state' expects") || has("health' expects") || has("agent' expects") {
        CommandError::InvalidState(t)
    } else if has("Invalid addr")
        || has("Update for the current server address family")
        || has("Update to families other than")
        || has("requires an address")
    {
        CommandError::InvalidAddress(t)
    } else if has("problem converting port") || has("can't change the port") || has("Invalid port")
    {
        CommandError::InvalidPort(t)
    } else if has("Absolute weight")
        || has("Relative weight")
        || has("static LB algorithm")
        || has("Require <weight>")
    {
        CommandError::InvalidWeight(t)
    } else {
        return None;
    })
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::SetAddr {
                backend,
                server,
                addr,
                port,
            } => {
                write!(f, "set server {backend}/{server} addr {addr}")?;
                if let Some(p) = port {
                    write!(f, " port {p}")?;
                }
                Ok(())
            }
            Command::SetState {
                backend,
                server,
                state,
            } => write!(f, "set server {backend}/{server} state {}", state.as_str()),
            Command::SetWeight {
                backend,
                server,
                weight,
            } => write!(f, "set weight {backend}/{server} {weight}"),
            Command::ShutdownSessions { backend, server } => {
                write!(f, "shutdown sessions server {backend}/{server}")
            }
            Command::Show(s) => f.write_str(s),
        }
    }
}

//! Errors of the runtime API client and of the reply parsers.

/// A reply that could not be parsed: names the reply, the line and the column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed `{what}` reply at line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Which reply (`show stat`, `show servers state`, `show info`).
    pub what: &'static str,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte `offset` of `input`.
    pub fn at(what: &'static str, input: &[u8], offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(input.len());
        let before = &input[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        ParseError {
            what,
            line,
            column: offset - line_start + 1,
            message: message.into(),
        }
    }
}

/// An error reply of HAProxy to one command, recognised by its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `No such backend.` (or `No such proxy.`).
    #[error("unknown backend: {0}")]
    UnknownBackend(String),
    /// `No such server.`
    #[error("unknown server: {0}")]
    UnknownServer(String),
    /// `Invalid addr …`, address family refused, missing address.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// `problem converting port …`, `can't change the port …`.
    #[error("invalid port: {0}")]
    InvalidPort(String),
    /// `'set server <srv> state' expects …` and the like.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// Weight out of range or refused by a static LB algorithm.
    #[error("invalid weight: {0}")]
    InvalidWeight(String),
    /// `Permission denied`: the socket is not at admin level.
    #[error("permission denied (the socket needs `level admin`): {0}")]
    PermissionDenied(String),
    /// `Unknown command…`.
    #[error("unknown command: {0}")]
    UnknownCommand(String),
    /// `Require 'backend/server'.` and other syntax complaints.
    #[error("bad syntax: {0}")]
    Syntax(String),
    /// Another reply that is not a success.
    #[error("HAProxy refused: {0}")]
    Other(String),
}

/// A failure of the runtime API client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect, read or write.
    #[error("HAProxy socket {endpoint}: {source}")]
    Io {
        /// The socket.
        endpoint: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The exchange took longer than the timeout.
    #[error("HAProxy socket {endpoint}: no complete reply within {timeout_ms} ms")]
    Timeout {
        /// The socket.
        endpoint: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// Fewer replies than commands (connection closed early).
    #[error("HAProxy socket {endpoint}: got {got} replies for {sent} commands")]
    Truncated {
        /// The socket.
        endpoint: String,
        /// Commands sent.
        sent: usize,
        /// Replies received.
        got: usize,
    },
    /// HAProxy refused a command.
    #[error("`{command}`: {error}")]
    Command {
        /// The command line.
        command: String,
        /// The classified error.
        error: CommandError,
    },
    /// A reply did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A value was refused before sending (names, ports, weights).
    #[error("invalid command argument: {0}")]
    Invalid(String),
}

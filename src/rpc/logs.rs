//! The agent's log lines for `serf monitor` (serf's `logWriter` + `ipc_log_stream.go`): a
//! `tracing` layer formats each event once, only while a monitor listens, and broadcasts it
//! with its level; each monitor keeps the lines at or above the level it asked for.

use std::fmt::Write as _;

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines buffered per monitor before the slowest one starts losing lines (serf drops too).
pub const LOG_BUFFER: usize = 512;

/// One formatted log line and its level.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The event's level.
    pub level: Level,
    /// `2026-01-02T03:04:05.678Z [INFO] target: message key=value`.
    pub line: String,
}

/// The fan-out of log lines to monitors; clone it into the layer and the RPC server.
#[derive(Debug, Clone)]
pub struct LogFanout {
    tx: broadcast::Sender<LogLine>,
}

impl Default for LogFanout {
    fn default() -> Self {
        LogFanout {
            tx: broadcast::channel(LOG_BUFFER).0,
        }
    }
}

impl LogFanout {
    /// A new monitor's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.tx.subscribe()
    }

    /// Sends a line to every monitor (used by the layer and by tests).
    pub fn publish(&self, level: Level, line: String) {
        let _ = self.tx.send(LogLine { level, line });
    }
}

/// Serf's monitor level names (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERR`, any case) as a
/// `tracing` level; `None` is serf's `Unknown log level`.
pub fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_uppercase().as_str() {
        "TRACE" => Level::TRACE,
        "DEBUG" => Level::DEBUG,
        "INFO" => Level::INFO,
        "WARN" => Level::WARN,
        "ERR" | "ERROR" => Level::ERROR,
        _ => return None,
    })
}

fn serf_level(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        _ => "ERR",
    }
}

struct Fields(String, String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={:?}", field.name(), value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={}", field.name(), value);
        }
    }
}

impl<S: Subscriber> Layer<S> for LogFanout {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut f = Fields(String::new(), String::new());
        event.record(&mut f);
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let line = format!(
            "{now} [{}] {}: {}{}",
            serf_level(meta.level()),
            meta.target(),
            f.0,
            f.1
        );
        self.publish(*meta.level(), line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serf_level_names_parse_in_any_case() {
        assert_eq!(parse_level("debug"), Some(Level::DEBUG));
        assert_eq!(parse_level("ERR"), Some(Level::ERROR));
        assert_eq!(parse_level("loud"), None);
    }
}

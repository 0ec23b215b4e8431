//! systemd's readiness protocol (`Type=notify`), through the `sd-notify` crate: `READY=1`
//! when the agent is ready (the same condition as `haserf status` exit 0), `STATUS=` lines
//! that `systemctl status` shows, `STOPPING=1` when it starts leaving. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The agent is ready.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// What the agent is doing, for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The agent is leaving the cluster and will exit.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("leaving the cluster"),
    ]);
}

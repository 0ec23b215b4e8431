//! Deadline-bounded polling: every wait in the harness and in tests is a condition with a
//! deadline, never a bare sleep.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often conditions are re-evaluated.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok(value)` or `timeout` passes.
///
/// `probe` returns `Err(observation)` while the condition does not hold yet; the last
/// observation goes into the error message so a failing test says what it last saw.
pub fn try_wait_until<T, E: Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(last) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "timed out after {:.1}s waiting for {what}; last observed: {last:?}",
                        start.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`try_wait_until`], but panics with the message (what was awaited, what was last
/// observed) when the deadline passes.
#[track_caller]
pub fn wait_until<T, E: Debug>(
    timeout: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, E>,
) -> T {
    match try_wait_until(timeout, what, probe) {
        Ok(v) => v,
        Err(msg) => panic!("{msg}"),
    }
}

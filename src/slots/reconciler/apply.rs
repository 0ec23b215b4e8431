//! One apply: every slot's batch of runtime commands sent in one round trip, refused
//! commands remembered (a refused `set server addr` stops the rest of its slot's batch).

use super::*;

impl State {
    /// Sends the planned commands: first every slot's steps up to and including its
    /// `set server addr`, then, for the slots whose first part HAProxy accepted, the rest
    /// (a refused address must not be followed by `ready` at the old one). One round trip
    /// when no address changes. Refusals are remembered per slot and target and reported
    /// once. Returns the new refusals (one line each), or the exchange error.
    pub(super) async fn apply(&mut self, batches: &[SlotBatch]) -> Result<Vec<String>, String> {
        let split = |b: &SlotBatch| {
            b.cmds
                .iter()
                .position(|c| matches!(c, Command::SetAddr { .. }))
                .map_or(b.cmds.len(), |i| i + 1)
        };
        let mut refusals = Vec::new();
        let mut first_ok = vec![true; batches.len()];
        for phase in 0..2 {
            let mut cmds: Vec<Command> = Vec::new();
            let mut owner: Vec<usize> = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                let part = if phase == 0 {
                    &b.cmds[..split(b)]
                } else if first_ok[i] {
                    &b.cmds[split(b)..]
                } else {
                    &[]
                };
                cmds.extend(part.iter().cloned());
                owner.extend(std::iter::repeat_n(i, part.len()));
            }
            if cmds.is_empty() {
                continue;
            }
            let results = self.client.run(&cmds).await.map_err(|e| e.to_string())?;
            self.status.applies += 1;
            self.status.last_apply = Some(SystemTime::now());
            for ((c, r), i) in cmds.iter().zip(results).zip(owner) {
                let Err(e) = r else { continue };
                first_ok[i] = false;
                self.status.apply_errors += 1;
                let b = &batches[i];
                refusals.push(format!(
                    "{}/{}: HAProxy refused `{c}`: {e}",
                    b.key.0, b.key.1
                ));
                tracing::warn!(backend = %b.key.0, slot = %b.key.1, member = b.member.as_deref().unwrap_or("-"),
                    command = %c, reply = %e, "HAProxy refused a command; not retried for this target");
                let entry = self
                    .refused
                    .entry(b.key.clone())
                    .or_insert_with(|| Refusals {
                        target: refusal_target(&b.target),
                        commands: Vec::new(),
                    });
                if !entry.applies_to(&b.target) {
                    entry.target = refusal_target(&b.target);
                    entry.commands.clear();
                }
                entry.commands.push(RefusedCommand {
                    backend: b.key.0.clone(),
                    slot: b.key.1.clone(),
                    member: b.member.clone(),
                    command: c.to_string(),
                    reply: e.to_string(),
                });
            }
        }
        Ok(refusals)
    }
}

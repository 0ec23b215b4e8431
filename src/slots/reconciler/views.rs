//! What the reconciler shows after a pass: the slot table, the queues, the slots waiting for
//! their first check, and the "member change → runtime command" latency of each backend.

use super::*;

impl State {
    /// The commands of `commanded` backends were answered at `answered`: each backend's
    /// pending membership change is measured once.
    pub(super) fn record_change_latency(
        &mut self,
        commanded: &std::collections::BTreeSet<String>,
        answered: SystemTime,
    ) {
        for b in commanded {
            if let Some(changed) = self.changes.remove(b) {
                if let Some(l) = &self.cfg.latency {
                    l.observe_change_to_command(
                        b,
                        answered.duration_since(changed).unwrap_or_default(),
                    );
                }
            }
        }
    }

    pub(super) fn refresh_views(&mut self, obs: &Observed) {
        let mut views = Vec::new();
        let mut queue = BTreeMap::new();
        for b in &self.cfg.backends {
            let book = &self.books[b];
            queue.insert(b.clone(), book.queue().to_vec());
            // a refused backend's servers are not slots haserf manages
            let Some(slots) = obs
                .backends
                .get(b)
                .filter(|_| !self.status.backend_errors.contains_key(b))
            else {
                continue;
            };
            let placeholder = self.placeholder_of(b);
            for s in slots {
                views.push(SlotView {
                    backend: b.clone(),
                    slot: s.name.clone(),
                    member: book.member_of(&s.name).map(str::to_string),
                    addr: if s.is_empty_slot(placeholder) {
                        None
                    } else {
                        s.addr_port()
                    },
                    state: slot_state(s.admin),
                    haproxy_status: s.status.to_string(),
                });
            }
        }
        self.status.slots = views;
        self.status.queue = queue;
        // a slot whose member left (or was replaced) no longer waits
        let books = &self.books;
        self.gate
            .retain(|(b, slot), _| books.get(b).is_some_and(|k| k.member_of(slot).is_some()));
        let now = Instant::now();
        let mut waits: Vec<FirstCheckWait> = self
            .gate
            .iter()
            .map(|((b, slot), since)| FirstCheckWait {
                backend: b.clone(),
                slot: slot.clone(),
                member: books[b].member_of(slot).unwrap_or("-").to_string(),
                waited_ms: now.duration_since(*since).as_millis() as u64,
            })
            .collect();
        waits.sort_by(|a, b| (&a.backend, &a.slot).cmp(&(&b.backend, &b.slot)));
        self.status.awaiting_first_check = waits;
    }
}

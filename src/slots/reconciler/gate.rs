//! The reconciler's admission gate (`--admit`): which filled slots may be set `ready`
//! before HAProxy's first check passes — always in `gossip` mode, in `check` mode once the
//! agent's own probe of the member's address passed — and the bookkeeping of those probes.

use super::*;

impl State {
    /// `targets` with `admitted` set where the backend's admission allows `ready` before
    /// HAProxy's first check: always in `gossip` mode; in `check` mode once the agent's probe
    /// of the address passed.
    pub(super) fn admitted(
        &self,
        backend: &str,
        mut targets: Vec<(String, Target)>,
    ) -> Vec<(String, Target)> {
        let mode = self.admission(backend).mode;
        for (_, t) in &mut targets {
            if let Target::Serve {
                addr,
                port,
                drain: false,
                admitted,
                ..
            } = t
            {
                *admitted = match mode {
                    Admit::Gossip => true,
                    Admit::Check => self
                        .probes
                        .get(&SocketAddr::new(*addr, *port))
                        .is_some_and(|p| p.ok),
                };
            }
        }
        targets
    }

    /// [`State::admitted`], and in `check` mode starts a probe of every member that waits
    /// out of rotation (none running, the last failed more than [`PROBE_RETRY`] ago).
    pub(super) fn admit(
        &mut self,
        backend: &str,
        targets: Vec<(String, Target)>,
        slots: &[crate::slots::discovery::ObservedSlot],
        now: Instant,
    ) -> Vec<(String, Target)> {
        let targets = self.admitted(backend, targets);
        let admission = self.admission(backend).clone();
        if admission.mode != Admit::Check
            || admission.probe == crate::slots::admission::Probe::Haproxy
        {
            return targets;
        }
        for ((_, t), o) in targets.iter().zip(slots) {
            let Target::Serve {
                addr,
                port,
                drain: false,
                admitted: false,
                ..
            } = t
            else {
                continue;
            };
            if o.admin == crate::haproxy::AdminState::Ready && o.addr == Some(*addr) {
                continue;
            }
            let a = SocketAddr::new(*addr, *port);
            let p = self.probes.entry(a).or_default();
            if p.running || p.ended.is_some_and(|e| now.duration_since(e) < PROBE_RETRY) {
                continue;
            }
            p.running = true;
            let (tx, probe) = (self.probe_tx.clone(), admission.probe.clone());
            tokio::spawn(async move {
                let _ = tx.send((a, crate::slots::admission::probe(a, &probe).await));
            });
        }
        targets
    }

    pub(super) fn admission(&self, backend: &str) -> &Admission {
        static DEFAULT: std::sync::OnceLock<Admission> = std::sync::OnceLock::new();
        self.cfg
            .admission
            .get(backend)
            .unwrap_or_else(|| DEFAULT.get_or_init(Admission::default))
    }

    /// Forgets the probes of addresses no slot serves any more.
    pub(super) fn prune_probes(&mut self, obs: &Observed) {
        let mut live = std::collections::HashSet::new();
        for b in &self.cfg.backends {
            if let Some(slots) = obs.backends.get(b) {
                for (_, t) in self.books[b].targets(slots) {
                    if let Target::Serve { addr, port, .. } = t {
                        live.insert(SocketAddr::new(addr, port));
                    }
                }
            }
        }
        self.probes.retain(|a, p| p.running || live.contains(a));
    }
}

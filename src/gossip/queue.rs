//! Transmit-limited broadcast queue (memberlist `queue.go`): each message is piggybacked
//! until it was sent `limit` times; a newer message with the same name replaces the queued one.

/// One queued broadcast.
#[derive(Debug, Clone)]
struct Item {
    name: Option<String>,
    msg: Vec<u8>,
    transmits: u32,
    id: u64,
    notify: Option<u64>,
}

/// A transmit-limited queue of encoded messages.
#[derive(Debug, Default)]
pub struct BroadcastQueue {
    items: Vec<Item>,
    next_id: u64,
    /// Notification ids of broadcasts that were fully sent or replaced.
    pub finished: Vec<u64>,
}

impl BroadcastQueue {
    /// Queues `msg`; a queued message with the same `name` is dropped (invalidated).
    pub fn push(&mut self, name: Option<String>, msg: Vec<u8>, notify: Option<u64>) {
        if let Some(n) = &name {
            let finished = &mut self.finished;
            self.items.retain(|it| {
                if it.name.as_deref() == Some(n.as_str()) {
                    if let Some(id) = it.notify {
                        finished.push(id);
                    }
                    false
                } else {
                    true
                }
            });
        }
        self.next_id += 1;
        self.items.push(Item {
            name,
            msg,
            transmits: 0,
            id: self.next_id,
            notify,
        });
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a broadcast with this notification id is still queued.
    pub fn has_notify(&self, id: u64) -> bool {
        self.items.iter().any(|it| it.notify == Some(id))
    }

    /// Takes as many messages as fit in `limit` bytes (each costing `overhead` extra),
    /// least-transmitted (then newest) first; each counts as one transmission.
    pub fn take(&mut self, overhead: usize, limit: usize, retransmit_limit: u32) -> Vec<Vec<u8>> {
        if self.items.is_empty() {
            return Vec::new();
        }
        self.items
            .sort_by(|a, b| a.transmits.cmp(&b.transmits).then(b.id.cmp(&a.id)));
        let mut used = 0usize;
        let mut out = Vec::new();
        for it in self.items.iter_mut() {
            let cost = it.msg.len() + overhead;
            if used + cost > limit {
                continue;
            }
            used += cost;
            it.transmits += 1;
            out.push(it.msg.clone());
            if out.len() >= 255 {
                break;
            }
        }
        let finished = &mut self.finished;
        self.items.retain(|it| {
            if it.transmits >= retransmit_limit {
                if let Some(id) = it.notify {
                    finished.push(id);
                }
                false
            } else {
                true
            }
        });
        out
    }

    /// Drops the oldest messages beyond `max`.
    pub fn prune(&mut self, max: usize) {
        if self.items.len() > max {
            self.items.sort_by_key(|a| a.id);
            let excess = self.items.len() - max;
            for it in self.items.drain(..excess) {
                if let Some(id) = it.notify {
                    self.finished.push(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_broadcast_replaces_the_queued_one_with_the_same_name() {
        let mut q = BroadcastQueue::default();
        q.push(Some("n1".into()), vec![1], Some(7));
        q.push(Some("n1".into()), vec![2], None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.finished, vec![7]);
        assert_eq!(q.take(0, 100, 3), vec![vec![2]]);
    }

    #[test]
    fn a_broadcast_is_dropped_after_its_retransmit_limit() {
        let mut q = BroadcastQueue::default();
        q.push(None, vec![1; 10], Some(1));
        for _ in 0..3 {
            assert_eq!(q.take(2, 100, 3).len(), 1);
        }
        assert!(q.is_empty());
        assert_eq!(q.finished, vec![1]);
    }

    #[test]
    fn messages_that_do_not_fit_the_budget_stay_queued() {
        let mut q = BroadcastQueue::default();
        q.push(None, vec![1; 60], None);
        q.push(None, vec![2; 60], None);
        assert_eq!(q.take(2, 100, 3).len(), 1);
        assert_eq!(q.len(), 2);
    }
}

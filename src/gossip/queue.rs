//! Transmit-limited broadcast queue (memberlist `queue.go`): each message is piggybacked
//! until it was sent `limit` times; a newer message with the same name replaces the queued one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// One queued broadcast.
#[derive(Debug, Clone)]
struct Item {
    name: Option<String>,
    msg: Vec<u8>,
    notify: Option<u64>,
}

/// Queue order: fewest transmissions first, then newest first.
type Key = (u32, Reverse<u64>);

/// A transmit-limited queue of encoded messages.
#[derive(Debug, Default)]
pub struct BroadcastQueue {
    items: BTreeMap<Key, Item>,
    by_name: HashMap<String, Key>,
    next_id: u64,
    /// Notification ids of broadcasts that were fully sent or replaced.
    pub finished: Vec<u64>,
}

impl BroadcastQueue {
    /// Queues `msg`; a queued message with the same `name` is dropped (invalidated).
    pub fn push(&mut self, name: Option<String>, msg: Vec<u8>, notify: Option<u64>) {
        if let Some(n) = &name {
            if let Some(old) = self.by_name.remove(n) {
                if let Some(it) = self.items.remove(&old) {
                    if let Some(id) = it.notify {
                        self.finished.push(id);
                    }
                }
            }
        }
        self.next_id += 1;
        let key = (0, Reverse(self.next_id));
        if let Some(n) = &name {
            self.by_name.insert(n.clone(), key);
        }
        self.items.insert(key, Item { name, msg, notify });
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
        self.items.values().any(|it| it.notify == Some(id))
    }

    /// Takes as many messages as fit in `limit` bytes (each costing `overhead` extra),
    /// least-transmitted (then newest) first; each counts as one transmission.
    pub fn take(&mut self, overhead: usize, limit: usize, retransmit_limit: u32) -> Vec<Vec<u8>> {
        let mut used = 0usize;
        let mut picked: Vec<Key> = Vec::new();
        let mut misses = 0;
        for (k, it) in &self.items {
            let cost = it.msg.len() + overhead;
            if used + cost > limit {
                // Skip a few larger messages looking for smaller ones, then stop: a
                // long queue must not be scanned whole for every packet.
                misses += 1;
                if misses > 16 {
                    break;
                }
                continue;
            }
            used += cost;
            picked.push(*k);
            if picked.len() >= 255 {
                break;
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for k in picked {
            let Some(it) = self.items.remove(&k) else {
                continue;
            };
            out.push(it.msg.clone());
            let transmits = k.0 + 1;
            if transmits >= retransmit_limit {
                if let Some(n) = &it.name {
                    self.by_name.remove(n);
                }
                if let Some(id) = it.notify {
                    self.finished.push(id);
                }
            } else {
                let nk = (transmits, k.1);
                if let Some(n) = &it.name {
                    self.by_name.insert(n.clone(), nk);
                }
                self.items.insert(nk, it);
            }
        }
        out
    }

    /// Drops the oldest messages beyond `max`.
    pub fn prune(&mut self, max: usize) {
        while self.items.len() > max {
            let Some(oldest) = self.items.keys().max_by_key(|k| Reverse((k.1).0)).copied() else {
                break;
            };
            if let Some(it) = self.items.remove(&oldest) {
                if let Some(n) = &it.name {
                    self.by_name.remove(n);
                }
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

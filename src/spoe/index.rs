//! What a NOTIFY needs, indexed: every lookup the handler makes is one hash lookup, and the
//! long strings (a backend's member list, a member's tags) are joined once per change of
//! the cluster, not once per request. [`CachedView`] keeps one index for a short time so a
//! busy HAProxy does not rebuild it for every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ClusterView;
use crate::control::model::{MemberStatus, MemberView, SlotView};

/// One member's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    /// Serf status.
    pub status: MemberStatus,
    /// Tags as `k=v,k=v` sorted by key.
    pub tags: String,
    /// Tags by key.
    pub tag: std::collections::BTreeMap<String, String>,
}

/// One backend's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendFacts {
    /// Alive members holding a slot (each counted once).
    pub live: usize,
    /// Their names, sorted, joined with `,`.
    pub members: String,
    /// Slots without a member.
    pub free: usize,
}

/// The cluster, indexed for the SPOE handler.
#[derive(Debug, Clone, Default)]
pub struct ClusterIndex {
    members: HashMap<String, MemberFacts>,
    slots: HashMap<(String, String), String>,
    first_slot: HashMap<String, String>,
    backends: HashMap<String, BackendFacts>,
}

impl ClusterIndex {
    /// Builds the index (O(members + slots)).
    pub fn build(members: &[MemberView], slots: &[SlotView]) -> ClusterIndex {
        let mut idx = ClusterIndex::default();
        for m in members {
            idx.members.insert(
                m.name.clone(),
                MemberFacts {
                    status: m.status,
                    tags: crate::control::model::tags_string(&m.tags),
                    tag: m.tags.clone(),
                },
            );
        }
        let mut live: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for s in slots {
            let b = idx.backends.entry(s.backend.clone()).or_default();
            let names = live.entry(s.backend.as_str()).or_default();
            match &s.member {
                None => b.free += 1,
                Some(m) => {
                    idx.slots
                        .insert((s.backend.clone(), s.slot.clone()), m.clone());
                    idx.first_slot
                        .entry(s.slot.clone())
                        .or_insert_with(|| m.clone());
                    if idx
                        .members
                        .get(m)
                        .is_some_and(|f| f.status == MemberStatus::Alive)
                    {
                        names.insert(m.as_str());
                    }
                }
            }
        }
        for (backend, names) in live {
            if let Some(b) = idx.backends.get_mut(backend) {
                b.live = names.len();
                b.members = names.into_iter().collect::<Vec<_>>().join(",");
            }
        }
        idx
    }

    /// A member's facts.
    pub fn member(&self, name: &str) -> Option<&MemberFacts> {
        self.members.get(name)
    }

    /// The member in slot `server` of `backend` (any backend when `None`: the first one
    /// listed with that slot).
    pub fn slot_member(&self, backend: Option<&str>, server: &str) -> Option<&str> {
        match backend {
            Some(b) => self
                .slots
                .get(&(b.to_string(), server.to_string()))
                .map(String::as_str),
            None => self.first_slot.get(server).map(String::as_str),
        }
    }

    /// A backend's facts (`None` for a backend without slots).
    pub fn backend(&self, name: &str) -> Option<&BackendFacts> {
        self.backends.get(name)
    }
}

/// A [`ClusterView`] whose index is rebuilt at most once per `ttl` (the agent uses 100 ms:
/// membership itself travels by gossip in about that time, and slots change at most once
/// per reconcile pass).
pub struct CachedView<V> {
    inner: V,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<ClusterIndex>)>>,
}

impl<V: ClusterView> CachedView<V> {
    /// Wraps `inner`.
    pub fn new(inner: V, ttl: Duration) -> CachedView<V> {
        CachedView {
            inner,
            ttl,
            cache: Mutex::new(None),
        }
    }
}

impl<V: ClusterView> ClusterView for CachedView<V> {
    fn members(&self) -> Vec<MemberView> {
        self.inner.members()
    }

    fn slots(&self) -> Vec<SlotView> {
        self.inner.slots()
    }

    fn index(&self) -> Arc<ClusterIndex> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, idx)) = cache.as_ref() {
            if at.elapsed() < self.ttl {
                return idx.clone();
            }
        }
        let idx = Arc::new(ClusterIndex::build(
            &self.inner.members(),
            &self.inner.slots(),
        ));
        *cache = Some((Instant::now(), idx.clone()));
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::SlotState;

    fn member(name: &str, status: MemberStatus) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "10.0.0.1".into(),
            port: 7946,
            tags: [("zone".to_string(), "a".to_string())].into(),
            status,
            suspect: false,
        }
    }

    fn slot(backend: &str, slot: &str, member: Option<&str>) -> SlotView {
        SlotView {
            backend: backend.into(),
            slot: slot.into(),
            member: member.map(str::to_string),
            addr: None,
            state: SlotState::Ready,
            haproxy_status: "UP".into(),
        }
    }

    #[test]
    fn backends_count_alive_members_once_and_free_slots() {
        let idx = ClusterIndex::build(
            &[
                member("b", MemberStatus::Alive),
                member("a", MemberStatus::Alive),
                member("x", MemberStatus::Failed),
            ],
            &[
                slot("web", "web1", Some("b")),
                slot("web", "web2", Some("a")),
                slot("web", "web3", Some("x")),
                slot("web", "web4", None),
                slot("api", "web1", Some("a")),
            ],
        );
        let web = idx.backend("web").unwrap();
        assert_eq!((web.live, web.members.as_str(), web.free), (2, "a,b", 1));
        assert_eq!(idx.backend("api").unwrap().live, 1);
        assert!(idx.backend("nope").is_none());
        assert_eq!(idx.slot_member(Some("api"), "web1"), Some("a"));
        assert_eq!(idx.slot_member(None, "web1"), Some("b"));
        assert_eq!(idx.member("a").unwrap().tags, "zone=a");
    }

    #[test]
    fn a_cached_view_rebuilds_only_after_its_ttl() {
        let view = crate::spoe::StaticView {
            members: vec![member("a", MemberStatus::Alive)],
            slots: vec![],
        };
        let cached = CachedView::new(view, Duration::from_secs(60));
        let first = cached.index();
        assert!(Arc::ptr_eq(&first, &cached.index()));
        let cached = CachedView::new(cached.inner, Duration::ZERO);
        let first = cached.index();
        assert!(!Arc::ptr_eq(&first, &cached.index()));
    }
}

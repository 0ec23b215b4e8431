//! Queries and responses (Serf `query.go` and `handleQuery` / `handleQueryResponse`): a query
//! is gossiped to every member, processed once per (time, id) by the members its filters
//! select, acked if asked, and answered straight to the asker (relayed through `relay_factor`
//! random members too). The asker collects acks and responses, once per member, until the
//! deadline. Serf's own `_serf_*` queries are answered in `internal_query.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use super::lamport::LamportClock;
use super::members::Members;
use crate::control::model::MemberStatus;
use crate::gossip::error::GossipError;
use crate::gossip::model::QueryParams;
use crate::gossip::output::CoreEvent;
use crate::gossip::runtime::Runtime;
use crate::gossip::timer::Timer;
use crate::gossip::wire::{
    decode_query_filter, encode_message, encode_query_filter, encode_serf_message, Message, Query,
    QueryFilter, QueryResponse, Relay, SerfMessage, QUERY_FLAG_ACK, QUERY_FLAG_NO_BROADCAST,
    QUERY_RESPONSE_FLAG_ACK,
};

/// Serf's `queryBuffer`: query times remembered.
const QUERY_BUFFER: u64 = 512;

/// Go's `regexp.MatchString` for a Serf tag filter (unanchored, RE2 syntax, which the
/// `regex` crate shares); an expression that does not compile matches nothing, as in Serf.
pub fn tag_filter_matches(expr: &str, value: &str) -> bool {
    regex::Regex::new(expr).is_ok_and(|re| re.is_match(value))
}

/// Serf's filter rule: process a query only if every filter matches; an unreadable filter,
/// a missing tag or an invalid expression means "not for us".
pub(crate) fn should_process(
    filters: &[Vec<u8>],
    me: &str,
    tags: &BTreeMap<String, String>,
) -> bool {
    filters.iter().all(|f| match decode_query_filter(f) {
        Ok(QueryFilter::Nodes(names)) => names.iter().any(|n| n == me),
        Ok(QueryFilter::Tag { tag, expr }) => {
            tags.get(&tag).is_some_and(|v| tag_filter_matches(&expr, v))
        }
        Err(_) => false,
    })
}

/// Serf's `DefaultQueryTimeout`: `GossipInterval × 16 × ceil(log10(n + 1))`.
pub(crate) fn default_timeout(gossip_interval: Duration, n: usize) -> Duration {
    let scale = ((n as f64 + 1.0).log10()).ceil().max(1.0);
    gossip_interval.mul_f64(16.0 * scale)
}

/// Sends an encoded query response to `addr`, and through `relay` random alive members of
/// protocol 5+ (Serf `relayResponse`) when the cluster has more than `relay + 1` members.
pub(crate) fn send_response(
    addr: SocketAddr,
    relay: u8,
    serf: Vec<u8>,
    members: &Members,
    rt: &mut Runtime,
) {
    let msg = encode_message(&Message::User(serf.clone()));
    rt.send_raw(addr, &[msg], false);
    if relay == 0 {
        return;
    }
    let mut cands: Vec<(String, SocketAddr)> = members
        .iter()
        .filter(|m| m.name != members.me() && m.status == MemberStatus::Alive && m.vsn.pmax >= 5)
        .map(|m| (m.name.clone(), SocketAddr::new(m.addr, m.port)))
        .collect();
    if members.len() <= relay as usize + 1 {
        return;
    }
    cands.sort();
    cands.shuffle(&mut rt.rng);
    for (name, to) in cands.into_iter().take(relay as usize) {
        let r = Relay {
            dest_addr: addr.ip(),
            dest_port: addr.port(),
            dest_zone: String::new(),
            dest_name: name,
            inner: serf.clone(),
        };
        let bytes = encode_serf_message(&SerfMessage::Relay(r));
        let msg = encode_message(&Message::User(bytes));
        rt.send_raw(to, &[msg], false);
    }
}

/// A query we sent.
#[derive(Debug)]
struct Outgoing {
    ltime: u64,
    id: u32,
    acks: HashSet<String>,
    responses: HashSet<String>,
}

/// A query delivered to the user, not answered yet.
#[derive(Debug)]
struct Incoming {
    ltime: u64,
    id: u32,
    addr: SocketAddr,
    relay_factor: u8,
    deadline: Instant,
}

/// An ack or a response to one of our queries, first of its kind from its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// An ack.
    Ack {
        /// Our query's handle.
        handle: u64,
        /// Responder.
        from: String,
    },
    /// A response.
    Response {
        /// Our query's handle.
        handle: u64,
        /// Responder.
        from: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// The query state of a member.
#[derive(Debug)]
pub(crate) struct Queries {
    /// Our name and address, the source of our queries.
    source: (String, SocketAddr),
    /// Largest encoded query we send (Serf `QuerySizeLimit`).
    size_limit: usize,
    /// Largest encoded response we send (Serf `QueryResponseSizeLimit`).
    response_size_limit: usize,
    clock: LamportClock,
    /// Queries older than this are not processed (set by a join that ignores old ones).
    min_time: u64,
    /// (time, ids) seen per slot of the query ring.
    seen: HashMap<u64, (u64, HashSet<u32>)>,
    outgoing: HashMap<u64, Outgoing>,
    by_id: HashMap<u32, u64>,
    incoming: HashMap<u64, Incoming>,
}

impl Queries {
    /// No query seen; the clock at 1. Our queries come from `source` (name, address).
    pub fn new(
        source: (String, SocketAddr),
        size_limit: usize,
        response_size_limit: usize,
    ) -> Self {
        Queries {
            source,
            size_limit,
            response_size_limit,
            clock: LamportClock::new(1),
            min_time: 0,
            seen: HashMap::new(),
            outgoing: HashMap::new(),
            by_id: HashMap::new(),
            incoming: HashMap::new(),
        }
    }

    /// The query clock.
    pub fn clock(&self) -> u64 {
        self.clock.time()
    }

    /// A push/pull's query clock: witnessed; `ignore_old` makes everything before it
    /// unprocessed.
    pub fn witness_remote(&mut self, ltime: u64, ignore_old: bool) {
        if ltime > 0 {
            self.clock.witness(ltime - 1);
        }
        if ignore_old {
            self.min_time = self.min_time.max(ltime);
        }
    }

    /// Creates our query `name`: a random id, the
    /// current query time, the filters and flags of `params`, and a deadline after
    /// `timeout`. Returns its handle, deadline, and the query with its encoding, to process
    /// here and gossip. Refused over the query size limit.
    pub fn start(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
        timeout: Duration,
        rt: &mut Runtime,
    ) -> Result<(u64, Instant, Query, Vec<u8>), GossipError> {
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(encode_query_filter(&QueryFilter::Nodes(
                params.filter_nodes.clone(),
            )));
        }
        for (tag, expr) in &params.filter_tags {
            filters.push(encode_query_filter(&QueryFilter::Tag {
                tag: tag.clone(),
                expr: expr.clone(),
            }));
        }
        let id: u32 = rt.rng.gen();
        let q = Query {
            ltime: self.clock.time(),
            id,
            addr: self.source.1.ip(),
            port: self.source.1.port(),
            source_node: self.source.0.clone(),
            filters,
            flags: if params.request_ack {
                QUERY_FLAG_ACK
            } else {
                0
            },
            relay_factor: params.relay_factor,
            timeout_ns: timeout.as_nanos() as i64,
            name: name.to_string(),
            payload: payload.to_vec(),
        };
        let bytes = encode_serf_message(&SerfMessage::Query(q.clone()));
        if bytes.len() > self.size_limit {
            return Err(GossipError::TooLarge {
                what: "query",
                size: bytes.len(),
                limit: self.size_limit,
            });
        }
        self.clock.increment();
        let handle = rt.next_id();
        self.outgoing.insert(
            handle,
            Outgoing {
                ltime: q.ltime,
                id,
                acks: HashSet::new(),
                responses: HashSet::new(),
            },
        );
        self.by_id.insert(id, handle);
        let deadline = now + timeout;
        rt.schedule(deadline, Timer::QueryEnd(handle));
        Ok((handle, deadline, q, bytes))
    }

    /// A query from the cluster (or our own, processed here first): processed once per
    /// (time, id), re-gossiped unless it is ours or asks not to be, then — if its filters
    /// select us (`me`, `tags`) — acked if asked and delivered to the user with a token to
    /// answer by. Serf's internal `_serf_*` queries are returned instead, to answer.
    pub fn handle(
        &mut self,
        now: Instant,
        q: Query,
        raw: Vec<u8>,
        tags: &BTreeMap<String, String>,
        members: &Members,
        rt: &mut Runtime,
    ) -> Option<(Query, SocketAddr)> {
        self.clock.witness(q.ltime);
        if q.ltime < self.min_time {
            return None;
        }
        let cur = self.clock.time();
        if cur > QUERY_BUFFER && q.ltime < cur - QUERY_BUFFER {
            rt.count_drop("old_query");
            return None;
        }
        let idx = q.ltime % QUERY_BUFFER;
        let slot = self
            .seen
            .entry(idx)
            .or_insert_with(|| (q.ltime, HashSet::new()));
        if slot.0 != q.ltime {
            *slot = (q.ltime, HashSet::new());
        }
        if !slot.1.insert(q.id) {
            return None;
        }
        let me = members.me();
        if q.flags & QUERY_FLAG_NO_BROADCAST == 0 && q.source_node != me {
            rt.broadcasts.queue_serf(raw, None);
        }
        if !should_process(&q.filters, me, tags) {
            return None;
        }
        let addr = SocketAddr::new(q.addr, q.port);
        if q.flags & QUERY_FLAG_ACK != 0 {
            let ack = QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: me.to_string(),
                flags: QUERY_RESPONSE_FLAG_ACK,
                payload: None,
            };
            let bytes = encode_serf_message(&SerfMessage::QueryResponse(ack));
            send_response(addr, q.relay_factor, bytes, members, rt);
        }
        let timeout = Duration::from_nanos(q.timeout_ns.max(0) as u64);
        let deadline = now + timeout;
        if q.name.starts_with("_serf_") {
            return Some((q, addr));
        }
        let token = rt.next_id();
        self.incoming.insert(
            token,
            Incoming {
                ltime: q.ltime,
                id: q.id,
                addr,
                relay_factor: q.relay_factor,
                deadline,
            },
        );
        rt.schedule(deadline, Timer::IncomingQueryEnd(token));
        rt.event(CoreEvent::Query {
            token,
            name: q.name,
            payload: q.payload,
            source_node: q.source_node,
            ltime: q.ltime,
            deadline,
        });
        None
    }

    /// Answers the incoming query `token` (once, before its deadline, within the response
    /// size limit).
    pub fn respond(
        &mut self,
        now: Instant,
        token: u64,
        payload: &[u8],
        members: &Members,
        rt: &mut Runtime,
    ) -> Result<(), GossipError> {
        let Some(q) = self.incoming.remove(&token) else {
            return Err(GossipError::AlreadyResponded);
        };
        if now > q.deadline {
            return Err(GossipError::QueryExpired);
        }
        let resp = QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: members.me().to_string(),
            flags: 0,
            payload: Some(payload.to_vec()),
        };
        let bytes = encode_serf_message(&SerfMessage::QueryResponse(resp));
        if bytes.len() > self.response_size_limit {
            return Err(GossipError::TooLarge {
                what: "query response",
                size: bytes.len(),
                limit: self.response_size_limit,
            });
        }
        send_response(q.addr, q.relay_factor, bytes, members, rt);
        Ok(())
    }

    /// An ack or response to one of our queries: the first of its kind from its member, for
    /// a query still running at the same time; `None` otherwise.
    pub fn handle_response(&mut self, r: QueryResponse) -> Option<Reply> {
        let handle = *self.by_id.get(&r.id)?;
        let q = self.outgoing.get_mut(&handle)?;
        if q.ltime != r.ltime {
            return None;
        }
        if r.flags & QUERY_RESPONSE_FLAG_ACK != 0 {
            q.acks.insert(r.from.clone()).then_some(Reply::Ack {
                handle,
                from: r.from,
            })
        } else {
            q.responses.insert(r.from.clone()).then(|| Reply::Response {
                handle,
                from: r.from,
                payload: r.payload.unwrap_or_default(),
            })
        }
    }

    /// Our query's deadline passed ([`Timer::QueryEnd`]): later answers are ignored.
    pub fn end(&mut self, handle: u64) {
        if let Some(q) = self.outgoing.remove(&handle) {
            self.by_id.remove(&q.id);
        }
    }

    /// An incoming query's deadline passed ([`Timer::IncomingQueryEnd`]).
    pub fn incoming_end(&mut self, token: u64) {
        self.incoming.remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::Output;
    use crate::gossip::runtime::testing::sent;
    use crate::gossip::serf::members::testing::cluster;
    use crate::gossip::wire::decode_serf_message;

    fn query(ltime: u64, id: u32, source: &str, flags: u32) -> Query {
        Query {
            ltime,
            id,
            addr: [10, 0, 0, 9].into(),
            port: 7946,
            source_node: source.into(),
            filters: vec![],
            flags,
            relay_factor: 0,
            timeout_ns: 1_000_000_000,
            name: "ask".into(),
            payload: b"?".to_vec(),
        }
    }

    /// The queries of n0 at 10.0.0.0, 1 KiB limits.
    fn queries() -> Queries {
        Queries::new(
            ("n0".into(), SocketAddr::from(([10, 0, 0, 0], 7946))),
            1024,
            1024,
        )
    }

    fn raw(q: &Query) -> Vec<u8> {
        encode_serf_message(&SerfMessage::Query(q.clone()))
    }

    #[test]
    fn the_tag_filter_matcher_handles_serf_style_expressions() {
        assert!(tag_filter_matches("web", "web"));
        assert!(tag_filter_matches("^db$", "db"));
        assert!(!tag_filter_matches("^db$", "db2"));
        assert!(
            tag_filter_matches("w.*", "awx"),
            "unanchored, like Go's MatchString"
        );
        assert!(tag_filter_matches("^(web|db)$", "db"));
        assert!(tag_filter_matches("^web[0-9]+$", "web12"));
        assert!(!tag_filter_matches("^cache", "web"));
        assert!(
            !tag_filter_matches("(", "("),
            "an invalid expression matches nothing"
        );
    }

    #[test]
    fn query_filters_decide_whether_a_query_is_processed() {
        let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);
        let nodes = |n: &[&str]| {
            encode_query_filter(&QueryFilter::Nodes(
                n.iter().map(|s| s.to_string()).collect(),
            ))
        };
        let tag = |t: &str, e: &str| {
            encode_query_filter(&QueryFilter::Tag {
                tag: t.into(),
                expr: e.into(),
            })
        };
        assert!(should_process(&[], "n1", &tags));
        assert!(should_process(
            &[nodes(&["n0", "n1"]), tag("role", "^w")],
            "n1",
            &tags
        ));
        assert!(!should_process(&[nodes(&["n2"])], "n1", &tags));
        assert!(!should_process(&[tag("role", "^db$")], "n1", &tags));
        assert!(
            !should_process(&[tag("zone", ".*")], "n1", &tags),
            "a missing tag never matches"
        );
        assert!(
            !should_process(&[vec![7, 0x90]], "n1", &tags),
            "an unknown filter type is not for us"
        );
    }

    #[test]
    fn the_default_timeout_follows_serfs_formula() {
        let g = Duration::from_millis(200);
        assert_eq!(default_timeout(g, 1), Duration::from_millis(3200));
        assert_eq!(default_timeout(g, 9), Duration::from_millis(3200));
        assert_eq!(default_timeout(g, 10), Duration::from_millis(6400));
    }

    #[test]
    fn a_query_is_processed_once_per_time_and_id_acked_and_regossiped() {
        let now = Instant::now();
        let (members, _nodes, mut rt) = cluster(2, now);
        let mut qs = queries();
        let q = query(5, 77, "n1", QUERY_FLAG_ACK);
        assert_eq!(
            qs.handle(now, q.clone(), raw(&q), &BTreeMap::new(), &members, &mut rt),
            None
        );
        assert_eq!(
            qs.handle(now, q.clone(), raw(&q), &BTreeMap::new(), &members, &mut rt),
            None
        );
        let mut acks = 0;
        let mut delivered = 0;
        while let Some(o) = rt.poll_output() {
            match o {
                Output::Udp { to, .. } => {
                    assert_eq!(to, SocketAddr::from(([10, 0, 0, 9], 7946)));
                    acks += 1;
                }
                Output::Event(CoreEvent::Query { name, .. }) => {
                    assert_eq!(name, "ask");
                    delivered += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((acks, delivered), (1, 1), "the duplicate did nothing");
        assert_eq!(rt.broadcasts.len(), 1, "re-gossiped once");
        assert_eq!(qs.clock(), 6);
        let other_id = query(5, 78, "n1", 0);
        qs.handle(
            now,
            other_id.clone(),
            raw(&other_id),
            &BTreeMap::new(),
            &members,
            &mut rt,
        );
        assert!(matches!(
            rt.poll_output(),
            Some(Output::Event(CoreEvent::Query { .. }))
        ));
    }

    #[test]
    fn an_internal_query_is_returned_to_answer_and_never_delivered() {
        let now = Instant::now();
        let (members, _nodes, mut rt) = cluster(1, now);
        let mut qs = queries();
        let mut q = query(1, 1, "n1", 0);
        q.name = "_serf_ping".into();
        let internal = qs.handle(now, q.clone(), raw(&q), &BTreeMap::new(), &members, &mut rt);
        assert_eq!(
            internal.map(|(q, _)| q.name),
            Some("_serf_ping".to_string())
        );
        assert!(rt.poll_output().is_none());
    }

    #[test]
    fn a_response_is_sent_once_before_the_deadline() {
        let now = Instant::now();
        let (members, _nodes, mut rt) = cluster(1, now);
        let mut qs = queries();
        let q = query(1, 1, "n1", 0);
        qs.handle(now, q.clone(), raw(&q), &BTreeMap::new(), &members, &mut rt);
        let Some(Output::Event(CoreEvent::Query { token, .. })) = rt.poll_output() else {
            panic!("delivered");
        };
        qs.respond(now, token, b"yes", &members, &mut rt).unwrap();
        let out = sent(&mut rt);
        let Message::User(serf) = &out[0].1[0] else {
            panic!("{out:?}");
        };
        let SerfMessage::QueryResponse(r) = decode_serf_message(serf).unwrap() else {
            panic!("a response");
        };
        assert_eq!((r.from.as_str(), r.payload), ("n0", Some(b"yes".to_vec())));
        assert!(matches!(
            qs.respond(now, token, b"again", &members, &mut rt),
            Err(GossipError::AlreadyResponded)
        ));
        let q2 = query(2, 2, "n1", 0);
        qs.handle(
            now,
            q2.clone(),
            raw(&q2),
            &BTreeMap::new(),
            &members,
            &mut rt,
        );
        let Some(Output::Event(CoreEvent::Query { token, .. })) = rt.poll_output() else {
            panic!("delivered");
        };
        let late = now + Duration::from_secs(2);
        assert!(matches!(
            qs.respond(late, token, b"late", &members, &mut rt),
            Err(GossipError::QueryExpired)
        ));
    }

    #[test]
    fn responses_are_relayed_through_relay_factor_members() {
        let now = Instant::now();
        let (members, _nodes, mut rt) = cluster(4, now);
        let asker = SocketAddr::from(([10, 0, 0, 9], 7946));
        send_response(asker, 2, b"r".to_vec(), &members, &mut rt);
        let out = sent(&mut rt);
        assert_eq!(out.len(), 3, "direct + two relays");
        assert_eq!(out[0].0, asker);
        for (to, msgs) in &out[1..] {
            assert_ne!(*to, asker);
            let Message::User(serf) = &msgs[0] else {
                panic!("{msgs:?}");
            };
            assert!(
                matches!(decode_serf_message(serf).unwrap(), SerfMessage::Relay(r) if r.dest_port == 7946)
            );
        }
    }

    #[test]
    fn acks_and_responses_to_our_query_count_once_per_member_until_the_deadline() {
        let now = Instant::now();
        let (_members, _nodes, mut rt) = cluster(1, now);
        let mut qs = queries();
        let params = QueryParams {
            request_ack: true,
            ..QueryParams::default()
        };
        let (handle, deadline, q, _) = qs
            .start(now, "ask", b"", params, Duration::from_secs(3), &mut rt)
            .unwrap();
        assert_eq!(deadline, now + Duration::from_secs(3));
        assert_eq!(q.flags, QUERY_FLAG_ACK);
        assert_eq!(qs.clock(), 2);
        let resp = |flags, from: &str| QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: from.into(),
            flags,
            payload: Some(b"a".to_vec()),
        };
        assert_eq!(
            qs.handle_response(resp(QUERY_RESPONSE_FLAG_ACK, "n1")),
            Some(Reply::Ack {
                handle,
                from: "n1".into()
            })
        );
        assert_eq!(
            qs.handle_response(resp(QUERY_RESPONSE_FLAG_ACK, "n1")),
            None
        );
        assert!(matches!(
            qs.handle_response(resp(0, "n1")),
            Some(Reply::Response { .. })
        ));
        assert_eq!(qs.handle_response(resp(0, "n1")), None);
        qs.end(handle);
        assert_eq!(
            qs.handle_response(resp(0, "n2")),
            None,
            "after the deadline"
        );
    }

    #[test]
    fn an_oversized_query_is_refused_and_takes_no_time() {
        let now = Instant::now();
        let (_members, _nodes, mut rt) = cluster(0, now);
        let mut qs = queries();
        let r = qs.start(
            now,
            "big",
            &[0; 2000],
            QueryParams::default(),
            Duration::from_secs(1),
            &mut rt,
        );
        assert!(matches!(
            r,
            Err(GossipError::TooLarge { what: "query", .. })
        ));
        assert_eq!(qs.clock(), 1);
    }
}

//! Serf's internal queries (Serf `internal_query.go`), answered by the library itself:
//! `_serf_ping` (acked only), `_serf_conflict` (what we know of a name, see `conflict.rs`) and
//! the key queries (`keymanager.rs`). Unknown `_serf_*` queries get no answer.

use std::net::SocketAddr;
use std::path::Path;

use super::members::Members;
use super::query::send_response;
use super::{conflict, keymanager};
use crate::gossip::runtime::Runtime;
use crate::gossip::wire::{encode_serf_message, Query, QueryResponse, SerfMessage};

/// Answers the internal query `q` to `addr` (the ack, if asked, was already sent).
pub(crate) fn answer(
    q: &Query,
    addr: SocketAddr,
    members: &Members,
    keyring_file: Option<&Path>,
    rt: &mut Runtime,
) {
    let payload: Option<Vec<u8>> = match q.name.as_str() {
        "_serf_ping" => None,
        "_serf_conflict" => conflict::answer(&String::from_utf8_lossy(&q.payload), members),
        "_serf_install-key" | "_serf_use-key" | "_serf_remove-key" | "_serf_list-keys" => {
            tracing::info!(query = %q.name, ltime = q.ltime, id = q.id, from = %q.source_node, "received key query");
            Some(keymanager::answer(&q.name, &q.payload, keyring_file, rt))
        }
        other => {
            tracing::debug!(query = %other, "unknown internal query");
            None
        }
    };
    if let Some(p) = payload {
        let resp = QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: members.me().to_string(),
            flags: 0,
            payload: Some(p),
        };
        let bytes = encode_serf_message(&SerfMessage::QueryResponse(resp));
        send_response(addr, q.relay_factor, bytes, members, rt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::runtime::testing::sent;
    use crate::gossip::serf::members::testing::cluster;
    use crate::gossip::wire::{decode_conflict_response, decode_serf_message, Message};
    use std::time::Instant;

    fn q(name: &str, payload: &[u8]) -> Query {
        Query {
            ltime: 3,
            id: 9,
            addr: [10, 0, 0, 9].into(),
            port: 7946,
            source_node: "ops".into(),
            filters: vec![],
            flags: 0,
            relay_factor: 0,
            timeout_ns: 1_000_000_000,
            name: name.into(),
            payload: payload.to_vec(),
        }
    }

    fn answers(name: &str, payload: &[u8]) -> Vec<QueryResponse> {
        let (members, _nodes, mut rt) = cluster(1, Instant::now());
        let asker = SocketAddr::from(([10, 0, 0, 9], 7946));
        answer(&q(name, payload), asker, &members, None, &mut rt);
        sent(&mut rt)
            .into_iter()
            .map(|(to, m)| {
                assert_eq!(to, asker);
                let Message::User(serf) = &m[0] else {
                    panic!("{m:?}");
                };
                match decode_serf_message(serf).unwrap() {
                    SerfMessage::QueryResponse(r) => r,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn a_serf_ping_and_an_unknown_internal_query_get_no_answer() {
        assert!(answers("_serf_ping", b"").is_empty());
        assert!(answers("_serf_frobnicate", b"").is_empty());
    }

    #[test]
    fn a_conflict_query_is_answered_with_what_we_know_of_the_name() {
        let r = answers("_serf_conflict", b"n1");
        assert_eq!(
            (r.len(), r[0].from.as_str(), r[0].ltime, r[0].id),
            (1, "n0", 3, 9)
        );
        let m = decode_conflict_response(r[0].payload.as_deref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((m.name.as_str(), m.status), ("n1", 1));
        assert!(answers("_serf_conflict", b"n0").is_empty(), "our own name");
    }

    /// Every key command, in rotation order: answered within the call that processed it
    /// (no deferral past the asker's timeout), by one packet to the asker, that the asker
    /// can read with the keyring a Serf node holds after the same command (Serf answers
    /// after changing its keyring, so `use` and `remove` go out under the new primary).
    #[test]
    fn every_key_command_is_answered_at_once_to_the_asker_under_a_key_it_holds() {
        use crate::gossip::config::GossipConfig;
        use crate::gossip::wire::{
            decode_key_response, decode_packet, encode_key_request, KeyRequest, Keyring,
        };
        let (k1, k2) = (vec![1u8; 16], vec![2u8; 16]);
        let mut cfg = GossipConfig::new("n0", SocketAddr::from(([10, 0, 0, 1], 7946)));
        cfg.keyring = Some(Keyring::new(k1.clone()).unwrap());
        let mut rt = Runtime::new(&cfg, 1);
        let members = Members::new("n0");
        let asker = SocketAddr::from(([10, 0, 0, 9], 7946));
        let mut askers_ring = Keyring::new(k1.clone()).unwrap();
        let steps: [(&str, &Vec<u8>); 4] = [
            ("_serf_install-key", &k2),
            ("_serf_use-key", &k2),
            ("_serf_remove-key", &k1),
            ("_serf_list-keys", &k2),
        ];
        for (name, key) in steps {
            match name {
                "_serf_install-key" => askers_ring.install(key.clone()).unwrap(),
                "_serf_use-key" => askers_ring.use_key(key).unwrap(),
                "_serf_remove-key" => askers_ring.remove(key).unwrap(),
                _ => {}
            }
            let payload = encode_key_request(&KeyRequest { key: key.clone() });
            answer(&q(name, &payload), asker, &members, None, &mut rt);
            let mut packets = Vec::new();
            while let Some(o) = rt.poll_output() {
                if let crate::gossip::output::Output::Udp { to, data } = o {
                    packets.push((to, data));
                }
            }
            assert_eq!(packets.len(), 1, "{name}: one answer, sent now");
            assert_eq!(packets[0].0, asker, "{name}");
            let msgs = decode_packet(&packets[0].1, Some(&askers_ring))
                .unwrap_or_else(|e| panic!("{name}: the asker cannot read the answer: {e}"))
                .messages;
            let Message::User(serf) = &msgs[0] else {
                panic!("{name}: {msgs:?}");
            };
            let SerfMessage::QueryResponse(r) = decode_serf_message(serf).unwrap() else {
                panic!("{name}: not a query response");
            };
            assert_eq!((r.flags, r.ltime, r.id, r.from.as_str()), (0, 3, 9, "n0"));
            let kr = decode_key_response(r.payload.as_deref().unwrap()).unwrap();
            assert!(kr.result, "{name}: {}", kr.message);
        }
    }

    #[test]
    fn a_key_query_is_answered_by_the_key_manager() {
        let r = answers("_serf_list-keys", b"");
        assert_eq!(r.len(), 1);
    }
}

//! This node as memberlist knows it: name, advertised address, meta (Serf's encoded tags),
//! incarnation, whether it is leaving, and its Lifeguard health ([`Awareness`]). Builds the
//! messages that speak for this node: its alive, and the pings it sends.

use std::net::SocketAddr;

use super::awareness::Awareness;
use crate::gossip::wire::{Alive, Ping, Vsn};

/// The local node.
#[derive(Debug, Clone)]
pub(crate) struct LocalNode {
    /// Node name.
    pub name: String,
    /// Address put into alive messages and pings.
    pub adv: SocketAddr,
    /// memberlist `Meta` (Serf's encoded tags).
    pub meta: Vec<u8>,
    /// Current incarnation (1 at start, like memberlist's first `nextIncarnation`).
    pub incarnation: u32,
    /// A graceful leave started: no refutation, no new alive about ourselves.
    pub leaving: bool,
    /// Lifeguard health.
    pub awareness: Awareness,
    /// What our acks carry (Serf's ping delegate: our network coordinate); `None` when
    /// coordinates are disabled.
    pub ack_payload: Option<Vec<u8>>,
}

impl LocalNode {
    /// The node at incarnation 1.
    pub fn new(name: String, adv: SocketAddr, meta: Vec<u8>, awareness_max: u32) -> Self {
        LocalNode {
            name,
            adv,
            meta,
            incarnation: 1,
            leaving: false,
            awareness: Awareness::new(awareness_max),
            ack_payload: None,
        }
    }

    /// Our alive message (Serf's protocol versions).
    pub fn alive(&self) -> Alive {
        Alive {
            incarnation: self.incarnation,
            node: self.name.clone(),
            addr: self.adv.ip(),
            port: self.adv.port(),
            meta: self.meta.clone(),
            vsn: Some(Vsn::SERF),
        }
    }

    /// A ping from us to `target` (memberlist fills in the source for the ack's way back).
    pub fn ping(&self, target: &str, seq_no: u32) -> Ping {
        Ping {
            node: target.to_string(),
            seq_no,
            source_addr: Some(self.adv.ip()),
            source_node: self.name.clone(),
            source_port: self.adv.port(),
        }
    }

    /// New tags: meta replaced, incarnation + 1; returns the alive to apply.
    pub fn set_meta(&mut self, meta: Vec<u8>) -> Alive {
        self.meta = meta;
        self.incarnation += 1;
        self.alive()
    }

    /// memberlist `refute`: an incarnation above both ours and the accusation's, and a worse
    /// health score; returns the alive that refutes.
    pub fn refute(&mut self, accused: u32) -> Alive {
        let mut inc = self.incarnation + 1;
        if accused >= inc {
            inc = accused + 1;
        }
        self.incarnation = inc;
        self.awareness.apply_delta(1);
        self.alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalNode {
        LocalNode::new(
            "a".into(),
            SocketAddr::from(([10, 0, 0, 1], 7946)),
            vec![],
            8,
        )
    }

    #[test]
    fn a_refutation_outbids_both_our_incarnation_and_the_accusation() {
        let mut l = local();
        assert_eq!(l.refute(0).incarnation, 2, "ours + 1");
        assert_eq!(l.refute(9).incarnation, 10, "accused + 1");
        assert_eq!(l.awareness.score(), 2, "each refutation costs health");
    }

    #[test]
    fn new_tags_bump_the_incarnation_and_go_into_the_alive() {
        let mut l = local();
        let a = l.set_meta(vec![0xff, 0x80]);
        assert_eq!((a.incarnation, a.meta), (2, vec![0xff, 0x80]));
        assert_eq!(a.vsn, Some(Vsn::SERF));
    }
}

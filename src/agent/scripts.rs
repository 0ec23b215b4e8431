//! The agent's side of the event handler scripts ([`crate::handlers`]): starts them with
//! this node as "self", and turns the gossip member's events into the events serf hands its
//! scripts (suspicion and refutation are memberlist's business and go to no script).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::AgentConfig;
use crate::gossip::{Gossip, GossipEvent, IncomingQuery};
use crate::handlers::{
    EventHandlers, EventKind, HandlerEvent, HandlerOptions, MemberLine, QueryEvent, SelfMember,
    UserEvent,
};

/// Starts the scripts of `--event-handler` / `event_handlers`; `None` without any.
pub fn start(cfg: &AgentConfig, gossip: &Gossip, addr: IpAddr) -> Option<EventHandlers> {
    if cfg.serf.event_scripts.is_empty() {
        return None;
    }
    let g = gossip.clone();
    let me = Arc::new(move || {
        let name = g.local_name().to_string();
        let tags = g
            .members()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.tags)
            .unwrap_or_default();
        SelfMember { name, tags }
    });
    let opts = HandlerOptions {
        timeout: cfg.serf.event_handler_timeout,
        ..HandlerOptions::default()
    };
    for s in &cfg.serf.event_scripts {
        tracing::info!(event = %s.filter.event, name = %s.filter.name, script = %s.script, "event handler");
    }
    let handlers = EventHandlers::start(cfg.serf.event_scripts.clone(), opts, me);
    // serf's first event: the local member joins (memberlist notifies its own node)
    handlers.dispatch(HandlerEvent::Member {
        kind: EventKind::MemberJoin,
        members: vec![MemberLine {
            name: gossip.local_name().to_string(),
            addr,
            tags: cfg.tags.clone(),
        }],
    });
    Some(handlers)
}

/// A member or user event as the scripts see it (`None` for the others).
pub fn handler_event(ev: &GossipEvent) -> Option<HandlerEvent> {
    let member = |kind, m| HandlerEvent::Member {
        kind,
        members: vec![MemberLine::from(m)],
    };
    Some(match ev {
        GossipEvent::MemberJoin(m) => member(EventKind::MemberJoin, m),
        GossipEvent::MemberLeave(m) => member(EventKind::MemberLeave, m),
        GossipEvent::MemberFailed(m) => member(EventKind::MemberFailed, m),
        GossipEvent::MemberUpdate(m) => member(EventKind::MemberUpdate, m),
        GossipEvent::MemberReap(m) => member(EventKind::MemberReap, m),
        GossipEvent::User(u) => HandlerEvent::User(UserEvent {
            name: u.name.clone(),
            payload: u.payload.clone(),
            ltime: u.ltime,
            coalesce: u.coalesce,
        }),
        GossipEvent::MemberSuspect(_) | GossipEvent::MemberRefuted(_) | GossipEvent::Query(_) => {
            return None
        }
    })
}

/// A query for the scripts; they answer through it.
pub fn query_event(q: IncomingQuery) -> HandlerEvent {
    HandlerEvent::Query(QueryEvent {
        name: q.name.clone(),
        payload: q.payload.clone(),
        ltime: q.ltime,
        responder: Arc::new(Mutex::new(Some(q))),
    })
}

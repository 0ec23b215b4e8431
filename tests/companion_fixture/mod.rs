//! Shared by the companion test files: a cluster view the test edits while HAProxy runs,
//! a fake agent serving it on the real status-socket server (`control::server`, with the
//! agent's paging) and through the real SPOE agent and map task, and small HTTP helpers.
//! (A directory module, so cargo does not build it as a test crate of its own.)
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haserf::control::model::{
    MemberStatus, MemberView, MembersReply, Query, Request, SlotState, SlotView, SlotsReply,
};
use haserf::control::page;
use haserf::control::server::{error_value, Handler, SocketOptions, StatusServer};
use haserf::maps::{spawn_map_sync, MapSpec, MapSyncConfig, MapSyncHandle};
use haserf::slots::ReconcilerStatus;
use haserf::spoe::{self, ClusterView, SpoeConfig, SpoeMetrics};
use serde_json::{json, Value};

use crate::support::*;

/// A cluster view the test edits while HAProxy runs.
#[derive(Default)]
pub struct SharedView {
    state: Mutex<(Vec<MemberView>, Vec<SlotView>)>,
    /// Answer like an agent older than paging (paging options ignored, whole lists; the
    /// server still frames replies asked `"framed":true`).
    pub no_paging: AtomicBool,
    /// Tells the map task (when one runs) that the view changed.
    changed: Mutex<Option<tokio::sync::watch::Sender<ReconcilerStatus>>>,
}

impl SharedView {
    pub fn set_members(&self, m: Vec<MemberView>) {
        self.state.lock().unwrap().0 = m;
        self.publish();
    }

    pub fn set_slot(&self, slot: SlotView) {
        {
            let mut g = self.state.lock().unwrap();
            match g
                .1
                .iter_mut()
                .find(|s| s.backend == slot.backend && s.slot == slot.slot)
            {
                Some(s) => *s = slot,
                None => g.1.push(slot),
            }
        }
        self.publish();
    }

    /// Publishes the slots to the map task as the reconciler would after a pass.
    fn publish(&self) {
        if let Some(tx) = self.changed.lock().unwrap().as_ref() {
            let slots = self.state.lock().unwrap().1.clone();
            tx.send_modify(|st| {
                st.ready = true;
                st.slots = slots;
                st.passes += 1;
            });
        }
    }
}

impl ClusterView for SharedView {
    fn members(&self) -> Vec<MemberView> {
        self.state.lock().unwrap().0.clone()
    }
    fn slots(&self) -> Vec<SlotView> {
        self.state.lock().unwrap().1.clone()
    }
}

/// Answers the status socket from a view, like the agent does (paging included unless
/// [`SharedView::no_paging`]).
pub struct ViewHandler(pub Arc<SharedView>);

impl Handler for ViewHandler {
    fn handle_query(&self, q: Query) -> Value {
        if self.0.no_paging.load(Ordering::SeqCst) {
            return self.handle(q.request);
        }
        match q.request {
            Request::Members => page::members_reply(&self.0.members(), &q.options),
            Request::Slots => page::slots_reply(&self.0.slots(), &q.options),
            Request::Status => page::bounded(self.handle(Request::Status), &q.options),
            other => self.handle(other),
        }
    }

    fn handle(&self, request: Request) -> Value {
        match request {
            Request::Members => serde_json::to_value(MembersReply {
                members: self.0.members(),
            })
            .unwrap(),
            Request::Slots => serde_json::to_value(SlotsReply {
                slots: self.0.slots(),
            })
            .unwrap(),
            Request::Status => json!({
                "node": "lb", "members": self.0.members().len(),
                "slots_used": self.0.slots().iter().filter(|s| s.member.is_some()).count(),
            }),
            _ => error_value("not supported by the fake agent"),
        }
    }
}

pub fn member(name: &str, tags: &[(&str, &str)], status: MemberStatus) -> MemberView {
    MemberView {
        name: name.into(),
        addr: "127.0.0.1".into(),
        port: 7946,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        status,
        suspect: false,
    }
}

pub fn filled_in(backend: &str, slot: &str, node: &str, addr: SocketAddr) -> SlotView {
    SlotView {
        backend: backend.into(),
        slot: slot.into(),
        member: Some(node.into()),
        addr: Some(addr.to_string()),
        state: SlotState::Ready,
        haproxy_status: "UP".into(),
    }
}

pub fn filled(slot: &str, node: &str, addr: SocketAddr) -> SlotView {
    filled_in("web", slot, node, addr)
}

pub fn free_in(backend: &str, slot: &str) -> SlotView {
    SlotView {
        backend: backend.into(),
        slot: slot.into(),
        member: None,
        addr: None,
        state: SlotState::Maint,
        haproxy_status: "MAINT".into(),
    }
}

pub fn free(slot: &str) -> SlotView {
    free_in("web", slot)
}

/// The status-socket side of a fake agent: the real `control::server` answering from a view.
/// Can be stopped (socket removed) and started again.
pub struct FakeAgent {
    pub rt: tokio::runtime::Runtime,
    pub path: PathBuf,
    pub view: Arc<SharedView>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeAgent {
    pub fn new(path: PathBuf, view: Arc<SharedView>) -> FakeAgent {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut a = FakeAgent {
            rt,
            path,
            view,
            task: None,
        };
        a.start();
        a
    }

    pub fn start(&mut self) {
        let server = self
            .rt
            .block_on(StatusServer::bind(&SocketOptions::new(&self.path)))
            .expect("bind the status socket");
        let handler: Arc<dyn Handler> = Arc::new(ViewHandler(self.view.clone()));
        self.task = Some(self.rt.spawn(async move { server.serve(handler).await }));
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = self.rt.block_on(t);
        }
        assert!(!self.path.exists(), "status socket removed on stop");
    }

    /// Starts the SPOE agent on a fresh address reading the same view, with `cfg` edited by
    /// `tune`; returns the address and its counters.
    pub fn start_spoe_with(
        &self,
        tune: impl FnOnce(&mut SpoeConfig),
    ) -> (SocketAddr, Arc<SpoeMetrics>) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind((alloc_ip(), 0)))
            .expect("bind the SPOE port");
        let addr = listener.local_addr().unwrap();
        let mut cfg = SpoeConfig::new(addr);
        tune(&mut cfg);
        let metrics = cfg.metrics.clone();
        let view: Arc<dyn ClusterView> = self.view.clone();
        self.rt.spawn(spoe::serve_listener(
            listener,
            cfg,
            view,
            std::future::pending::<()>(),
        ));
        (addr, metrics)
    }

    /// [`FakeAgent::start_spoe_with`] with the default settings.
    pub fn start_spoe(&self) -> (SocketAddr, Arc<SpoeMetrics>) {
        self.start_spoe_with(|_| {})
    }

    /// Starts the real map task on HAProxy's admin socket, fed from this view the way the
    /// reconciler and the membership feed it in the agent.
    pub fn start_maps(&self, admin_socket: &Path, maps: Vec<MapSpec>) -> MapSyncHandle {
        let (tx, rx) = tokio::sync::watch::channel(ReconcilerStatus::default());
        *self.view.changed.lock().unwrap() = Some(tx);
        self.view.publish();
        let view = self.view.clone();
        let mut cfg = MapSyncConfig::new(admin_socket.display().to_string(), maps);
        cfg.verify_interval = Duration::from_millis(500);
        let _guard = self.rt.enter();
        spawn_map_sync(cfg, rx, Arc::new(move || view.members()))
    }
}

pub fn repo_file(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// One request with extra headers, on its own connection.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Puts `backend` into HAProxy slot `<be>/<slot>` the way the agent would.
pub fn fill_slot_in(h: &Haproxy, be: &str, slot: &str, backend: &HttpBackend) {
    let reply = h.cmd(&format!(
        "set server {be}/{slot} addr {} port {}; set server {be}/{slot} state ready",
        backend.addr().ip(),
        backend.addr().port()
    ));
    assert!(reply.starts_with("IP changed"), "reply: {reply:?}");
    wait_until(
        Duration::from_secs(15),
        &format!("{be}/{slot} to be UP"),
        || {
            let rows = h.slots(be);
            match rows.iter().find(|r| r.server() == slot) {
                Some(r) if r.status() == "UP" => Ok(()),
                other => Err(other.map(|r| r.status().to_string())),
            }
        },
    );
}

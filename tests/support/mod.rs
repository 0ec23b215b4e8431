//! The harness every integration test uses: real HAProxy, real `serf agent` peers, small HTTP
//! backends and clients, network-namespace hosts, an address allocator and deadline-bounded
//! waits. Each integration test file does `mod support;` and uses a subset, hence the
//! module-level `allow`s.
//!
//! Everything started here is killed on drop (also when a test panics), runs in its own process
//! group, and is wrapped in `timeout` so nothing outlives the test run. See docs/testing.md.
//
// `unused` (dead_code, unused_imports, …) as a lint group: each user needs a subset, and an
// outer `#[allow(dead_code)]` on `mod support;` then is not a duplicated attribute.
#![allow(unused)]

pub mod addr;
pub mod agent;
pub mod captures;
pub mod doc_blocks;
pub mod handler_record;
pub mod haproxy;
pub mod http;
pub mod netns;
pub mod process;
pub mod serf;
pub mod wait;

pub use addr::{alloc_ip, alloc_socket_addr, free_port_on, test_range};
pub use agent::{HaserfAgent, HaserfOptions};
pub use haproxy::{runtime_command, Haproxy, HaproxyConfig, StatRow};
pub use http::{
    http_get, HttpBackend, HttpClient, HttpResponse, LoopLimits, LoopStats, RequestLoop,
};
pub use netns::{Lab, NsHost, NsRequestLoop};
pub use process::{program, require_binary, Launch, Proc};
pub use serf::{Member, QueryResult, SerfCluster, SerfOptions, SerfPeer};
pub use wait::{try_wait_until, wait_until};

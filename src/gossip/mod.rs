//! Serf + memberlist: wire codecs ([`wire`]), sans-IO SWIM and Serf state machines,
//! and the tokio driver.

pub mod wire;

//! Serf and memberlist wire formats: typed messages and their byte codecs.

pub mod message;

pub use message::*;

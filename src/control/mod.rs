//! The status socket: JSON lines in and out (server and client), and the shared view model.

pub mod model;

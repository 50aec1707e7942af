//! The chorus daemon as a library: the sync engine (a sans-IO state machine and its store) that
//! the `chorus` binary drives, and that tests drive without sockets; and the libp2p network it
//! runs over; and the local socket through which the CLI queries a running node.

pub mod api;
pub mod config;
pub mod net;
pub mod node;
pub mod sync;

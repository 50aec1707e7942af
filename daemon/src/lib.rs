//! The chorus daemon as a library: the sync engine (a sans-IO state machine and its store) that
//! the `chorus` binary drives, and that tests drive without sockets; and the libp2p network it
//! runs over.

pub mod net;
pub mod node;
pub mod sync;

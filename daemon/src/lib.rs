//! The chorus daemon as a library: its configuration, the libp2p network it runs over, the node
//! that drives the sync engine (chorus-sync) and the working folder (chorus-folder) beside Raft
//! (chorus-election), and the local socket through which the CLI queries a running node.

pub mod api;
pub mod config;
pub mod net;
pub mod node;

//! The `chorus` subcommands: `demo` (three local nodes), `run` (the daemon), `share` (init, join), `query` and `control`
//! (clients of the running daemon's socket), and the offline tools `delta` and `merge_file`.

pub mod control;
pub mod delta;
pub mod demo;
pub mod merge_file;
pub mod query;
pub mod run;
pub mod share;

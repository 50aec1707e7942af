//! The `chorus` subcommands: `demo` (three local nodes), `run` (the daemon), `share` (init,
//! join), the clients of the running daemon's socket (`socket`: which daemon to ask; `format`: how
//! values are shown; `query`: status, peers, log;
//! `status_watch`; `conflicts`; `ls`; `control`: invite, undo, redo, restore, show, pause,
//! resume, watch; `ui`: the web page's address), the offline tools `delta` and `merge_file`, and `completions` (shell
//! completions and man pages). Results go to stdout, hints and progress to stderr.

pub mod completions;
pub mod conflicts;
pub mod control;
pub mod delta;
pub mod demo;
pub mod format;
pub mod ls;
pub mod merge_file;
pub mod query;
pub mod run;
pub mod share;
pub mod socket;
pub mod status_watch;
pub mod ui;

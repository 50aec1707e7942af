//! chorus-folder: everything about the working folder on this machine's disk.
//!
//! - [`share`]: what a node keeps in sync, a folder or one document, as a tree.
//! - [`scan`]: a directory into a tree manifest, with a cache so unchanged files are not read.
//! - [`materialize`]: writing a version into the folder, never over a change made since the
//!   last scan.
//! - [`watcher`]: inotify, and the debounce that decides when to scan.

pub mod materialize;
pub mod scan;
pub mod share;
pub mod watcher;

pub use share::{DOCUMENT_PATH, Share};

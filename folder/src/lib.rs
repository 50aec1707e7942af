//! chorus-folder: everything about the working folder on this machine's disk.
//!
//! - [`disk`]: [`DiskFolder`], the share on disk as a [`chorus_sync::folder::Folder`]:
//!   scanned and written confined to the share, each failure confined to its path, honest
//!   about what it cannot read.
//! - [`confined`]: path operations relative to directory handles, never through a symlink.
//! - [`scan`] and [`cache`]: a directory into a tree manifest, with a cache so unchanged files
//!   are not read again (and a racy-entry rule so a save within a timestamp tick is not
//!   missed); [`focus`]: the paths the watcher named, so a scan it starts walks only them.
//! - [`write`]: writing a version, never over a change made since the last scan (`batch`:
//!   the temp files not yet renamed; `write_files`: one file's content).
//! - [`marker`]: the `.chorus-share` marker that tells a share from an empty mount point.
//! - [`share`]: what a node keeps in sync, a folder or one document, as a tree.
//! - [`watcher`]: inotify, and the debounce that decides when to scan; [`heard`]: what it heard
//!   and no scan has looked at yet.
//! - `told`: what the log has said about paths a scan could not take, so each is said once.

mod batch;
pub mod cache;
mod checks;
pub mod confined;
mod direct;
pub mod disk;
mod failure;
pub mod focus;
mod focused_scan;
pub mod heard;
mod ignore_file;
pub mod marker;
pub mod materialize;
mod moves;
mod parallel;
mod read;
pub mod scan;
pub mod share;
mod state;
mod syncer;
mod told;
mod watch_tree;
pub mod watcher;
mod write;
#[cfg(test)]
mod write_base_tests;
mod write_files;
#[cfg(test)]
mod write_tests;

pub use disk::DiskFolder;
pub use share::{DOCUMENT_PATH, Share};

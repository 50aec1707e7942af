//! chorus-merge: the three-way merge engine of the leader. Pure: no I/O, no network.
//!
//! - [`woot`]: the WOOT sequence engine (elements with ids, tombstones, a pending pool),
//!   generic over the token and fast enough for megabyte documents.
//! - [`text`]: [`merge`] of one file's content in a [`MergeMode`] (`lines`, `chars`, `whole`).
//! - [`tree`]: [`merge_trees`] over tree manifests, content read through a [`ContentLoader`].
//! - [`order`]: which side wins a conflict (the higher version number).
//! - [`mode`]: merge modes, sniffing and per-path globs.
//! - [`redo`]: redo entries, the redo stack and reapplying an entry.
//! - [`trace`]: real editing traces replayed through the engine (tests, benchmarks).
//!
//! A `chorus merge-file` command is a thin wrapper: parse the numbers with
//! `VersionNumber::from_str` and the mode with `MergeMode::from_str`, read the three files,
//! call [`merge_file`], print [`MergeOutcome::result`], write [`MergeOutcome::redo_json`] if
//! asked, and exit with [`MergeOutcome::exit_code`].

mod diff;
pub mod mode;
pub mod order;
pub mod reapply;
pub mod redo;
pub mod text;
#[cfg(any(test, feature = "test-util"))]
pub mod trace;
pub mod tree;
pub mod woot;
mod xdiff;

pub use mode::{MergeMode, ModeRules};
pub use order::{Order, Side};
pub use reapply::{Aside, reapply, reapply_beside};
pub use redo::{Displaced, RedoEntry, RedoStack};
pub use text::{MergeError, MergeOutcome, merge, merge_file};
pub use tree::{
    ContentLoader, MergedContent, MergedEntry, Numbers, TreeMerge, merge_trees, merge_trees_ordered,
};

//! The sender-initiated delta of DESIGN.md §4: what rsync would send if the sender were the
//! receiver.
//!
//! The sender knows (or believes) which version the receiver holds, the *base*. It describes
//! the *target* as changes against it: unchanged paths cost nothing; a changed file is a list
//! of runs over a chunk table made of the base's chunks, chunks named but not carried
//! (`external`, fetched later with NeedChunks) and the chunks carried as literals. Literals are
//! zstd-compressed with the base chunks they replace as a raw-content dictionary, so a one-line
//! edit inside a 64 KiB chunk costs tens of bytes. [`encode`] builds the delta, [`apply`]
//! rebuilds and verifies the target on the receiver.

mod apply;
mod encode;
mod table;

pub use apply::{Applied, ApplyError, ApplyLimits, apply};
pub use encode::{EncodeOptions, EncodeStats, encode};

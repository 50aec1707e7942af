//! The sender-initiated delta of DESIGN.md §4: what rsync would send if the sender were the
//! receiver.
//!
//! The sender knows (or believes) which version the receiver holds, the *base*. It describes
//! the *target* as changes against it: unchanged paths cost nothing; a changed file is a list
//! of runs over a chunk table made of the base's chunks, chunks named but not carried
//! (`external`, fetched later with NeedChunks) and the chunks carried as literals. Literals are
//! zstd-compressed with the base chunks they replace as a raw-content dictionary, so a one-line
//! edit inside a 64 KiB chunk costs tens of bytes. [`encode`] builds the delta, [`apply`]
//! rebuilds and verifies the target on the receiver: [`prepare`] checks and resolves it once
//! (a receiver keeps the [`Prepared`] while it fetches the chunks) and [`Prepared::finish`]
//! builds the tree.
//!
//! The receiver bounds what a delta makes it allocate before allocating it: [`ApplyLimits`]
//! for the structure (dictionaries, references, file and version sizes, literal bytes), and
//! `limits` for zstd output, which grows only as it is produced (also used by
//! [`crate::fetch`]).

mod apply;
mod encode;
pub(crate) mod limits;
mod locate;
mod plan;
mod table;

pub use apply::{
    Applied, ApplyError, ApplyLimits, ApplyOutcome, Finish, MAX_FILE_BYTES, Prepare, Prepared,
    apply, prepare,
};
pub use encode::{EncodeOptions, EncodeStats, encode};
pub(crate) use encode::{zstd_compress, zstd_decompress};
pub use plan::FetchRun;

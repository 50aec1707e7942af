//! chorus-chunking: how a share becomes bytes on the wire.
//!
//! - [`chunker`]: streaming FastCDC (v2020, normalized) with BLAKE3 chunk ids.
//! - [`manifest`]: file and tree manifests, the canonical encoding, VersionIds.
//! - [`delta`]: the sender-initiated delta (encode) and its verified application (apply).
//! - [`store`]: the content-addressed chunk store, compressed and verified on read.
//!
//! Nothing here touches the network.

pub mod chunker;
pub mod delta;
pub mod fetch;
/// The shared identifiers (defined in chorus-proto, the bottom crate).
pub use chorus_proto::ids;
pub mod manifest;
pub mod path;
mod squeeze;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testdata;

pub use chunker::ChunkerParams;
pub use ids::{ChunkId, VersionId, VersionNumber};
pub use manifest::{ChunkRef, Difference, Entry, FileManifest, Mode, TreeManifest};
pub use path::{PathError, RelPath, SHARE_MARKER, STATE_DIR};
pub use store::{ChunkStore, DiskStore, MemStore, Packed};

/// Errors of this crate. Peer input never panics: it ends in one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("invalid data: {0}")]
    Invalid(String),
    #[error(transparent)]
    Id(#[from] chorus_proto::ids::IdError),
    #[error("chunk {id} is corrupt: its bytes do not hash to its id")]
    Corrupt { id: ChunkId },
    /// A chunk a version needs is not stored (dropped as corrupt, or never fetched).
    #[error("chunk {id} is not in the store")]
    Missing { id: ChunkId },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

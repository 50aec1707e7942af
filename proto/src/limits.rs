//! The bounds every decoded frame is held to ([`Limits`]), and why a frame was refused
//! ([`DecodeError`]): what framing and validation share, with the protocol version.

/// The protocol version this build speaks; a frame of another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bounds enforced on every decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest envelope in bytes, length prefix excluded. Default 16 MiB.
    pub max_frame: usize,
    /// Largest number of items in any repeated field (entries, changes, chunk ids, runs).
    pub max_entries: usize,
    /// Longest path or symlink target in bytes.
    pub max_path_len: usize,
    /// Largest chunk in bytes (a chunk length or a literal's decompressed size is checked
    /// against it).
    pub max_chunk_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_entries: 1 << 20,
            max_path_len: 4096,
            max_chunk_len: 16 << 20,
        }
    }
}

/// Why a frame was refused. Each variant says what was wrong, so a log line can say it too.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame is truncated: {have} bytes, the header says {want}")]
    Truncated { have: usize, want: usize },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not a valid protobuf envelope: {0}")]
    Malformed(String),
    #[error("protocol version {got} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { got: u32 },
    #[error("envelope has no body")]
    EmptyBody,
    #[error("{field}: {len} items exceed the limit of {max}")]
    TooManyEntries {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field}: {len} bytes exceed the limit of {max}")]
    PathTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field}: a hash must be 32 bytes, got {len}")]
    BadHash { field: &'static str, len: usize },
    #[error("{field}: {detail}")]
    Invalid { field: &'static str, detail: String },
}

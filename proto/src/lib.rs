//! chorus-proto: the wire format of chorus.
//!
//! The messages live in `proto/chorus/v1/*.proto` and are compiled by prost with protox at build
//! time. Every frame on the wire is a 4-byte big-endian length followed by an [`Envelope`].
//! [`decode_frame`] is the one entry point for bytes that came from a peer: it enforces the
//! [`Limits`] (frame size, entry counts, path length, id sizes) and returns a typed
//! [`DecodeError`]; it never panics, whatever the input.
//!
//! It also holds the vocabulary every crate shares, defined once: [`ids`] (VersionId, ChunkId,
//! VersionNumber) and [`header`] (node ids and the accepted-version header the Raft log orders),
//! and [`shown`], how a string a peer sent appears in a log line.

mod frame;
pub mod header;
pub mod ids;
mod limits;
pub mod message;
pub mod shown;
mod validate;

pub use shown::shown;
pub use validate::{MAX_PUSHED_BEFORE, delta_paths as validate_delta_paths};

pub use frame::{
    DecodeError, FRAME_HEADER_LEN, Limits, PROTOCOL_VERSION, check_frame_len, decode_envelope,
    decode_frame, encode_frame,
};

/// The prost types generated from `chorus/v1/*.proto`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/chorus.v1.rs"));
}

pub use v1::envelope::Body;
pub use v1::*;

/// The length of every hash on the wire (BLAKE3).
pub const HASH_LEN: usize = 32;

impl ChunkId {
    /// A ChunkId from raw hash bytes.
    pub fn from_bytes(hash: [u8; HASH_LEN]) -> Self {
        ChunkId {
            hash: hash.to_vec(),
        }
    }
}

impl VersionId {
    /// A VersionId from raw hash bytes.
    pub fn from_bytes(hash: [u8; HASH_LEN]) -> Self {
        VersionId {
            hash: hash.to_vec(),
        }
    }
}

impl Envelope {
    /// Wraps a body in an envelope of the current protocol version.
    pub fn new(body: Body) -> Self {
        Envelope {
            protocol_version: PROTOCOL_VERSION,
            body: Some(body),
        }
    }
}

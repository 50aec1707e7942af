//! Framing: a 4-byte big-endian length, then a prost-encoded [`Envelope`], decoded under
//! [`Limits`] into a typed error instead of a panic or an unbounded allocation.

use prost::Message;

use crate::{Body, Envelope};

/// The protocol version this build speaks; a frame of another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bytes of the length prefix in front of every envelope.
pub const FRAME_HEADER_LEN: usize = 4;

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

/// Encodes a body as one frame: length prefix plus envelope.
pub fn encode_frame(body: Body) -> Vec<u8> {
    let env = Envelope::new(body);
    let len = env.encoded_len();
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + len);
    // An envelope over 4 GiB cannot be framed; callers keep messages far below max_frame.
    let prefix = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&prefix.to_be_bytes());
    env.encode(&mut out)
        .expect("a Vec grows to fit any encoded message");
    out
}

/// Reads the length prefix of a frame and checks it against the limit before anything is
/// allocated. Returns the envelope length that follows the header.
pub fn check_frame_len(
    header: [u8; FRAME_HEADER_LEN],
    limits: &Limits,
) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limits.max_frame {
        return Err(DecodeError::TooLarge {
            len,
            max: limits.max_frame,
        });
    }
    Ok(len)
}

/// Decodes one whole frame (length prefix plus envelope) that came from a peer.
pub fn decode_frame(frame: &[u8], limits: &Limits) -> Result<Envelope, DecodeError> {
    let Some((header, rest)) = frame.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            have: frame.len(),
            want: FRAME_HEADER_LEN,
        });
    };
    let len = check_frame_len(*header, limits)?;
    if rest.len() != len {
        return Err(if rest.len() < len {
            DecodeError::Truncated {
                have: rest.len(),
                want: len,
            }
        } else {
            DecodeError::Malformed(format!(
                "{} trailing bytes after the envelope",
                rest.len() - len
            ))
        });
    }
    decode_envelope(rest, limits)
}

/// Decodes an envelope whose length prefix was already read with [`check_frame_len`].
pub fn decode_envelope(bytes: &[u8], limits: &Limits) -> Result<Envelope, DecodeError> {
    if bytes.len() > limits.max_frame {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: limits.max_frame,
        });
    }
    let env = Envelope::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if env.protocol_version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            got: env.protocol_version,
        });
    }
    let Some(body) = &env.body else {
        return Err(DecodeError::EmptyBody);
    };
    crate::validate::body(body, limits)?;
    Ok(env)
}

impl Body {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Push(_) => "Push",
            Body::Accepted(_) => "Accepted",
            Body::Merged(_) => "Merged",
            Body::NeedBase(_) => "NeedBase",
            Body::NeedChunks(_) => "NeedChunks",
            Body::Chunks(_) => "Chunks",
            Body::NotLeader(_) => "NotLeader",
            Body::Rejected(_) => "Rejected",
            Body::Offer(_) => "Offer",
            Body::Stored(_) => "Stored",
            Body::Want(_) => "Want",
        }
    }
}

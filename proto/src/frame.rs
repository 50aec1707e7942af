//! Framing: a 4-byte big-endian length, then a prost-encoded [`Envelope`], decoded under
//! [`Limits`] into a typed error instead of a panic or an unbounded allocation.

use prost::Message;

pub use crate::limits::{DecodeError, Limits, PROTOCOL_VERSION};
use crate::{Body, Envelope};

/// Bytes of the length prefix in front of every envelope.
pub const FRAME_HEADER_LEN: usize = 4;

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

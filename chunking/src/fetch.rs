//! Answering `NeedChunks` and taking in the `Chunks` reply: chunks travel zstd-compressed in
//! frames bounded by the frame limit, and every chunk received is checked against its id
//! before it is stored.
//!
//! A message's chunks are held in memory until all are verified, so what they decompress to
//! is bounded too: each chunk by `max_chunk_len`, the message by [`MAX_MESSAGE_BYTES`], both
//! refused as output is produced, before more is allocated (a zstd bomb costs the receiver at
//! most the bound, never what the bomb declares).

use chorus_proto as proto;

use crate::Error;
use crate::delta::limits::{Inflate, decompress_bounded, ratio_cap, window_log};
use crate::ids::ChunkId;
use crate::store::ChunkStore;

/// Bytes reserved in every frame for the envelope and per-chunk framing.
const FRAME_SLACK: usize = 64 << 10;

/// Most decompressed bytes one `Chunks` message may carry: 256 MiB. A frame of compressed
/// chunks can decompress to far more (an all-zero chunk shrinks ~10,000x), so
/// [`chunks_messages`] cuts messages at this many raw bytes too, and [`receive_chunks`]
/// refuses a message that goes beyond it.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Builds `Chunks` messages carrying `ids` from `store`, each under `max_frame` bytes and
/// [`MAX_MESSAGE_BYTES`] decompressed. A chunk the store lacks is an error naming it.
pub fn chunks_messages(
    ids: &[ChunkId],
    store: &dyn ChunkStore,
    max_frame: usize,
) -> Result<Vec<proto::Chunks>, Error> {
    let budget = max_frame.saturating_sub(FRAME_SLACK).max(1);
    let mut out = vec![];
    let mut current = proto::Chunks::default();
    let mut size = 0usize;
    let mut raw = 0usize;
    for id in ids {
        let packed = store.get_packed(id)?.ok_or(Error::Missing { id: *id })?;
        let raw_len = packed.len;
        let compression = if packed.zstd {
            proto::Compression::Zstd
        } else {
            proto::Compression::None
        };
        let data = packed.data;
        let full = size + data.len() > budget || raw + raw_len > MAX_MESSAGE_BYTES;
        if full && !current.chunks.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
            raw = 0;
        }
        size += data.len() + 40;
        raw += raw_len;
        current.chunks.push(proto::ChunkData {
            id: Some(id.to_proto()),
            compression: compression as i32,
            data,
        });
    }
    if !current.chunks.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Verifies and stores the chunks of a `Chunks` message; returns how many were stored. If any
/// chunk fails its check, none of the message is stored. A chunk longer than `max_chunk_len`,
/// or a message of more than [`MAX_MESSAGE_BYTES`] decompressed, is refused as
/// [`Error::Invalid`].
///
/// The chunks are readable from the store at once but not made durable: the caller syncs the
/// store before anything durable refers to them (`delta::apply` syncs before it returns a
/// version; the engine syncs once per transfer, not once per message: a 1 GiB file is 512
/// messages of 2 MiB).
pub fn receive_chunks(
    msg: &proto::Chunks,
    store: &dyn ChunkStore,
    max_chunk_len: usize,
) -> Result<usize, Error> {
    receive_chunks_within(msg, store, max_chunk_len, MAX_MESSAGE_BYTES)
}

/// [`receive_chunks`] with another bound than [`MAX_MESSAGE_BYTES`] on the decompressed bytes
/// of the message.
pub fn receive_chunks_within(
    msg: &proto::Chunks,
    store: &dyn ChunkStore,
    max_chunk_len: usize,
    max_message_bytes: usize,
) -> Result<usize, Error> {
    let mut verified = Vec::with_capacity(msg.chunks.len());
    let mut total = 0usize;
    for c in msg.chunks.iter() {
        let id = ChunkId::from_proto(
            c.id.as_ref()
                .ok_or_else(|| Error::Invalid("a chunk without an id".into()))?,
        )?;
        // What this chunk may still decompress to; zstd can give no more than ratio_cap.
        let left = max_message_bytes - total;
        let cap = max_chunk_len.min(left);
        let too_large = || {
            if cap < max_chunk_len {
                Error::Invalid(format!(
                    "the chunks of one message decompress to more than {max_message_bytes} \
                     bytes (at chunk {id})"
                ))
            } else {
                Error::Invalid(format!(
                    "chunk {id} is longer than the {max_chunk_len}-byte limit"
                ))
            }
        };
        let mut frame = None;
        let bytes = match proto::Compression::try_from(c.compression) {
            Ok(proto::Compression::None) if c.data.len() > cap => return Err(too_large()),
            Ok(proto::Compression::None) => c.data.clone(),
            Ok(proto::Compression::Zstd) if cap == 0 => return Err(too_large()),
            Ok(proto::Compression::Zstd) => {
                // The window follows what the chunk may be (not what is left of the message,
                // so that running out of room reads as such, not as a bad window).
                let window = window_log(max_chunk_len.min(ratio_cap(c.data.len())));
                let cap = cap.min(ratio_cap(c.data.len()));
                match decompress_bounded(&c.data, &[], cap, window) {
                    Ok(b) => {
                        frame = Some(c.data.as_slice());
                        b
                    }
                    Err(Inflate::TooLarge { .. }) => return Err(too_large()),
                    Err(e) => {
                        return Err(Error::Invalid(format!(
                            "chunk {id} does not decompress: {e}"
                        )));
                    }
                }
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "chunk {id}: unsupported compression"
                )));
            }
        };
        if ChunkId::of(&bytes) != id {
            return Err(Error::Corrupt { id });
        }
        total += bytes.len();
        verified.push((id, bytes, frame));
    }
    for (id, bytes, frame) in &verified {
        match frame {
            Some(frame) => store.put_framed(id, bytes, frame)?,
            None => store.put(id, bytes)?,
        }
    }
    Ok(verified.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// Between two disk stores a chunk crosses as the frame the sender keeps, and the
    /// receiver keeps that frame: no compression on either side.
    #[test]
    fn chunks_cross_between_disk_stores_in_the_frames_they_keep() {
        use crate::store::DiskStore;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = DiskStore::open(a.path()).unwrap();
        let to = DiskStore::open(b.path()).unwrap();
        let ids: Vec<ChunkId> = (0..20u32)
            .map(|i| {
                let b: Vec<u8> = (0..2_000u32)
                    .flat_map(|j| format!("{i} {j}\n").into_bytes())
                    .collect();
                let id = ChunkId::of(&b);
                from.put(&id, &b).unwrap();
                id
            })
            .collect();
        let msgs = chunks_messages(&ids, &from, 1 << 20).unwrap();
        let sent: Vec<&proto::ChunkData> = msgs.iter().flat_map(|m| &m.chunks).collect();
        for (id, c) in ids.iter().zip(&sent) {
            assert_eq!(c.data, from.get_packed(id).unwrap().unwrap().data);
        }
        for m in &msgs {
            receive_chunks(m, &to, 1 << 24).unwrap();
        }
        for id in &ids {
            assert_eq!(to.get_packed(id).unwrap(), from.get_packed(id).unwrap());
            assert_eq!(to.get(id).unwrap(), from.get(id).unwrap());
        }
    }

    #[test]
    fn chunks_travel_in_bounded_frames_and_are_verified() {
        let from = MemStore::new();
        let ids: Vec<ChunkId> = (0..50u32)
            .map(|i| {
                // Incompressible, so 50 chunks of 100 KB need several 1 MiB frames.
                let b = crate::testdata::pseudo_random(100_000, u64::from(i));
                let id = ChunkId::of(&b);
                from.put(&id, &b).unwrap();
                id
            })
            .collect();
        let msgs = chunks_messages(&ids, &from, 1 << 20).unwrap();
        assert!(msgs.len() > 1);
        let to = MemStore::new();
        let n: usize = msgs
            .iter()
            .map(|m| receive_chunks(m, &to, 1 << 24).unwrap())
            .sum();
        assert_eq!(n, 50);
        for id in &ids {
            assert_eq!(to.get(id).unwrap(), from.get(id).unwrap());
        }

        let mut bad = msgs[0].clone();
        bad.chunks[1].id = Some(ChunkId::of(b"other").to_proto());
        let empty = MemStore::new();
        assert!(matches!(
            receive_chunks(&bad, &empty, 1 << 24),
            Err(Error::Corrupt { .. })
        ));
        assert!(empty.is_empty(), "nothing of a bad message is stored");
    }
}

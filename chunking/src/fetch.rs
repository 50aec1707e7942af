//! Answering `NeedChunks` and taking in the `Chunks` reply: chunks travel zstd-compressed in
//! frames bounded by the frame limit, and every chunk received is checked against its id
//! before it is stored.

use chorus_proto as proto;

use crate::Error;
use crate::ids::ChunkId;
use crate::store::ChunkStore;

/// Bytes reserved in every frame for the envelope and per-chunk framing.
const FRAME_SLACK: usize = 64 << 10;

/// Builds `Chunks` messages carrying `ids` from `store`, each under `max_frame` bytes. A chunk
/// the store lacks is an error naming it.
pub fn chunks_messages(
    ids: &[ChunkId],
    store: &dyn ChunkStore,
    max_frame: usize,
) -> Result<Vec<proto::Chunks>, Error> {
    let budget = max_frame.saturating_sub(FRAME_SLACK).max(1);
    let mut out = vec![];
    let mut current = proto::Chunks::default();
    let mut size = 0usize;
    for id in ids {
        let bytes = store.require(id)?;
        let compressed = zstd::bulk::compress(&bytes, 3).map_err(Error::io("<zstd>"))?;
        let (compression, data) = if compressed.len() < bytes.len() {
            (proto::Compression::Zstd, compressed)
        } else {
            (proto::Compression::None, bytes)
        };
        if size + data.len() > budget && !current.chunks.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += data.len() + 40;
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
/// chunk fails its check, none of the message is stored.
pub fn receive_chunks(
    msg: &proto::Chunks,
    store: &dyn ChunkStore,
    max_chunk_len: usize,
) -> Result<usize, Error> {
    let mut verified = Vec::with_capacity(msg.chunks.len());
    for c in &msg.chunks {
        let id = ChunkId::from_proto(
            c.id.as_ref()
                .ok_or_else(|| Error::Invalid("a chunk without an id".into()))?,
        )?;
        let bytes = match proto::Compression::try_from(c.compression) {
            Ok(proto::Compression::None) => c.data.clone(),
            Ok(proto::Compression::Zstd) => zstd::bulk::decompress(&c.data, max_chunk_len)
                .map_err(|e| Error::Invalid(format!("chunk {id} does not decompress: {e}")))?,
            _ => {
                return Err(Error::Invalid(format!(
                    "chunk {id}: unsupported compression"
                )));
            }
        };
        if ChunkId::of(&bytes) != id {
            return Err(Error::Corrupt { id });
        }
        verified.push((id, bytes));
    }
    for (id, bytes) in &verified {
        store.put(id, bytes)?;
    }
    store.sync()?;
    Ok(verified.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

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

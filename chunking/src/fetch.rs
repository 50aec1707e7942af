//! Answering `NeedChunks` and taking in the `Chunks` reply: chunks travel zstd-compressed in
//! frames bounded by the frame limit, each alone or, for a run the receiver named with the
//! chunks it replaces, together in one frame primed with those chunks (as a literal is) when
//! that is smaller than the run's chunks alone; every chunk received is checked against its
//! id before it is stored.
//!
//! A message's chunks are held in memory until all are verified, so what they decompress to
//! is bounded too: each chunk by `max_chunk_len`, the message by [`MAX_MESSAGE_BYTES`], both
//! refused as output is produced, before more is allocated (a zstd bomb costs the receiver at
//! most the bound, never what the bomb declares). A group's dictionary is read from the
//! receiver's own store, at most [`MAX_RUN_DICTIONARY`] bytes in [`MAX_DICTIONARY_CHUNKS`].

use std::borrow::Cow;

use chorus_proto as proto;

use crate::Error;
use crate::delta::limits::{Inflate, decompress_bounded, ratio_cap, window_log};
use crate::delta::{FetchRun, zstd_compress, zstd_decompress};
use crate::ids::ChunkId;
use crate::store::{ChunkStore, Packed};

/// Bytes reserved in every frame for the envelope and per-chunk framing.
const FRAME_SLACK: usize = 64 << 10;

/// Most decompressed bytes one `Chunks` message may carry: 256 MiB. A frame of compressed
/// chunks can decompress to far more (an all-zero chunk shrinks ~10,000x), so
/// [`chunks_messages`] cuts messages at this many raw bytes too, and [`receive_chunks`]
/// refuses a message that goes beyond it.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub use crate::delta::limits::{MAX_DICTIONARY_CHUNKS, MAX_RUN_DICTIONARY};
/// Dictionary bytes one answer reads at most, all its runs together (runs past it are sent
/// chunk by chunk), and one message may make its receiver read (more is refused): a
/// NeedChunks, or a Chunks message, costs its reader at most this much besides its chunks.
pub const MAX_ANSWER_DICTIONARY: usize = 32 << 20;
/// Raw bytes of one group at most, so that its frame fits a message even uncompressed.
const GROUP_RAW: usize = 1 << 20;

/// Builds `Chunks` messages carrying `ids` from `store`, each under `max_frame` bytes and
/// [`MAX_MESSAGE_BYTES`] decompressed. A chunk the store lacks is an error naming it.
pub fn chunks_messages(
    ids: &[ChunkId],
    store: &dyn ChunkStore,
    max_frame: usize,
) -> Result<Vec<proto::Chunks>, Error> {
    let mut w = ChunksWriter::new(store, max_frame);
    for id in ids {
        w.chunk(id)?;
    }
    Ok(w.finish())
}

/// The messages answering a whole fetch plan from `store` at once, each run compressed
/// against its dictionary (the daemon answers a window at a time; a tool or a test asks for
/// everything).
pub fn runs_messages(
    runs: &[FetchRun],
    store: &dyn ChunkStore,
    max_frame: usize,
) -> Result<Vec<proto::Chunks>, Error> {
    // One writer per answer's worth of dictionaries, so that no message names more than a
    // receiver reads for one.
    let mut out = Vec::new();
    let mut w = ChunksWriter::new(store, max_frame);
    for r in runs {
        if w.dictionary_left < MAX_RUN_DICTIONARY {
            out.extend(std::mem::replace(&mut w, ChunksWriter::new(store, max_frame)).finish());
        }
        w.run(&r.ids, &r.dictionary)?;
    }
    out.extend(w.finish());
    Ok(out)
}

/// The `Chunks` messages of an answer, built a chunk or a run at a time: each message under
/// the frame given and [`MAX_MESSAGE_BYTES`] decompressed.
pub struct ChunksWriter<'s> {
    store: &'s dyn ChunkStore,
    budget: usize,
    out: Vec<proto::Chunks>,
    current: proto::Chunks,
    size: usize,
    raw: usize,
    dictionary_left: usize,
    sent: usize,
}

impl<'s> ChunksWriter<'s> {
    pub fn new(store: &'s dyn ChunkStore, max_frame: usize) -> Self {
        ChunksWriter {
            store,
            budget: max_frame.saturating_sub(FRAME_SLACK).max(1),
            out: Vec::new(),
            current: proto::Chunks::default(),
            size: 0,
            raw: 0,
            dictionary_left: MAX_ANSWER_DICTIONARY,
            sent: 0,
        }
    }

    /// Makes room in the current message for `size` more bytes of `raw` decompressed.
    fn room(&mut self, size: usize, raw: usize) {
        let full = self.size + size > self.budget || self.raw + raw > MAX_MESSAGE_BYTES;
        let empty = self.current.chunks.is_empty() && self.current.groups.is_empty();
        if full && !empty {
            self.out.push(std::mem::take(&mut self.current));
            self.size = 0;
            self.raw = 0;
        }
        self.size += size;
        self.raw += raw;
        self.sent += size;
    }

    /// Adds chunk `id` on its own, as the store keeps it. A chunk the store lacks is an error
    /// naming it.
    pub fn chunk(&mut self, id: &ChunkId) -> Result<(), Error> {
        let packed = self
            .store
            .get_packed(id)?
            .ok_or(Error::Missing { id: *id })?;
        self.packed(id, packed);
        Ok(())
    }

    /// Adds chunk `id` as `packed`, the frame its store keeps.
    fn packed(&mut self, id: &ChunkId, packed: Packed) {
        let compression = if packed.zstd {
            proto::Compression::Zstd
        } else {
            proto::Compression::None
        };
        self.room(packed.data.len() + 40, packed.len);
        self.current.chunks.push(proto::ChunkData {
            id: Some(id.to_proto()),
            compression: compression as i32,
            data: packed.data,
        });
    }

    /// Adds the run `ids`, compressed together against `dictionary` (chunks the receiver
    /// holds) when this store holds those too and the answer's dictionary allowance lasts;
    /// chunk by chunk otherwise, and where that is no larger.
    pub fn run(&mut self, ids: &[ChunkId], dictionary: &[ChunkId]) -> Result<(), Error> {
        let Some(prefix) = self.dictionary(dictionary)? else {
            return ids.iter().try_for_each(|id| self.chunk(id));
        };
        let mut group = Group::default();
        let mut first = 0;
        for (i, id) in ids.iter().enumerate() {
            let (packed, bytes) = self
                .store
                .get_packed_and_bytes(id)?
                .ok_or(Error::Missing { id: *id })?;
            if !group.lens.is_empty() && group.raw.len() + bytes.len() > GROUP_RAW {
                self.group(&ids[first..i], &mut group, dictionary, &prefix)?;
                first = i;
            }
            group.lens.push(bytes.len() as u32);
            group.raw.extend_from_slice(&bytes);
            group.packed.push(packed);
        }
        if !group.lens.is_empty() {
            self.group(&ids[first..], &mut group, dictionary, &prefix)?;
        }
        Ok(())
    }

    /// The dictionary's bytes, or `None` when it is empty, not all here (or damaged here), too
    /// large or past the answer's allowance. Every byte read counts against the allowance,
    /// used or not.
    fn dictionary(&mut self, ids: &[ChunkId]) -> Result<Option<Vec<u8>>, Error> {
        if ids.is_empty() || ids.len() > MAX_DICTIONARY_CHUNKS || self.dictionary_left == 0 {
            return Ok(None);
        }
        let mut prefix = Vec::new();
        for id in ids {
            let bytes = match self.store.get(id) {
                Ok(Some(b)) => b,
                Ok(None) | Err(Error::Corrupt { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            self.dictionary_left = self.dictionary_left.saturating_sub(bytes.len());
            if prefix.len() + bytes.len() > MAX_RUN_DICTIONARY || self.dictionary_left == 0 {
                return Ok(None);
            }
            prefix.extend_from_slice(&bytes);
        }
        Ok(Some(prefix))
    }

    /// One group of `ids` (taken from `group`, which is left empty), or each chunk alone as
    /// the store keeps it when that is no larger: a run primed with its namesake's chunks
    /// (new files, whose names the base has elsewhere) often compresses no better than its
    /// chunks did alone, and a receiver keeps frames sent alone as they are, where a group
    /// costs it its dictionary's reads and each chunk's compression again.
    fn group(
        &mut self,
        ids: &[ChunkId],
        group: &mut Group,
        dictionary: &[ChunkId],
        prefix: &[u8],
    ) -> Result<(), Error> {
        let Group { raw, lens, packed } = std::mem::take(group);
        // Level 3 whatever the size: runs are fetched when a change is past the delta's
        // literal budget, so speed counts. (A small run at the literals' 19 saved 4% of an
        // OpenSSL release's fetched bytes, 3.5 KB, for 40% more of the answer's time.)
        let data = zstd_compress(&raw, prefix, 3).map_err(Error::io("<zstd>"))?;
        // Each id and length, and each dictionary id, framed.
        let size = data.len() + 40 * ids.len() + 36 * dictionary.len();
        let alone: usize = packed.iter().map(|p| p.data.len() + 40).sum();
        // (A group no smaller than its raw bytes is never smaller than the frames either.)
        if alone <= size {
            for (id, p) in ids.iter().zip(packed) {
                self.packed(id, p);
            }
            return Ok(());
        }
        self.room(size, raw.len());
        self.current.groups.push(proto::ChunkGroup {
            ids: ids.iter().map(|id| id.to_proto()).collect(),
            lens,
            dictionary: dictionary.iter().map(|id| id.to_proto()).collect(),
            data,
        });
        Ok(())
    }

    /// Bytes of chunk data added so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// The messages filled so far (the current one stays open).
    pub fn take_full(&mut self) -> Vec<proto::Chunks> {
        std::mem::take(&mut self.out)
    }

    /// Every message, the last one included.
    pub fn finish(mut self) -> Vec<proto::Chunks> {
        if !self.current.chunks.is_empty() || !self.current.groups.is_empty() {
            self.out.push(self.current);
        }
        self.out
    }
}

/// A run's chunks gathered for one group: their bytes end to end, their lengths, and each as
/// its store keeps it (sent instead when that is no larger).
#[derive(Default)]
struct Group {
    raw: Vec<u8>,
    lens: Vec<u32>,
    packed: Vec<Packed>,
}

/// Verifies and stores the chunks of a `Chunks` message; returns those stored. If any chunk
/// fails its check, none of the message is stored. A group whose dictionary names a chunk
/// this store lacks (or holds damaged) cannot be read and is left out: its chunks come when
/// the delta is sent again. A chunk longer than `max_chunk_len`,
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
) -> Result<Vec<ChunkId>, Error> {
    receive_chunks_within(msg, store, max_chunk_len, MAX_MESSAGE_BYTES)
}

/// [`receive_chunks`] with another bound than [`MAX_MESSAGE_BYTES`] on the decompressed bytes
/// of the message.
pub fn receive_chunks_within(
    msg: &proto::Chunks,
    store: &dyn ChunkStore,
    max_chunk_len: usize,
    max_message_bytes: usize,
) -> Result<Vec<ChunkId>, Error> {
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
        let (bytes, arrived) = match proto::Compression::try_from(c.compression) {
            Ok(proto::Compression::None) if c.data.len() > cap => return Err(too_large()),
            // Checked where it lies: a chunk that came uncompressed is not copied.
            Ok(proto::Compression::None) => (Cow::Borrowed(c.data.as_slice()), Arrived::Raw),
            Ok(proto::Compression::Zstd) if cap == 0 => return Err(too_large()),
            Ok(proto::Compression::Zstd) => {
                // The window follows what the chunk may be (not what is left of the message,
                // so that running out of room reads as such, not as a bad window).
                let window = window_log(max_chunk_len.min(ratio_cap(c.data.len())));
                let cap = cap.min(ratio_cap(c.data.len()));
                match decompress_bounded(&c.data, &[], cap, window) {
                    Ok(b) => (Cow::Owned(b), Arrived::Frame(c.data.as_slice())),
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
        verified.push((id, bytes, arrived));
    }
    let mut dictionaries = Dictionaries::default();
    for g in &msg.groups {
        total += receive_group(
            g,
            store,
            max_chunk_len,
            max_message_bytes - total,
            &mut dictionaries,
            &mut verified,
        )?;
    }
    for (id, bytes, arrived) in &verified {
        match arrived {
            Arrived::Frame(frame) => store.put_framed(id, bytes, frame)?,
            Arrived::Raw => store.put_raw(id, bytes)?,
            Arrived::Inflated => store.put(id, bytes)?,
        }
    }
    Ok(verified.into_iter().map(|(id, _, _)| id).collect())
}

/// A chunk checked against its id: its bytes (borrowed from the message when they came
/// uncompressed), and how they came.
type Verified<'m> = (ChunkId, Cow<'m, [u8]>, Arrived<'m>);

/// How a chunk came in a message, which tells the store how to keep it.
#[derive(Clone, Copy)]
enum Arrived<'m> {
    /// On its own, as this zstd frame: the store can keep the frame as it is.
    Frame(&'m [u8]),
    /// On its own, uncompressed: the sender's store could not make it smaller.
    Raw,
    /// Out of a group compressed against a dictionary: the store compresses it afresh.
    Inflated,
}

/// The dictionaries one message's groups made the receiver read: the bytes read so far
/// (bounded by [`MAX_ANSWER_DICTIONARY`]), and the last dictionary, which the next group
/// often names again (a run cut into groups).
#[derive(Default)]
struct Dictionaries {
    read: usize,
    last: Option<(Vec<proto::ChunkId>, Vec<u8>)>,
}

/// Checks one group against the bounds (`room` decompressed bytes left in the message), reads
/// its dictionary from `store`, decompresses it and verifies each chunk into `verified`.
/// Returns its bytes: 0 when its dictionary is not all here (the group is left out).
fn receive_group<'m>(
    g: &'m proto::ChunkGroup,
    store: &dyn ChunkStore,
    max_chunk_len: usize,
    room: usize,
    dictionaries: &mut Dictionaries,
    verified: &mut Vec<Verified<'m>>,
) -> Result<usize, Error> {
    let ids = g
        .ids
        .iter()
        .map(ChunkId::from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() || ids.len() != g.lens.len() {
        return Err(Error::Invalid(format!(
            "a group of {} chunks with {} lengths",
            ids.len(),
            g.lens.len()
        )));
    }
    let mut want = 0usize;
    for (id, &len) in ids.iter().zip(&g.lens) {
        if len == 0 || len as usize > max_chunk_len {
            return Err(Error::Invalid(format!(
                "chunk {id} is {len} bytes, outside 1..={max_chunk_len}"
            )));
        }
        want += len as usize;
    }
    if want > room {
        return Err(Error::Invalid(format!(
            "the chunks of one message decompress to more than the message may (a group of \
             {want} bytes with {room} left)"
        )));
    }
    if g.dictionary.len() > MAX_DICTIONARY_CHUNKS {
        return Err(Error::Invalid(format!(
            "a group's dictionary of {} chunks (at most {MAX_DICTIONARY_CHUNKS})",
            g.dictionary.len()
        )));
    }
    let same = dictionaries
        .last
        .as_ref()
        .is_some_and(|(ids, _)| *ids == g.dictionary);
    if !same {
        dictionaries.last = None;
        let mut prefix = Vec::new();
        for d in &g.dictionary {
            let d = ChunkId::from_proto(d)?;
            let bytes = match store.get(&d) {
                Ok(Some(b)) => b,
                Ok(None) | Err(Error::Corrupt { .. }) => {
                    tracing::debug!(chunk = %d, "a group's dictionary chunk is not here; left out");
                    return Ok(0);
                }
                Err(e) => return Err(e),
            };
            dictionaries.read += bytes.len();
            if prefix.len() + bytes.len() > MAX_RUN_DICTIONARY {
                return Err(Error::Invalid(format!(
                    "a group's dictionary exceeds {MAX_RUN_DICTIONARY} bytes"
                )));
            }
            if dictionaries.read > MAX_ANSWER_DICTIONARY {
                return Err(Error::Invalid(format!(
                    "the groups of one message name more than {MAX_ANSWER_DICTIONARY} bytes of \
                     dictionaries"
                )));
            }
            prefix.extend_from_slice(&bytes);
        }
        dictionaries.last = Some((g.dictionary.clone(), prefix));
    }
    let prefix = dictionaries.last.as_ref().map_or(&[][..], |(_, p)| &p[..]);
    let raw = zstd_decompress(&g.data, prefix, want)
        .map_err(|e| Error::Invalid(format!("a group does not decompress: {e}")))?;
    if raw.len() != want {
        return Err(Error::Invalid(format!(
            "a group holds {} bytes, its chunks add up to {want}",
            raw.len()
        )));
    }
    let mut at = 0;
    for (id, &len) in ids.into_iter().zip(&g.lens) {
        let bytes = raw[at..at + len as usize].to_vec();
        at += len as usize;
        if ChunkId::of(&bytes) != id {
            return Err(Error::Corrupt { id });
        }
        verified.push((id, Cow::Owned(bytes), Arrived::Inflated));
    }
    Ok(want)
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

    /// A chunk that comes uncompressed (its sender's store could not make it smaller) is kept
    /// as it came: the receiver does not spend a compression on it again, and sends it on as
    /// it was sent.
    #[test]
    fn a_chunk_that_comes_uncompressed_is_kept_as_it_came() {
        use crate::store::DiskStore;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = DiskStore::open(a.path()).unwrap();
        let to = DiskStore::open(b.path()).unwrap();
        let noise = crate::testdata::pseudo_random(70_000, 3);
        let noise_id = ChunkId::of(&noise);
        from.put(&noise_id, &noise).unwrap();
        // Compressible, but sent as it is: kept so (what the sender sent, no more).
        let text: Vec<u8> = (0..5_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let text_id = ChunkId::of(&text);
        let mut msgs = chunks_messages(&[noise_id], &from, 1 << 20).unwrap();
        assert_eq!(
            msgs[0].chunks[0].compression,
            proto::Compression::None as i32
        );
        msgs[0].chunks.push(proto::ChunkData {
            id: Some(text_id.to_proto()),
            compression: proto::Compression::None as i32,
            data: text.clone(),
        });
        assert_eq!(
            receive_chunks(&msgs[0], &to, 1 << 24).unwrap(),
            vec![noise_id, text_id]
        );
        for (id, bytes) in [(noise_id, &noise), (text_id, &text)] {
            let packed = to.get_packed(&id).unwrap().unwrap();
            assert_eq!(
                (packed.zstd, &packed.data, packed.len),
                (false, bytes, bytes.len())
            );
            assert_eq!(to.get(&id).unwrap().as_ref(), Some(bytes));
        }
        // Damaged on the way: refused, nothing kept.
        let mut bad = msgs[0].clone();
        bad.chunks[1].data[0] ^= 1;
        let other = tempfile::tempdir().unwrap();
        let other = DiskStore::open(other.path()).unwrap();
        assert!(matches!(
            receive_chunks(&bad, &other, 1 << 24),
            Err(Error::Corrupt { .. })
        ));
        assert!(other.ids().unwrap().is_empty());
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
            .map(|m| receive_chunks(m, &to, 1 << 24).unwrap().len())
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

    fn put(store: &MemStore, bytes: &[u8]) -> ChunkId {
        let id = ChunkId::of(bytes);
        store.put(&id, bytes).unwrap();
        id
    }

    /// A run compressed against the chunk it replaces costs a few bytes for a small edit, and
    /// the receiver rebuilds each chunk exactly; an answerer that lacks the dictionary sends
    /// the chunks one by one instead.
    #[test]
    fn a_run_travels_compressed_against_what_it_replaces() {
        let old: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("line {} of the old file\n", i * 7919 % 10007).into_bytes())
            .collect();
        let mut new = old.clone();
        new.splice(50_000..50_000, b"one inserted line\n".iter().copied());
        let (a, b) = (new[..40_000].to_vec(), new[40_000..].to_vec());
        let (sender, receiver) = (MemStore::new(), MemStore::new());
        let dict = put(&sender, &old);
        put(&receiver, &old);
        let ids = [put(&sender, &a), put(&sender, &b)];
        let runs = [FetchRun {
            ids: ids.to_vec(),
            dictionary: vec![dict],
        }];
        let msgs = runs_messages(&runs, &sender, 16 << 20).unwrap();
        let wire: usize = msgs
            .iter()
            .flat_map(|m| &m.groups)
            .map(|g| g.data.len())
            .sum();
        assert!(msgs.iter().all(|m| m.chunks.is_empty()));
        assert!(wire < 200, "{wire} bytes for a one-line edit");
        let got: Vec<ChunkId> = msgs
            .iter()
            .flat_map(|m| receive_chunks(m, &receiver, 1 << 24).unwrap())
            .collect();
        assert_eq!(got, ids);
        assert_eq!(receiver.get(&ids[0]).unwrap().unwrap(), a);
        assert_eq!(receiver.get(&ids[1]).unwrap().unwrap(), b);

        // Without the dictionary the answer is the chunks alone.
        let bare = MemStore::new();
        put(&bare, &a);
        put(&bare, &b);
        let msgs = runs_messages(&runs, &bare, 16 << 20).unwrap();
        assert!(msgs.iter().all(|m| m.groups.is_empty()));
        assert_eq!(msgs.iter().map(|m| m.chunks.len()).sum::<usize>(), 2);
    }

    /// What a hostile answer's group may make the receiver do is bounded before it is done:
    /// lengths against the chunk and message bounds, the dictionary's size in chunks and
    /// bytes; one whose dictionary is not here is left out; a lie stores nothing.
    #[test]
    fn a_groups_bounds_are_checked_before_work_and_a_lie_stores_nothing() {
        let store = MemStore::new();
        let held = put(&store, &vec![7u8; 3 << 20]);
        let held2 = put(&store, &vec![8u8; 2 << 20]);
        let bytes = b"the chunk the group carries".to_vec();
        let id = ChunkId::of(&bytes);
        let group = |lens: Vec<u32>, dictionary: Vec<ChunkId>, data: Vec<u8>| proto::Chunks {
            chunks: Vec::new(),
            groups: vec![proto::ChunkGroup {
                ids: lens.iter().map(|_| id.to_proto()).collect(),
                lens,
                dictionary: dictionary.iter().map(|d| d.to_proto()).collect(),
                data,
            }],
        };
        let data = zstd_compress(&bytes, &[], 3).unwrap();
        let invalid = |m: proto::Chunks, room: usize| {
            let before = store.len();
            let got = receive_chunks_within(&m, &store, 1 << 20, room);
            assert!(matches!(got, Err(Error::Invalid(_))), "{got:?}");
            assert_eq!(store.len(), before);
        };
        // A chunk longer than the bound, a group larger than the message's room.
        invalid(group(vec![(1 << 20) + 1], vec![], data.clone()), 1 << 30);
        invalid(group(vec![bytes.len() as u32], vec![], data.clone()), 10);
        // Too many dictionary chunks, too many dictionary bytes.
        invalid(
            group(
                vec![bytes.len() as u32],
                vec![held; MAX_DICTIONARY_CHUNKS + 1],
                data.clone(),
            ),
            1 << 30,
        );
        invalid(
            group(vec![bytes.len() as u32], vec![held, held2], data.clone()),
            1 << 30,
        );
        // Not the bytes its lengths say.
        invalid(
            group(vec![bytes.len() as u32 + 1], vec![held], data.clone()),
            1 << 30,
        );
        // A dictionary not here: left out, not refused.
        let unknown = ChunkId::of(b"nowhere");
        let m = group(vec![bytes.len() as u32], vec![unknown], data.clone());
        assert!(receive_chunks(&m, &store, 1 << 20).unwrap().is_empty());
        assert!(!store.contains(&id).unwrap());
        // A lie: nothing of the message is stored, the plain chunk beside it neither.
        let mut lie = group(vec![bytes.len() as u32], vec![held], data.clone());
        lie.groups[0].ids[0] = ChunkId::of(b"another").to_proto();
        let plain = b"plain".to_vec();
        lie.chunks.push(proto::ChunkData {
            id: Some(ChunkId::of(&plain).to_proto()),
            compression: proto::Compression::None as i32,
            data: plain.clone(),
        });
        assert!(matches!(
            receive_chunks(&lie, &store, 1 << 20),
            Err(Error::Corrupt { .. })
        ));
        assert!(!store.contains(&ChunkId::of(&plain)).unwrap());
        // The honest group goes through.
        let m = group(vec![bytes.len() as u32], vec![held], data);
        assert_eq!(receive_chunks(&m, &store, 1 << 20).unwrap(), vec![id]);
    }

    /// A run that a group would not make smaller (new files primed with an unrelated
    /// namesake) crosses as its chunks' own frames, which the receiver keeps as they are; one
    /// that its dictionary shrinks crosses as a group.
    #[test]
    fn a_run_goes_as_a_group_only_when_that_is_smaller() {
        let store = MemStore::new();
        let text = |seed: u64| -> Vec<u8> {
            let mut x = seed;
            (0..300)
                .flat_map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    format!("{:02x}", (x >> 56) as u8).into_bytes()
                })
                .collect()
        };
        let namesake = put(&store, &text(1));
        let new: Vec<ChunkId> = (2..6).map(|s| put(&store, &text(s))).collect();
        let mut edited = text(1);
        edited[10..14].copy_from_slice(b"edit");
        let edit = put(&store, &edited);
        let mut w = ChunksWriter::new(&store, 16 << 20);
        // Each new file is a run of its own (a join's files, one chunk each).
        for id in &new {
            w.run(std::slice::from_ref(id), &[namesake]).unwrap();
        }
        w.run(&[edit], &[namesake]).unwrap();
        let msgs = w.finish();
        assert_eq!(msgs.len(), 1);
        let alone: Vec<ChunkId> = msgs[0]
            .chunks
            .iter()
            .map(|c| ChunkId::from_proto(c.id.as_ref().unwrap()).unwrap())
            .collect();
        assert_eq!(alone, new);
        assert!(
            msgs[0]
                .chunks
                .iter()
                .all(|c| c.compression == proto::Compression::Zstd as i32)
        );
        assert_eq!(msgs[0].groups.len(), 1);
        assert_eq!(
            ChunkId::from_proto(&msgs[0].groups[0].ids[0]).unwrap(),
            edit
        );
        // The receiver, holding the namesake, takes in all of them.
        let there = MemStore::new();
        put(&there, &text(1));
        let mut got = receive_chunks(&msgs[0], &there, 1 << 20).unwrap();
        got.sort();
        let mut want = new.clone();
        want.push(edit);
        want.sort();
        assert_eq!(got, want);
    }

    /// An answer reads at most its allowance of dictionaries, whatever the runs ask: past it,
    /// runs go chunk by chunk.
    #[test]
    fn an_answer_reads_no_more_dictionaries_than_its_allowance() {
        let store = MemStore::new();
        // Random bytes: each chunk, a piece of the dictionary, is smaller only in a group.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let dict = put(&store, &noise);
        let ids: Vec<ChunkId> = (0..20usize)
            .map(|i| put(&store, &noise[i * 4096..i * 4096 + 2000]))
            .collect();
        let mut w = ChunksWriter::new(&store, 16 << 20);
        for id in &ids {
            w.run(std::slice::from_ref(id), &[dict]).unwrap();
        }
        let msgs = w.finish();
        let groups: usize = msgs.iter().map(|m| m.groups.len()).sum();
        let alone: usize = msgs.iter().map(|m| m.chunks.len()).sum();
        // 3 MiB each: ten fit in 32 MiB, the eleventh read uses up the rest.
        assert_eq!((groups, alone), (10, 10));
    }

    /// One message's groups may make the receiver read at most the answer's allowance of
    /// dictionaries; a dictionary named again by the next group is read once.
    #[test]
    fn a_message_names_no_more_dictionaries_than_an_answer_may() {
        let store = MemStore::new();
        let bytes = b"the chunk".to_vec();
        let id = ChunkId::of(&bytes);
        let data = zstd_compress(&bytes, &[], 3).unwrap();
        let group = |d: ChunkId| proto::ChunkGroup {
            ids: vec![id.to_proto()],
            lens: vec![bytes.len() as u32],
            dictionary: vec![d.to_proto()],
            data: data.clone(),
        };
        let dicts: Vec<ChunkId> = (0..9u8).map(|i| put(&store, &vec![i; 4 << 20])).collect();
        let same = proto::Chunks {
            chunks: Vec::new(),
            groups: (0..100).map(|_| group(dicts[0])).collect(),
        };
        assert_eq!(receive_chunks(&same, &store, 1 << 20).unwrap().len(), 100);
        let many = proto::Chunks {
            chunks: Vec::new(),
            groups: dicts.iter().map(|&d| group(d)).collect(),
        };
        let before = store.len();
        match receive_chunks(&many, &store, 1 << 20) {
            Err(Error::Invalid(m)) => assert!(m.contains("dictionaries"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.len(), before);
    }
}

//! File and tree manifests, their canonical encoding and the VersionId derived from it.
//!
//! A [`TreeManifest`] is a version of a share: every path with its kind, permission bits
//! ([`Mode`]) and content.
//! It can only be built through [`TreeManifest::from_entries`] or [`TreeManifest::from_proto`],
//! which check that no path lies below a file or symlink, so a manifest in hand is always one
//! that can be materialized. Its canonical encoding is fixed here, independent of prost, so equal
//! trees give equal [`VersionId`]s on every machine and every build.

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_proto as proto;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ids::{ChunkId, VersionId};
use crate::path::{MAX_PATH_LEN, RelPath};

/// One chunk of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

impl ChunkRef {
    pub fn to_proto(self) -> proto::ChunkRef {
        proto::ChunkRef {
            id: Some(self.id.to_proto()),
            len: self.len,
        }
    }

    pub fn from_proto(p: &proto::ChunkRef) -> Result<Self, Error> {
        let id =
            p.id.as_ref()
                .ok_or_else(|| Error::Invalid("chunk reference without an id".into()))?;
        if p.len == 0 {
            return Err(Error::Invalid("chunk reference of length 0".into()));
        }
        Ok(ChunkRef {
            id: ChunkId::from_proto(id)?,
            len: p.len,
        })
    }
}

/// A path where two trees differ ([`TreeManifest::differences`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference<'a> {
    pub path: &'a RelPath,
    /// Its entry in the first tree, `None` when it has none.
    pub old: Option<&'a Entry>,
    /// Its entry in the second tree.
    pub new: Option<&'a Entry>,
}

/// A file's content: its chunks in order. The empty file has no chunks.
///
/// The list is shared when cloned: the scan's table and the tree hold the same one for each
/// file read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct FileManifest {
    pub chunks: std::sync::Arc<[ChunkRef]>,
}

impl FileManifest {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }
}

/// The permission bits of a file or directory (rwx for user, group and other: `0o777` at
/// most), as `rsync -a` keeps them: part of the tree, applied on every machine, so a 0600 file
/// is 0600 everywhere. Set-id and sticky bits never travel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Mode(u16);

impl Mode {
    /// The bits that travel.
    pub const MASK: u32 = 0o777;
    /// A plain file (`rw-r--r--`).
    pub const FILE: Mode = Mode(0o644);
    /// An executable file (`rwxr-xr-x`).
    pub const EXEC: Mode = Mode(0o755);
    /// A directory (`rwxr-xr-x`).
    pub const DIR: Mode = Mode(0o755);

    /// Checks `bits` (from a peer): only the rwx bits may be set.
    pub fn new(bits: u32) -> Result<Mode, Error> {
        if bits & !Self::MASK != 0 {
            return Err(Error::Invalid(format!(
                "mode {bits:#o} has bits beyond {:#o}",
                Self::MASK
            )));
        }
        Ok(Mode(bits as u16))
    }

    /// The rwx bits of an `st_mode` (from this machine's disk).
    pub fn from_st_mode(st_mode: u32) -> Mode {
        Mode((st_mode & Self::MASK) as u16)
    }

    /// The bits, `0o000..=0o777`.
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// True when anyone may execute it.
    pub fn is_exec(self) -> bool {
        self.0 & 0o111 != 0
    }
}

impl TryFrom<u32> for Mode {
    type Error = Error;
    fn try_from(bits: u32) -> Result<Self, Error> {
        Mode::new(bits)
    }
}

impl From<Mode> for u32 {
    fn from(m: Mode) -> u32 {
        m.bits()
    }
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#05o}", self.0)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entry {
    File { mode: Mode, manifest: FileManifest },
    Dir { mode: Mode },
    Symlink { target: String },
}

impl Entry {
    /// A plain file ([`Mode::FILE`]).
    pub fn file(manifest: FileManifest) -> Entry {
        Entry::File {
            mode: Mode::FILE,
            manifest,
        }
    }

    /// A directory ([`Mode::DIR`]).
    pub fn dir() -> Entry {
        Entry::Dir { mode: Mode::DIR }
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Entry::Dir { .. })
    }

    /// The permission bits of a file or directory; None for a symlink (a link has none of
    /// its own).
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Entry::File { mode, .. } | Entry::Dir { mode } => Some(*mode),
            Entry::Symlink { .. } => None,
        }
    }

    /// The kind as the wire enum.
    pub fn kind(&self) -> proto::EntryKind {
        match self {
            Entry::File { .. } => proto::EntryKind::File,
            Entry::Dir { .. } => proto::EntryKind::Dir,
            Entry::Symlink { .. } => proto::EntryKind::Symlink,
        }
    }

    /// The file manifest, for files.
    pub fn manifest(&self) -> Option<&FileManifest> {
        match self {
            Entry::File { manifest, .. } => Some(manifest),
            _ => None,
        }
    }

    /// Size in bytes: a file's content size, 0 otherwise.
    pub fn size(&self) -> u64 {
        self.manifest().map_or(0, FileManifest::size)
    }

    /// Checks a symlink target: no NUL, bounded length.
    pub fn symlink(target: impl Into<String>) -> Result<Entry, Error> {
        let target = target.into();
        if target.is_empty() || target.contains('\0') || target.len() > MAX_PATH_LEN {
            return Err(Error::Invalid(format!(
                "symlink target {target:?} is empty, too long or contains NUL"
            )));
        }
        Ok(Entry::Symlink { target })
    }
}

/// A version of a share: its entries sorted by path bytes.
///
/// A manifest never changes once built, so its entries are shared: a clone (the folder's
/// last-known tree, the store's recent versions, the copies a write or a merge takes) costs a
/// reference count, not a copy of every path (~17 MB at 100k files).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TreeManifest {
    #[serde(with = "shared_entries")]
    entries: Arc<BTreeMap<RelPath, Entry>>,
    /// The VersionId, worked out once: a manifest never changes after it is built, and a
    /// version of 100k files costs ~30 ms to hash, asked for several times per change.
    #[serde(skip)]
    id: std::sync::OnceLock<VersionId>,
}

impl PartialEq for TreeManifest {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries) || self.entries == other.entries
    }
}

impl Eq for TreeManifest {}

/// Domain separation for the canonical encoding; bump it when the encoding changes.
const CANONICAL_TAG: &[u8] = b"chorus tree manifest v2\n";

impl TreeManifest {
    /// The empty tree.
    pub fn empty() -> Self {
        TreeManifest::default()
    }

    /// Builds a manifest, refusing a path that lies below a file or a symlink.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (RelPath, Entry)>,
    ) -> Result<Self, Error> {
        let entries: BTreeMap<RelPath, Entry> = entries.into_iter().collect();
        if let Some((path, anc)) = below_a_non_dir(&entries).next() {
            return Err(Error::Invalid(format!(
                "{path} lies below {anc}, which is not a directory"
            )));
        }
        Ok(TreeManifest {
            entries: Arc::new(entries),
            id: Default::default(),
        })
    }

    /// Builds a manifest from the entries of a valid one, less some paths and with the paths
    /// in `changed` set: only those are checked (against their ancestors and, a file or a
    /// link, against anything below it), not every path of the tree. A removal cannot make a
    /// tree invalid; a change can only where it is.
    pub(crate) fn from_changed<'a>(
        entries: BTreeMap<RelPath, Entry>,
        changed: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Error> {
        for path in changed {
            if let Some((path, entry)) = entries.get_key_value(path)
                && !fits(&entries, path, entry)
            {
                return Err(Error::Invalid(format!(
                    "{path} lies below a file or a link, or is one with paths below it"
                )));
            }
        }
        Ok(TreeManifest {
            entries: Arc::new(entries),
            id: Default::default(),
        })
    }

    /// Builds a manifest from `entries`, leaving out each path that lies below a file or a
    /// symlink among them (which [`from_entries`](Self::from_entries) refuses).
    pub fn from_entries_fitting(entries: impl IntoIterator<Item = (RelPath, Entry)>) -> Self {
        let mut entries: BTreeMap<RelPath, Entry> = entries.into_iter().collect();
        let misfits: Vec<RelPath> = below_a_non_dir(&entries).map(|(p, _)| p.clone()).collect();
        for p in misfits {
            entries.remove(&p);
        }
        TreeManifest {
            entries: Arc::new(entries),
            id: Default::default(),
        }
    }

    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Looks a path up by its string form.
    pub fn get_str(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RelPath, &Entry)> {
        self.entries.iter()
    }

    /// The paths where `self` and `to` differ, in path order, with the entry each has there
    /// (`None`: none): one walk of both sorted trees, no lookups.
    pub fn differences<'a>(&'a self, to: &'a TreeManifest) -> Vec<Difference<'a>> {
        use std::cmp::Ordering;
        let mut out = Vec::new();
        if Arc::ptr_eq(&self.entries, &to.entries) {
            return out;
        }
        let mut a = self.entries.iter().peekable();
        let mut b = to.entries.iter().peekable();
        loop {
            let (old, new) = match (a.peek().copied(), b.peek().copied()) {
                (None, None) => break,
                (Some(x), None) => (Some(x), None),
                (None, Some(y)) => (None, Some(y)),
                (Some(x), Some(y)) => match x.0.cmp(y.0) {
                    Ordering::Less => (Some(x), None),
                    Ordering::Greater => (None, Some(y)),
                    Ordering::Equal => (Some(x), Some(y)),
                },
            };
            if old.is_some() {
                a.next();
            }
            if new.is_some() {
                b.next();
            }
            let path = old.or(new).map(|(p, _)| p).expect("one side has it");
            let (old, new) = (old.map(|(_, e)| e), new.map(|(_, e)| e));
            if old != new {
                out.push(Difference { path, old, new });
            }
        }
        out
    }

    pub fn entries(&self) -> &BTreeMap<RelPath, Entry> {
        &self.entries
    }

    /// The entries, taken out when no other clone shares them, copied otherwise.
    pub fn into_entries(self) -> BTreeMap<RelPath, Entry> {
        Arc::try_unwrap(self.entries).unwrap_or_else(|shared| (*shared).clone())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of file content.
    pub fn total_size(&self) -> u64 {
        self.entries.values().map(Entry::size).sum()
    }

    /// Every chunk of every file, in manifest order (repeats included).
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkRef> {
        self.entries
            .values()
            .filter_map(Entry::manifest)
            .flat_map(|m| m.chunks.iter())
    }

    /// The VersionId: BLAKE3 of the canonical encoding.
    pub fn version_id(&self) -> VersionId {
        *self.id.get_or_init(|| {
            let mut h = blake3::Hasher::new();
            let mut sink = HashSink::new(&mut h);
            self.write_canonical(&mut sink);
            sink.finish();
            VersionId(*h.finalize().as_bytes())
        })
    }

    /// The canonical encoding: a tag, then per entry in path order the path (u32 LE length and
    /// bytes), a kind byte (1 file, 2 dir, 3 symlink), then for a file its mode (u16 LE),
    /// chunk count (u64 LE) and each chunk (32-byte id, u32 LE length), for a directory its
    /// mode (u16 LE), for a symlink its target (u32 LE length and bytes).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, w: &mut impl Sink) {
        w.put(CANONICAL_TAG);
        w.put(&(self.entries.len() as u64).to_le_bytes());
        for (path, entry) in self.entries.iter() {
            put_str(w, path.as_str());
            match entry {
                Entry::File { mode, manifest } => {
                    w.put(&[1]);
                    w.put(&mode.0.to_le_bytes());
                    w.put(&(manifest.chunks.len() as u64).to_le_bytes());
                    for c in manifest.chunks.iter() {
                        w.put(&c.id.0);
                        w.put(&c.len.to_le_bytes());
                    }
                }
                Entry::Dir { mode } => {
                    w.put(&[2]);
                    w.put(&mode.0.to_le_bytes());
                }
                Entry::Symlink { target } => {
                    w.put(&[3]);
                    put_str(w, target);
                }
            }
        }
    }

    /// The manifest as the wire type.
    pub fn to_proto(&self) -> proto::TreeManifest {
        proto::TreeManifest {
            entries: self
                .entries
                .iter()
                .map(|(p, e)| entry_to_proto(p, e))
                .collect(),
        }
    }

    /// The manifest encoded as the wire type ([`to_proto`](Self::to_proto) then encoded, the
    /// same bytes), one entry at a time: the wire type of a whole 100k-file tree, built only to
    /// be encoded, was ~20 MB and a copy of every path.
    ///
    /// Each entry is written straight into the output, without building its wire type (a
    /// path, a chunk list and an id buffer per chunk allocated and freed for every entry):
    /// storing a 100k-file version spent most of its time in the allocator.
    pub fn encode_proto(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 64);
        for (p, e) in self.entries.iter() {
            encode_entry(p, e, &mut out);
        }
        out
    }

    /// The manifest from the wire: paths validated, entries strictly sorted, sizes consistent.
    pub fn from_proto(p: &proto::TreeManifest) -> Result<Self, Error> {
        let mut prev: Option<&str> = None;
        let mut entries = Vec::with_capacity(p.entries.len());
        for e in &p.entries {
            if prev.is_some_and(|prev| prev.as_bytes() >= e.path.as_bytes()) {
                return Err(Error::Invalid(format!(
                    "tree manifest is not strictly sorted at {:?}",
                    e.path
                )));
            }
            prev = Some(&e.path);
            entries.push(entry_from_proto(e)?);
        }
        TreeManifest::from_entries(entries)
    }
}

/// Appends one entry as field 1 of a `TreeManifest`, the bytes prost writes for
/// [`entry_to_proto`] (fields in tag order, as prost writes them: path, kind, size, the
/// content, mode; proto3 defaults left out).
fn encode_entry(path: &RelPath, e: &Entry, out: &mut Vec<u8>) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    // A ChunkRef: its id (field 1: a ChunkId whose field 1 holds 32 bytes), its length.
    let chunk_len = |c: &ChunkRef| {
        let id = 1 + 1 + 32;
        let len = if c.len == 0 {
            0
        } else {
            1 + encoded_len_varint(u64::from(c.len))
        };
        1 + 1 + id + len
    };
    let (kind, size, mode) = (e.kind() as i32, e.size(), e.mode().map_or(0, Mode::bits));
    let manifest_len = e.manifest().map(|m| {
        m.chunks
            .iter()
            .map(|c| 1 + encoded_len_varint(chunk_len(c) as u64) + chunk_len(c))
            .sum::<usize>()
    });
    let path = path.as_str();
    let mut len = 0;
    if !path.is_empty() {
        len += 1 + encoded_len_varint(path.len() as u64) + path.len();
    }
    if kind != 0 {
        len += 1 + encoded_len_varint(kind as u64);
    }
    if size != 0 {
        len += 1 + encoded_len_varint(size);
    }
    if mode != 0 {
        len += 1 + encoded_len_varint(u64::from(mode));
    }
    match (e, manifest_len) {
        (_, Some(m)) => len += 1 + encoded_len_varint(m as u64) + m,
        (Entry::Symlink { target }, _) => {
            len += 1 + encoded_len_varint(target.len() as u64) + target.len();
        }
        _ => {}
    }
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    if !path.is_empty() {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(path.len() as u64, out);
        out.extend_from_slice(path.as_bytes());
    }
    if kind != 0 {
        encode_key(2, WireType::Varint, out);
        encode_varint(kind as u64, out);
    }
    if size != 0 {
        encode_key(4, WireType::Varint, out);
        encode_varint(size, out);
    }
    match (e, manifest_len) {
        (Entry::File { manifest, .. }, Some(m)) => {
            encode_key(5, WireType::LengthDelimited, out);
            encode_varint(m as u64, out);
            for c in manifest.chunks.iter() {
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(chunk_len(c) as u64, out);
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(34, out);
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(32, out);
                out.extend_from_slice(c.id.as_bytes());
                if c.len != 0 {
                    encode_key(2, WireType::Varint, out);
                    encode_varint(u64::from(c.len), out);
                }
            }
        }
        (Entry::Symlink { target }, _) => {
            encode_key(6, WireType::LengthDelimited, out);
            encode_varint(target.len() as u64, out);
            out.extend_from_slice(target.as_bytes());
        }
        _ => {}
    }
    if mode != 0 {
        encode_key(7, WireType::Varint, out);
        encode_varint(u64::from(mode), out);
    }
}

fn entry_to_proto(path: &RelPath, e: &Entry) -> proto::TreeEntry {
    use proto::tree_entry::Content;
    let content = match e {
        Entry::File { manifest, .. } => Some(Content::Manifest(proto::FileManifest {
            chunks: manifest.chunks.iter().map(|c| c.to_proto()).collect(),
        })),
        Entry::Dir { .. } => None,
        Entry::Symlink { target } => Some(Content::LinkTarget(target.clone())),
    };
    proto::TreeEntry {
        path: path.as_str().to_owned(),
        kind: e.kind() as i32,
        mode: e.mode().map_or(0, Mode::bits),
        size: e.size(),
        content,
    }
}

fn entry_from_proto(e: &proto::TreeEntry) -> Result<(RelPath, Entry), Error> {
    use proto::tree_entry::Content;
    let path = RelPath::new(e.path.clone())?;
    let mode = Mode::new(e.mode).map_err(|err| Error::Invalid(format!("{path}: {err}")))?;
    let entry = match (proto::EntryKind::try_from(e.kind), &e.content) {
        (Ok(proto::EntryKind::File), Some(Content::Manifest(m))) => {
            let manifest = FileManifest {
                chunks: m
                    .chunks
                    .iter()
                    .map(ChunkRef::from_proto)
                    .collect::<Result<_, _>>()?,
            };
            if manifest.size() != e.size {
                return Err(Error::Invalid(format!(
                    "{path}: size {} does not match its chunks ({} bytes)",
                    e.size,
                    manifest.size()
                )));
            }
            Entry::File { mode, manifest }
        }
        (Ok(proto::EntryKind::File), None) if e.size == 0 => Entry::File {
            mode,
            manifest: FileManifest::default(),
        },
        (Ok(proto::EntryKind::Dir), None) if e.size == 0 => Entry::Dir { mode },
        (Ok(proto::EntryKind::Symlink), Some(Content::LinkTarget(t)))
            if e.mode == 0 && e.size == 0 =>
        {
            Entry::symlink(t.clone())?
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{path}: entry kind {} does not match its content",
                e.kind
            )));
        }
    };
    Ok((path, entry))
}

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The entries strictly below `path` ("path/" up to "path0": '0' follows '/'), in order.
pub fn entries_below<'a>(
    entries: &'a BTreeMap<RelPath, Entry>,
    path: &str,
) -> impl Iterator<Item = (&'a RelPath, &'a Entry)> {
    use std::ops::Bound::{Excluded, Included};
    entries.range::<str, _>((
        Included(format!("{path}/").as_str()),
        Excluded(format!("{path}0").as_str()),
    ))
}

/// True when `entry` can stand at `path` among `entries`: its ancestors are directories (or
/// absent), and nothing lies below it unless it is a directory.
pub fn fits(entries: &BTreeMap<RelPath, Entry>, path: &RelPath, entry: &Entry) -> bool {
    path.ancestors()
        .all(|a| entries.get(a).is_none_or(Entry::is_dir))
        && (entry.is_dir() || entries_below(entries, path.as_str()).next().is_none())
}

/// Each path that lies below a file or a symlink, with the nearest such ancestor. An ancestor
/// that is absent is fine (it is implied). Looked up by hash (a seeded fast one): a tree lookup
/// per ancestor cost ~50 ms for 100k paths.
fn below_a_non_dir(entries: &BTreeMap<RelPath, Entry>) -> impl Iterator<Item = (&RelPath, &str)> {
    let mut not_dirs: std::collections::HashSet<&str, foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(entries.len(), Default::default());
    not_dirs.extend(
        entries
            .iter()
            .filter(|(_, e)| !e.is_dir())
            .map(|(p, _)| p.as_str()),
    );
    entries.keys().filter_map(move |path| {
        path.ancestors()
            .find(|a| not_dirs.contains(a))
            .map(|anc| (path, anc))
    })
}

/// Feeds the hasher in 16 KiB pieces: fed field by field (~8 small pieces an entry) BLAKE3
/// hashes one block at a time, given whole pieces it hashes several chunks at once (SIMD).
struct HashSink<'a> {
    hasher: &'a mut blake3::Hasher,
    buf: Vec<u8>,
}

const HASH_PIECE: usize = 16 * 1024;

impl<'a> HashSink<'a> {
    fn new(hasher: &'a mut blake3::Hasher) -> Self {
        HashSink {
            hasher,
            buf: Vec::with_capacity(HASH_PIECE),
        }
    }

    fn finish(mut self) {
        self.hasher.update(&self.buf);
        self.buf.clear();
    }
}

impl Sink for HashSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > HASH_PIECE {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() >= HASH_PIECE {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

fn put_str(w: &mut impl Sink, s: &str) {
    // Paths and targets are bounded by MAX_PATH_LEN, far below u32::MAX.
    w.put(&(s.len() as u32).to_le_bytes());
    w.put(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn file(bytes: &[u8]) -> Entry {
        Entry::File {
            mode: Mode::FILE,
            manifest: FileManifest {
                chunks: vec![ChunkRef {
                    id: ChunkId::of(bytes),
                    len: bytes.len() as u32,
                }]
                .into(),
            },
        }
    }

    #[test]
    fn equal_trees_have_equal_ids_whatever_the_insertion_order() {
        let a = TreeManifest::from_entries([
            (p("b"), file(b"1")),
            (p("a"), Entry::dir()),
            (p("a/x"), file(b"2")),
        ])
        .unwrap();
        let b = TreeManifest::from_entries([
            (p("a/x"), file(b"2")),
            (p("b"), file(b"1")),
            (p("a"), Entry::dir()),
        ])
        .unwrap();
        assert_eq!(a.version_id(), b.version_id());
        assert_eq!(
            VersionId(*blake3::hash(&a.canonical_bytes()).as_bytes()),
            a.version_id()
        );
        let c = TreeManifest::from_entries([(p("b"), file(b"1")), (p("a"), Entry::dir())]).unwrap();
        assert_ne!(a.version_id(), c.version_id());
    }

    #[test]
    fn mode_and_kind_change_the_id() {
        let a = TreeManifest::from_entries([(p("f"), file(b"x"))]).unwrap();
        let Entry::File { manifest, .. } = file(b"x") else {
            unreachable!()
        };
        let b = TreeManifest::from_entries([(
            p("f"),
            Entry::File {
                mode: Mode::EXEC,
                manifest,
            },
        )])
        .unwrap();
        let c = TreeManifest::from_entries([(p("f"), Entry::dir())]).unwrap();
        let d = TreeManifest::from_entries([(p("f"), Entry::symlink("x").unwrap())]).unwrap();
        let private = |e: Entry| match e {
            Entry::File { manifest, .. } => Entry::File {
                mode: Mode::new(0o600).unwrap(),
                manifest,
            },
            _ => Entry::Dir {
                mode: Mode::new(0o700).unwrap(),
            },
        };
        let e = TreeManifest::from_entries([(p("f"), private(file(b"x")))]).unwrap();
        let f = TreeManifest::from_entries([(p("f"), private(Entry::dir()))]).unwrap();
        let ids = [
            a.version_id(),
            b.version_id(),
            c.version_id(),
            d.version_id(),
            e.version_id(),
            f.version_id(),
        ];
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                assert_ne!(ids[i], ids[j]);
            }
        }
    }

    #[test]
    fn a_path_below_a_file_is_refused() {
        assert!(
            TreeManifest::from_entries([(p("a"), file(b"1")), (p("a/b"), file(b"2"))]).is_err()
        );
        assert!(
            TreeManifest::from_entries([
                (p("a"), Entry::symlink("/").unwrap()),
                (p("a/b"), Entry::dir())
            ])
            .is_err()
        );
        assert!(TreeManifest::from_entries([(p("a/b"), file(b"2"))]).is_ok());
        // The error names the path and its nearest ancestor that is not a directory.
        let e = TreeManifest::from_entries([
            (p("a"), Entry::dir()),
            (p("a/f"), file(b"1")),
            (p("a/f/g/h"), file(b"2")),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("a/f/g/h lies below a/f"), "{e}");
    }

    /// A valid tree changed at a few paths is checked at those paths only, both ways: below
    /// a file, and a file over what lies below it.
    #[test]
    fn a_changed_tree_is_checked_where_it_changed() {
        let base = TreeManifest::from_entries([
            (p("d"), Entry::dir()),
            (p("d/x"), file(b"1")),
            (p("f"), file(b"2")),
        ])
        .unwrap();
        let changed = |path: &str, e: Entry| {
            let mut m = base.entries().clone();
            m.insert(p(path), e);
            TreeManifest::from_changed(m, [path])
        };
        assert!(changed("f/y", file(b"3")).is_err(), "below a file");
        assert!(changed("d", file(b"3")).is_err(), "a file over d/x");
        assert!(
            changed("d", Entry::symlink("f").unwrap()).is_err(),
            "a link over d/x"
        );
        let fine = changed("d/y", file(b"3")).unwrap();
        assert_eq!(
            TreeManifest::from_entries(fine.clone().into_entries()).unwrap(),
            fine
        );
        assert!(changed("d", Entry::dir()).is_ok(), "a directory stays one");
        assert!(!fits(base.entries(), &p("f/y"), &file(b"3")));
        assert!(!fits(base.entries(), &p("d"), &file(b"3")));
        assert!(fits(base.entries(), &p("d"), &Entry::dir()));
        assert!(
            fits(base.entries(), &p("e/f"), &file(b"3")),
            "an absent ancestor is implied"
        );
    }

    #[test]
    fn a_fitting_tree_leaves_out_what_lies_below_a_file_or_link() {
        let t = TreeManifest::from_entries_fitting([
            (p("a"), file(b"1")),
            (p("a/b"), file(b"2")),
            (p("a/b/c"), Entry::dir()),
            (p("a-b"), file(b"3")),
            (p("d"), Entry::dir()),
            (p("d/e"), file(b"4")),
            (p("l"), Entry::symlink("d").unwrap()),
            (p("l/x"), file(b"5")),
            (p("m/n"), file(b"6")),
        ]);
        let kept: Vec<&str> = t.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(kept, ["a", "a-b", "d", "d/e", "l", "m/n"]);
        let valid = TreeManifest::from_entries(t.clone().into_entries()).unwrap();
        assert_eq!(valid, t);
    }

    #[test]
    fn proto_round_trip_and_validation() {
        let t = TreeManifest::from_entries([
            (p("a"), Entry::dir()),
            (p("a/x"), file(b"2")),
            (
                p("e"),
                Entry::File {
                    mode: Mode::EXEC,
                    manifest: FileManifest::default(),
                },
            ),
            (p("l"), Entry::symlink("a/x").unwrap()),
        ])
        .unwrap();
        let back = TreeManifest::from_proto(&t.to_proto()).unwrap();
        assert_eq!(
            t.encode_proto(),
            prost::Message::encode_to_vec(&t.to_proto()),
            "encoded one entry at a time, the same bytes"
        );
        assert_eq!(back, t);

        let mut unsorted = t.to_proto();
        unsorted.entries.swap(0, 1);
        assert!(TreeManifest::from_proto(&unsorted).is_err());

        let mut escape = t.to_proto();
        escape.entries[0].path = "../a".into();
        assert!(matches!(
            TreeManifest::from_proto(&escape),
            Err(Error::Path(_))
        ));

        let mut bad_size = t.to_proto();
        bad_size.entries[1].size = 99;
        assert!(TreeManifest::from_proto(&bad_size).is_err());

        // Modes travel, and only the rwx bits may: no set-id, sticky or file-type bits.
        let private = TreeManifest::from_entries([
            (
                p("d"),
                Entry::Dir {
                    mode: Mode::new(0o700).unwrap(),
                },
            ),
            (
                p("d/key"),
                Entry::File {
                    mode: Mode::new(0o600).unwrap(),
                    manifest: FileManifest::default(),
                },
            ),
            (
                p("locked"),
                Entry::File {
                    mode: Mode::new(0).unwrap(),
                    manifest: FileManifest::default(),
                },
            ),
        ])
        .unwrap();
        let wire = private.to_proto();
        assert_eq!(wire.entries[0].mode, 0o700);
        assert_eq!(wire.entries[1].mode, 0o600);
        assert_eq!(TreeManifest::from_proto(&wire).unwrap(), private);
        for bad in [0o4755, 0o1777, 0o100644, u32::MAX] {
            let mut w = wire.clone();
            w.entries[1].mode = bad;
            assert!(TreeManifest::from_proto(&w).is_err(), "{bad:o}");
        }
        let mut link_mode = t.to_proto();
        link_mode.entries[3].mode = 0o777;
        assert!(
            TreeManifest::from_proto(&link_mode).is_err(),
            "a symlink has no mode"
        );
        assert!(Mode::new(0o1000).is_err());
        assert_eq!(Mode::from_st_mode(0o104755), Mode::new(0o755).unwrap());
    }
}

/// Serde for the shared entries: as the map itself.
mod shared_entries {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Entry;
    use crate::path::RelPath;

    pub fn serialize<S: Serializer>(
        entries: &Arc<BTreeMap<RelPath, Entry>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        entries.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<BTreeMap<RelPath, Entry>>, D::Error> {
        BTreeMap::deserialize(d).map(Arc::new)
    }
}

//! `chorus delta OLD_DIR NEW_DIR`: what sending NEW to a peer that holds OLD costs.
//!
//! Scans both trees, encodes NEW against OLD exactly as a sender would, frames it, decodes and
//! applies it on a receiver that holds only OLD and its chunks (answering NeedChunks with
//! Chunks frames when new chunks exceed one frame's literal budget), verifies the rebuilt tree
//! against NEW's VersionId, and reports bytes and times.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chorus_chunking::delta::{
    ApplyLimits, EncodeOptions, FetchRun, Finish, Prepare, encode, prepare,
};
use chorus_chunking::fetch::{MAX_RUN_DICTIONARY, receive_chunks, runs_messages};
use chorus_chunking::{ChunkId, ChunkStore, ChunkerParams, DiskStore, TreeManifest};
use chorus_folder::scan::{ScanCache, scan_dir};
use chorus_proto::{self as proto, Body, Limits, decode_frame, encode_frame};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// The tree the receiver holds.
    old_dir: PathBuf,
    /// The tree the sender has.
    new_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Chunk sizes in bytes as MIN,AVG,MAX (even numbers), e.g. 16384,65536,262144.
    #[arg(long, value_parser = parse_sizes)]
    chunk_sizes: Option<ChunkerParams>,
}

/// The NeedChunks frame asking for `runs` of `target`.
fn need_chunks_frame(target: chorus_chunking::VersionId, runs: &[FetchRun]) -> Vec<u8> {
    let mut ids = Vec::new();
    let mut wire_runs = Vec::new();
    for r in runs {
        if !r.dictionary.is_empty() {
            wire_runs.push(proto::ChunkRun {
                first: ids.len() as u32,
                count: r.ids.len() as u32,
                dictionary: r.dictionary.iter().map(|id| id.to_proto()).collect(),
            });
        }
        ids.extend(r.ids.iter().map(|id| id.to_proto()));
    }
    encode_frame(Body::NeedChunks(proto::NeedChunks {
        target: Some(target.to_proto()),
        ids,
        runs: wire_runs,
    }))
}

fn parse_sizes(s: &str) -> Result<ChunkerParams, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("{x:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let [min, avg, max] = v[..] else {
        return Err("expected MIN,AVG,MAX".into());
    };
    ChunkerParams::new(min, avg, max).map_err(|e| e.to_string())
}

/// The report, also the `--json` output.
#[derive(Serialize)]
struct Report {
    old_files: usize,
    new_files: usize,
    new_bytes: u64,
    files_changed: u64,
    /// The framed Push carrying the delta.
    delta_bytes: u64,
    literal_bytes: u64,
    literal_raw_bytes: u64,
    literal_chunks: u64,
    external_chunks: u64,
    /// NeedChunks frames, receiver to sender.
    fetch_request_bytes: u64,
    /// Chunks frames, sender to receiver.
    fetch_reply_bytes: u64,
    round_trips: u32,
    /// Every byte either way.
    total_bytes: u64,
    verified: bool,
    scan_ms: f64,
    encode_ms: f64,
    apply_ms: f64,
}

/// Puts every chunk into both stores: the receiver gets OLD's chunks, the sender all of them.
struct Tee<'a>(&'a dyn ChunkStore, &'a dyn ChunkStore);

impl ChunkStore for Tee<'_> {
    fn contains(&self, id: &ChunkId) -> Result<bool, chorus_chunking::Error> {
        Ok(self.0.contains(id)? && self.1.contains(id)?)
    }
    fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, chorus_chunking::Error> {
        self.0.get(id)
    }
    fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), chorus_chunking::Error> {
        self.0.put(id, bytes)?;
        self.1.put(id, bytes)
    }
    fn sync(&self) -> Result<(), chorus_chunking::Error> {
        self.0.sync()?;
        self.1.sync()
    }
    fn remove(&self, id: &ChunkId) -> Result<(), chorus_chunking::Error> {
        self.0.remove(id)?;
        self.1.remove(id)
    }
    fn ids(&self) -> Result<Vec<ChunkId>, chorus_chunking::Error> {
        self.0.ids()
    }
    fn len_of(&self, id: &ChunkId) -> Result<Option<u32>, chorus_chunking::Error> {
        self.0.len_of(id)
    }
    fn lens_of(&self, ids: &[ChunkId]) -> Result<Vec<Option<u32>>, chorus_chunking::Error> {
        self.0.lens_of(ids)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    for (what, p) in [("OLD_DIR", &args.old_dir), ("NEW_DIR", &args.new_dir)] {
        if !p.is_dir() {
            bail!(
                "{what} {} is not a directory; give two folders to compare",
                p.display()
            );
        }
    }
    let params = args.chunk_sizes.unwrap_or_default();
    let work = tempfile::Builder::new()
        .prefix("chorus-delta-")
        .tempdir()
        .context("cannot create a temporary directory for the chunk stores; set TMPDIR to a writable place")?;
    let sender = DiskStore::open(work.path().join("sender"))?;
    let receiver = DiskStore::open(work.path().join("receiver"))?;

    let t = Instant::now();
    let old = scan(&args.old_dir, params, &Tee(&sender, &receiver))?;
    let new = scan(&args.new_dir, params, &sender)?;
    sender.sync()?;
    receiver.sync()?;
    let scan_ms = ms(t);

    let t = Instant::now();
    let (delta, stats) = encode(&old, &new, &sender, &EncodeOptions::default())?;
    let frame = encode_frame(Body::Push(proto::Push {
        number: Some(proto::VersionNumber { major: 1, minor: 0 }),
        delta: Some(delta),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    }));
    let encode_ms = ms(t);

    let limits = Limits::default();
    let t = Instant::now();
    let delta = match decode_frame(&frame, &limits)?.body {
        Some(Body::Push(p)) => p.delta.context("the Push frame lost its delta")?,
        _ => bail!("the encoded frame did not decode as a Push"),
    };
    let (mut request_bytes, mut reply_bytes, mut round_trips) = (0u64, 0u64, 0u32);
    let mut prepared = match prepare(delta, Some(&old), &ApplyLimits::default())
        .context("the receiver could not apply the delta")?
    {
        Prepare::Ready(p) => p,
        Prepare::NeedBase { .. } => bail!("the receiver holds the base, yet was asked for it"),
    };
    let applied = loop {
        match prepared
            .finish(&receiver)
            .context("the receiver could not apply the delta")?
        {
            Finish::Applied(a) => break a,
            Finish::NeedChunks {
                prepared: p, ids, ..
            } if round_trips < 3 => {
                round_trips += 1;
                // As the daemon asks: each run of a file's missing chunks with the chunks
                // it replaces, so the answer compresses it against them.
                let runs = p.fetch_runs(ids, &receiver, MAX_RUN_DICTIONARY)?;
                request_bytes += need_chunks_frame(p.target(), &runs).len() as u64;
                for msg in runs_messages(&runs, &sender, limits.max_frame)? {
                    let f = encode_frame(Body::Chunks(msg));
                    reply_bytes += f.len() as u64;
                    match decode_frame(&f, &limits)?.body {
                        Some(Body::Chunks(c)) => {
                            receive_chunks(&c, &receiver, limits.max_chunk_len as usize)?;
                        }
                        _ => bail!("a Chunks frame did not decode as Chunks"),
                    }
                }
                prepared = p;
            }
            Finish::NeedChunks { ids, .. } => bail!(
                "the receiver still lacks {} chunks after {round_trips} round trips",
                ids.len()
            ),
        }
    };
    let apply_ms = ms(t);
    let verified = applied.tree == new && applied.target == new.version_id();

    let report = Report {
        old_files: old.len(),
        new_files: new.len(),
        new_bytes: new.total_size(),
        files_changed: stats.files_changed,
        delta_bytes: frame.len() as u64,
        literal_bytes: stats.literal_bytes,
        literal_raw_bytes: stats.literal_raw_bytes,
        literal_chunks: stats.literal_chunks,
        external_chunks: stats.external_chunks,
        fetch_request_bytes: request_bytes,
        fetch_reply_bytes: reply_bytes,
        round_trips,
        total_bytes: frame.len() as u64 + request_bytes + reply_bytes,
        verified,
        scan_ms,
        encode_ms,
        apply_ms,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&args, &report);
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn scan(dir: &Path, params: ChunkerParams, store: &dyn ChunkStore) -> anyhow::Result<TreeManifest> {
    let (tree, report) = scan_dir(dir, params, &mut ScanCache::new(), store)
        .with_context(|| format!("scanning {}", dir.display()))?;
    for s in &report.skipped {
        eprintln!(
            "chorus: skipped {}: {}",
            dir.join(&s.path).display(),
            s.reason
        );
    }
    Ok(tree)
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

fn print_table(args: &Args, r: &Report) {
    println!("{} -> {}", args.old_dir.display(), args.new_dir.display());
    println!(
        "  paths              {} -> {} ({} bytes)",
        r.old_files, r.new_files, r.new_bytes
    );
    println!("  paths changed      {}", r.files_changed);
    println!("  delta frame        {} bytes", r.delta_bytes);
    println!(
        "  literals           {} bytes on the wire for {} bytes in {} new chunks",
        r.literal_bytes, r.literal_raw_bytes, r.literal_chunks
    );
    if r.round_trips > 0 {
        println!(
            "  chunk fetches      {} round trips: {} bytes asked, {} bytes sent ({} chunks)",
            r.round_trips, r.fetch_request_bytes, r.fetch_reply_bytes, r.external_chunks
        );
    }
    println!("  total on the wire  {} bytes", r.total_bytes);
    println!(
        "  verified           {}",
        if r.verified { "yes" } else { "NO" }
    );
    println!(
        "  time               scan {} ms, encode {} ms, apply {} ms",
        r.scan_ms, r.encode_ms, r.apply_ms
    );
}

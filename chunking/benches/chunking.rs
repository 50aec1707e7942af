//! The figures of docs/benchmarks.md for chorus-chunking, printed as markdown tables:
//!
//! 1. Chunk + hash throughput over 1 GiB, against a bare FastCDC scan and BLAKE3 alone over the
//!    same bytes in the same run.
//! 2. Delta bytes for four edits, against `rsync -a --no-whole-file --stats` on the same pairs.
//! 3. Peak RSS while chunking a 4 GiB stream (measured in a child process).
//!
//! Run with `cargo bench -p chorus-chunking --bench chunking` (add `-- --quick` for a smaller
//! run). Needs `rsync` on PATH and cargo's registry reachable (for two releases of a crate's
//! source; set CHORUS_BENCH_CRATE=name@old..new to pick another pair).

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_chunking::chunker::{
    chunk_bytes, chunk_bytes_parallel, file_manifest, file_manifest_pipelined, for_each_chunk,
};
use chorus_chunking::delta::{ApplyLimits, ApplyOutcome, EncodeOptions, apply, encode};
use chorus_chunking::fetch::{chunks_messages, receive_chunks};
use chorus_chunking::testdata::pseudo_random;
use chorus_chunking::{ChunkStore, ChunkerParams, DiskStore, Entry, RelPath, TreeManifest};
use chorus_proto::{self as proto, Body, Limits, encode_frame};

const GIB: usize = 1 << 30;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-child") {
        let bytes: u64 = args[i + 1].parse().expect("size");
        rss_child(bytes);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only_throughput = args.iter().any(|a| a == "--throughput");
    let params = ChunkerParams::default();
    println!(
        "chorus-chunking benchmarks: chunk sizes min {} / avg {} / max {}, {} cores{}\n",
        params.min(),
        params.avg(),
        params.max(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if quick { ", --quick" } else { "" }
    );
    throughput(if quick { GIB / 8 } else { GIB }, params);
    if only_throughput {
        return;
    }
    chunk_size_sweep(quick);
    delta_vs_rsync(quick);
    peak_rss(if quick { 1 << 30 } else { 4 << 30 });
}

// ---- 1. throughput ---------------------------------------------------------------------------

fn throughput(len: usize, params: ChunkerParams) {
    let data = pseudo_random(len, 42);
    let runs = 3;
    let gib = len as f64 / GIB as f64;
    let time = |f: &dyn Fn()| -> Duration {
        let mut t: Vec<Duration> = (0..runs)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect();
        t.sort();
        t[runs / 2]
    };
    let bare = time(&|| {
        let n = fastcdc::v2020::FastCDC::new(
            &data,
            params.min() as usize,
            params.avg() as usize,
            params.max() as usize,
        )
        .count();
        black_box(n);
    });
    let blake = time(&|| {
        black_box(blake3::hash(&data));
    });
    let one_core = time(&|| {
        black_box(chunk_bytes(&data, params));
    });
    let streamed = time(&|| {
        black_box(file_manifest(&data[..], params, |_, _| Ok(())).unwrap());
    });
    let pipelined = time(&|| {
        black_box(file_manifest_pipelined(&data[..], params, |_, _| Ok(())).unwrap());
    });
    let both_mem = time(&|| {
        black_box(chunk_bytes_parallel(&data, params));
    });
    let cut_only = time(&|| {
        black_box(for_each_chunk(&data[..], params, |_, _| Ok(())).unwrap());
    });
    println!(
        "## Chunk + hash throughput ({gib:.2} GiB of random bytes in memory, median of {runs})\n"
    );
    println!("| what | GiB/s | ratio to bare FastCDC |");
    println!("|---|---:|---:|");
    let row = |name: &str, d: Duration| {
        println!(
            "| {name} | {:.2} | {:.2} |",
            gib / d.as_secs_f64(),
            bare.as_secs_f64() / d.as_secs_f64()
        );
    };
    row(
        "bare FastCDC v2020 scan (fastcdc crate iterator, no hashing)",
        bare,
    );
    row("BLAKE3 alone, one core", blake);
    row(
        "chorus cut only, streaming through a block buffer",
        cut_only,
    );
    row("chorus cut + BLAKE3, in memory, one core", one_core);
    row("chorus cut + BLAKE3, streaming `Read`, one core", streamed);
    row(
        "chorus cut + BLAKE3, streaming, reader thread + hashing thread",
        pipelined,
    );
    row(
        "chorus cut + BLAKE3, in memory, cut and hash each split over two cores",
        both_mem,
    );
    println!();
}

// ---- chunk-size sweep ------------------------------------------------------------------------

/// How the average chunk size trades delta bytes against per-chunk overhead, on a 64 MiB file
/// with 100 scattered 100-byte edits (the justification for the default sizes).
fn chunk_size_sweep(quick: bool) {
    let len = if quick { 16 << 20 } else { 64 << 20 };
    let base = pseudo_random(len, 7);
    let mut edited = base.clone();
    let mut x = 99u64;
    for _ in 0..100 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (x >> 16) as usize % (len - 200);
        edited[at..at + 100].copy_from_slice(&pseudo_random(100, x));
    }
    println!(
        "## Chunk-size sweep ({} MiB file, 100 scattered 100-byte edits)\n",
        len >> 20
    );
    println!(
        "| min / avg / max | chunks | manifest bytes | delta bytes | encode ms | cut+hash GiB/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for avg in [16u32 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10] {
        let p = ChunkerParams::new(avg / 4, avg, avg * 4).unwrap();
        let t = Instant::now();
        let m = chunk_bytes(&base, p);
        let speed = len as f64 / GIB as f64 / t.elapsed().as_secs_f64();
        let store = chorus_chunking::MemStore::new();
        let a = one_file_tree(&base, p, &store);
        let b = one_file_tree(&edited, p, &store);
        let t = Instant::now();
        let (delta, _) = encode(&a, &b, &store, &EncodeOptions::default()).unwrap();
        let enc_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = encode_frame(Body::Push(proto::Push {
            number: None,
            delta: Some(delta),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        }))
        .len();
        println!(
            "| {} / {} / {} KiB | {} | {} | {} | {:.1} | {:.2} |",
            p.min() >> 10,
            p.avg() >> 10,
            p.max() >> 10,
            m.chunks.len(),
            m.chunks.len() * 36,
            bytes,
            enc_ms,
            speed
        );
    }
    println!();
    println!("zstd level for the same 100 edits at the default chunk sizes:\n");
    println!("| level | delta bytes | encode ms |");
    println!("|---|---:|---:|");
    let p = ChunkerParams::default();
    let store = chorus_chunking::MemStore::new();
    let a = one_file_tree(&base, p, &store);
    let b = one_file_tree(&edited, p, &store);
    for level in [Some(1), Some(3), Some(9), Some(19), None] {
        let t = Instant::now();
        let opts = EncodeOptions {
            level,
            ..Default::default()
        };
        let (delta, _) = encode(&a, &b, &store, &opts).unwrap();
        let enc_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = encode_frame(Body::Push(proto::Push {
            number: None,
            delta: Some(delta),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        }))
        .len();
        let name = level.map_or("default policy".to_string(), |l| l.to_string());
        println!("| {name} | {bytes} | {enc_ms:.1} |");
    }
    println!();
}

fn one_file_tree(bytes: &[u8], p: ChunkerParams, store: &dyn ChunkStore) -> TreeManifest {
    let m = chunk_bytes(bytes, p);
    let mut pos = 0;
    for c in m.chunks.iter() {
        store.put(&c.id, &bytes[pos..pos + c.len as usize]).unwrap();
        pos += c.len as usize;
    }
    TreeManifest::from_entries([(
        chorus_chunking::RelPath::new("f").unwrap(),
        chorus_chunking::Entry::file(m),
    )])
    .unwrap()
}

// ---- 2. delta bytes vs rsync -----------------------------------------------------------------

struct Pair {
    name: String,
    old: PathBuf,
    new: PathBuf,
    /// The size of the edit itself, where it has one.
    edit_bytes: Option<u64>,
}

fn delta_vs_rsync(quick: bool) {
    let work = tempfile::Builder::new()
        .prefix("chorus-bench-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let mut pairs = Vec::new();

    // A 100-byte edit in the middle of a large file.
    let big = if quick { 128 << 20 } else { GIB };
    let data = pseudo_random(big, 1);
    let mut edited = data.clone();
    let mid = big / 2;
    edited[mid..mid + 100].copy_from_slice(&pseudo_random(100, 2));
    pairs.push(write_pair(
        w,
        "big",
        &format!("100-byte edit in the middle of a {} MiB file", big >> 20),
        &[("f.bin", &data)],
        &[("f.bin", &edited)],
        Some(100),
    ));
    drop((data, edited));

    // A one-line edit in a 100 KiB text file (real source text).
    let src = source_pair();
    let text = match &src {
        Some((old, _, _)) => largest_text(old, 100 << 10),
        None => common_text(100 << 10),
    };
    let mut edited = text.clone();
    let line_at = nth_line_start(&text, text.iter().filter(|&&b| b == b'\n').count() / 2);
    let line = b"    let chorus = \"a one-line edit\";\n";
    edited.splice(line_at..line_at, line.iter().copied());
    pairs.push(write_pair(
        w,
        "text",
        "one-line edit in a 100 KiB text file",
        &[("notes.rs", &text)],
        &[("notes.rs", &edited)],
        Some(line.len() as u64),
    ));

    // A renamed 10 MiB file.
    let ten = pseudo_random(10 << 20, 3);
    pairs.push(write_pair(
        w,
        "rename",
        "renamed 10 MiB file",
        &[("a/old-name.bin", &ten)],
        &[("b/new-name.bin", &ten)],
        None,
    ));

    if let Some((old, new, label)) = src {
        // Work on copies: the mtimes are about to be set.
        let (o, n) = (w.join("src/old"), w.join("src/new"));
        for (from, to) in [(&old, &o), (&new, &n)] {
            fs::create_dir_all(to).unwrap();
            let ok = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", from.display()))
                .arg(to)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        pairs.push(Pair {
            name: format!("source tree update: {label}"),
            old: o,
            new: n,
            edit_bytes: None,
        });
    } else {
        println!("(source-tree pair skipped: cargo could not fetch the two releases)\n");
    }

    for p in &pairs {
        set_mtimes(&p.old, &p.new);
    }
    println!("## Delta bytes vs rsync (same pairs, same run)\n");
    println!(
        "rsync: `rsync -a --no-whole-file --stats OLD/ COPY_OF_OLD/`, total bytes sent + received as it reports them. chorus: the framed Push plus any NeedChunks/Chunks frames.\n"
    );
    println!(
        "| change | edit bytes | chorus bytes | rsync bytes | chorus / rsync | diff -ruN \\| zstd -19 | chorus encode+apply ms | rsync ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in &pairs {
        let (ours, ms) = chorus_bytes(&p.old, &p.new, w);
        let (theirs, rms) = rsync_bytes(&p.old, &p.new, w);
        let floor = diff_floor(&p.old, &p.new).map_or("-".into(), |b| b.to_string());
        println!(
            "| {} | {} | {} | {} | {:.4} | {} | {:.1} | {:.1} |",
            p.name,
            p.edit_bytes.map_or("-".into(), |b| b.to_string()),
            ours,
            theirs,
            ours as f64 / theirs as f64,
            floor,
            ms,
            rms
        );
    }
    println!();
}

/// Gives the pair the mtimes a real edit leaves: files of NEW whose bytes equal OLD's keep
/// OLD's mtime, changed files are an hour newer. Without this rsync's quick check (same size
/// and mtime: skip) would skip changed files written in the same second, and count too little.
fn set_mtimes(old: &Path, new: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(86_400);
    let later = past + Duration::from_secs(3600);
    for e in ignore::WalkBuilder::new(old)
        .standard_filters(false)
        .build()
        .flatten()
    {
        if e.file_type().is_some_and(|t| t.is_file()) {
            fs::File::options()
                .write(true)
                .open(e.path())
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
    for e in ignore::WalkBuilder::new(new)
        .standard_filters(false)
        .build()
        .flatten()
    {
        if !e.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = e.path().strip_prefix(new).unwrap();
        let same = fs::read(old.join(rel)).ok() == fs::read(e.path()).ok();
        let f = fs::File::options().write(true).open(e.path()).unwrap();
        f.set_modified(if same { past } else { later }).unwrap();
    }
}

fn write_pair(
    w: &Path,
    dir: &str,
    name: &str,
    old: &[(&str, &[u8])],
    new: &[(&str, &[u8])],
    edit: Option<u64>,
) -> Pair {
    let (o, n) = (w.join(dir).join("old"), w.join(dir).join("new"));
    for (root, files) in [(&o, old), (&n, new)] {
        for (p, bytes) in files {
            let path = root.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
    }
    Pair {
        name: name.into(),
        old: o,
        new: n,
        edit_bytes: edit,
    }
}

/// A folder's files as a tree, their chunks in `store` (what chorus-folder's scan makes of it,
/// without its cache, ignore files and special cases: enough for a source tree).
fn tree_of_dir(root: &Path, params: ChunkerParams, store: &dyn ChunkStore) -> TreeManifest {
    let mut entries = Vec::new();
    for e in ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .build()
        .flatten()
    {
        let Ok(rel) = e.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str().filter(|r| !r.is_empty()) else {
            continue;
        };
        let path = RelPath::new(rel).unwrap();
        let ft = e.file_type().unwrap();
        let entry = if ft.is_dir() {
            Entry::dir()
        } else if ft.is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            let manifest = chunk_bytes(&bytes, params);
            let mut pos = 0;
            for c in manifest.chunks.iter() {
                store.put(&c.id, &bytes[pos..pos + c.len as usize]).unwrap();
                pos += c.len as usize;
            }
            let mode = chorus_chunking::Mode::from_st_mode(
                std::os::unix::fs::PermissionsExt::mode(&e.metadata().unwrap().permissions()),
            );
            Entry::File { mode, manifest }
        } else {
            continue;
        };
        entries.push((path, entry));
    }
    TreeManifest::from_entries(entries).unwrap()
}

/// Bytes chorus puts on the wire to bring a holder of `old` to `new`, and the encode+apply time.
fn chorus_bytes(old: &Path, new: &Path, w: &Path) -> (u64, f64) {
    let params = ChunkerParams::default();
    let stores = tempfile::tempdir_in(w).unwrap();
    let sender = DiskStore::open(stores.path().join("s")).unwrap();
    let receiver = DiskStore::open(stores.path().join("r")).unwrap();
    let a = tree_of_dir(old, params, &sender);
    tree_of_dir(old, params, &receiver);
    let b = tree_of_dir(new, params, &sender);
    let t = Instant::now();
    let (delta, _) = encode(&a, &b, &sender, &EncodeOptions::default()).unwrap();
    let frame = encode_frame(Body::Push(proto::Push {
        number: None,
        delta: Some(delta.clone()),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    }));
    let mut total = frame.len() as u64;
    loop {
        match apply(&delta, Some(&a), &receiver, &ApplyLimits::default()) {
            Ok(ApplyOutcome::Applied(applied)) => {
                assert_eq!(applied.tree, b);
                break;
            }
            Ok(ApplyOutcome::NeedChunks { target, ids, .. }) => {
                total += encode_frame(Body::NeedChunks(proto::NeedChunks {
                    target: Some(target.to_proto()),
                    ids: ids.iter().map(|i| i.to_proto()).collect(),
                    runs: Vec::new(),
                }))
                .len() as u64;
                for m in chunks_messages(&ids, &sender, Limits::default().max_frame).unwrap() {
                    receive_chunks(&m, &receiver, 16 << 20).unwrap();
                    total += encode_frame(Body::Chunks(m)).len() as u64;
                }
            }
            Ok(other) => panic!("the receiver holds the base, yet: {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }
    (total, t.elapsed().as_secs_f64() * 1e3)
}

fn rsync_bytes(old: &Path, new: &Path, w: &Path) -> (u64, f64) {
    let dest = tempfile::tempdir_in(w).unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", old.display()))
        .arg(dest.path())
        .status()
        .unwrap();
    assert!(cp.success());
    let t = Instant::now();
    let out = Command::new("rsync")
        .args(["-a", "--no-whole-file", "--stats"])
        .arg(format!("{}/", new.display()))
        .arg(format!("{}/", dest.path().display()))
        .output()
        .expect("rsync on PATH (apt-get install rsync)");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let stats = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .replace(',', "")
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or_else(|| panic!("rsync --stats has no {name:?}:\n{stats}"))
    };
    (
        field("Total bytes sent:") + field("Total bytes received:"),
        ms,
    )
}

/// zstd -19 of the unified diff: a floor for any delta of a text change.
fn diff_floor(old: &Path, new: &Path) -> Option<u64> {
    let diff = Command::new("diff")
        .arg("-ruN")
        .arg(old)
        .arg(new)
        .output()
        .ok()?;
    if diff.stdout.is_empty() || diff.stdout.len() > 64 << 20 || diff.stdout.contains(&0) {
        return None;
    }
    Some(zstd::bulk::compress(&diff.stdout, 19).ok()?.len() as u64)
}

/// Two releases of a crate's source, fetched by cargo into its registry cache and unpacked.
fn source_pair() -> Option<(PathBuf, PathBuf, String)> {
    let spec =
        std::env::var("CHORUS_BENCH_CRATE").unwrap_or_else(|_| "tokio@1.44.0..1.45.0".into());
    let (name, versions) = spec.split_once('@')?;
    let (a, b) = versions.split_once("..")?;
    let dir = std::env::temp_dir().join("chorus-bench-sources");
    let mut out = Vec::new();
    for v in [a, b] {
        let unpacked = dir.join(format!("{name}-{v}"));
        if !unpacked.is_dir() {
            let proj = dir.join(format!("fetch-{name}-{v}"));
            fs::create_dir_all(proj.join("src")).ok()?;
            fs::write(proj.join("src/lib.rs"), "").ok()?;
            fs::write(
                proj.join("Cargo.toml"),
                format!("[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[dependencies]\n{name} = {{ version = \"={v}\", default-features = false }}\n[workspace]\n"),
            )
            .ok()?;
            let ok = Command::new("cargo")
                .arg("fetch")
                .arg("--manifest-path")
                .arg(proj.join("Cargo.toml"))
                .status()
                .ok()?
                .success();
            if !ok {
                return None;
            }
            let home = std::env::var("CARGO_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
                });
            let krate = fs::read_dir(home.join("registry/cache"))
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path().join(format!("{name}-{v}.crate")))
                .find(|p| p.is_file())?;
            let ok = Command::new("tar")
                .arg("-xzf")
                .arg(&krate)
                .arg("-C")
                .arg(&dir)
                .status()
                .ok()?
                .success();
            if !ok {
                return None;
            }
        }
        out.push(unpacked);
    }
    let label = format!("{name} {a} → {b}");
    Some((out.remove(0), out.remove(0), label))
}

fn largest_text(root: &Path, len: usize) -> Vec<u8> {
    let mut best = Vec::new();
    for e in ignore::WalkBuilder::new(root).build().flatten() {
        if e.path().extension().is_some_and(|x| x == "rs")
            && let Ok(b) = fs::read(e.path())
            && b.len() > best.len()
        {
            best = b;
        }
    }
    while best.len() < len {
        best.extend_from_within(..);
    }
    best.truncate(len);
    best
}

fn common_text(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i}: the leader merges concurrent edits three-way\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn nth_line_start(text: &[u8], n: usize) -> usize {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1)
}

// ---- 3. peak RSS -----------------------------------------------------------------------------

fn peak_rss(bytes: u64) {
    let exe = std::env::current_exe().unwrap();
    let t = Instant::now();
    let out = Command::new(exe)
        .arg("--rss-child")
        .arg(bytes.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    println!("## Peak RSS chunking a {} GiB stream\n", bytes >> 30);
    println!(
        "Child process reading a generated stream through `file_manifest_pipelined` (reader thread + hashing thread), keeping the manifest.\n"
    );
    println!("| stream | chunks | peak RSS (VmHWM) | wall time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {} GiB | {} | {:.1} s |",
        bytes >> 30,
        line.trim(),
        t.elapsed().as_secs_f64()
    );
    println!();
}

fn rss_child(bytes: u64) {
    struct Gen {
        left: u64,
        x: u64,
    }
    impl Read for Gen {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.left) as usize & !7;
            let n = if n == 0 {
                (self.left as usize).min(buf.len())
            } else {
                n
            };
            for c in buf[..n].chunks_mut(8) {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                let b = self.x.to_le_bytes();
                c.copy_from_slice(&b[..c.len()]);
            }
            self.left -= n as u64;
            Ok(n)
        }
    }
    let m = file_manifest_pipelined(
        Gen {
            left: bytes,
            x: 88172645463325252,
        },
        ChunkerParams::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(m.size(), bytes);
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ? kB");
    let kb: f64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    println!("{} | {:.1} MiB", m.chunks.len(), kb / 1024.0);
}

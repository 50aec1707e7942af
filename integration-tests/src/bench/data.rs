//! The data the scenarios sync, built deterministically under the work dir: two releases of a
//! real crate with realistic mtimes, a source tree copied from the cargo registry, large
//! pseudo-random files and many small files; and snapshots of a tree (path, size, BLAKE3) to
//! tell when a destination holds exactly the expected bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Names a tool keeps in a synced folder for itself; never compared.
fn is_tool_artifact(name: &str) -> bool {
    name == ".stfolder"
        || name == ".stversions"
        || name == ".chorus"
        || name == ".chorus-share"
        || name.starts_with(".syncthing.")
        || name.starts_with("~syncthing~")
        || name.starts_with(".unison")
        || name.ends_with(".chorus-tmp")
}

/// Every regular file under `root` as relative path -> size, skipping tool artifacts. Files
/// that vanish during the walk (a tool is writing) are skipped.
pub fn sizes(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if e.file_name().to_str().is_some_and(is_tool_artifact) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(md) = e.metadata()
                && let Ok(rel) = p.strip_prefix(root)
            {
                out.insert(rel.to_path_buf(), md.len());
            }
        }
    }
    out
}

/// What a folder must hold: every file's size and BLAKE3 hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub files: BTreeMap<PathBuf, (u64, [u8; 32])>,
}

impl Snapshot {
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|(n, _)| n).sum()
    }
}

/// BLAKE3 of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// The snapshot of what `root` holds now.
pub fn snapshot(root: &Path) -> Result<Snapshot, String> {
    let mut files = BTreeMap::new();
    for (rel, len) in sizes(root) {
        let h = hash_file(&root.join(&rel))
            .map_err(|e| format!("cannot read {}: {e}", root.join(&rel).display()))?;
        files.insert(rel, (len, h));
    }
    Ok(Snapshot { files })
}

/// True when `root` holds exactly `expected` (sizes first, then contents).
pub fn matches(root: &Path, expected: &Snapshot) -> bool {
    let now = sizes(root);
    if now.len() != expected.files.len()
        || now
            .iter()
            .zip(&expected.files)
            .any(|((p, n), (q, (m, _)))| p != q || n != m)
    {
        return false;
    }
    expected
        .files
        .iter()
        .all(|(p, (_, h))| hash_file(&root.join(p)).is_ok_and(|x| &x == h))
}

/// Copies the files and directories of `from` into `to` (created), keeping mtimes (`cp -a`).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cp -a {} {} failed (disk full?)",
            from.display(),
            to.display()
        ))
    }
}

/// Moves every entry of `stage` into `folder` (same file system: instant).
pub fn move_into(stage: &Path, folder: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(stage).map_err(|e| format!("cannot read {}: {e}", stage.display()))?;
    for e in entries.filter_map(Result::ok) {
        let to = folder.join(e.file_name());
        std::fs::rename(e.path(), &to).map_err(|err| {
            format!(
                "cannot move {} to {}: {err}",
                e.path().display(),
                to.display()
            )
        })?;
    }
    Ok(())
}

/// The cargo registry's source dirs (`~/.cargo/registry/src/*`).
fn registry_roots() -> Vec<PathBuf> {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Ok(home) = home else { return Vec::new() };
    let mut v: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A crate's unpacked source in the registry, fetched through cargo when missing.
pub fn registry_crate(name: &str, version: &str, work: &Path) -> Result<PathBuf, String> {
    let dir = format!("{name}-{version}");
    if let Some(p) = registry_roots()
        .into_iter()
        .map(|r| r.join(&dir))
        .find(|p| p.is_dir())
    {
        return Ok(p);
    }
    let proj = work.join(format!("fetch-{dir}"));
    std::fs::create_dir_all(proj.join("src")).map_err(|e| e.to_string())?;
    std::fs::write(proj.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    std::fs::write(
        proj.join("Cargo.toml"),
        format!("[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[dependencies]\n{name} = {{ version = \"={version}\", default-features = false }}\n[workspace]\n"),
    )
    .map_err(|e| e.to_string())?;
    // `cargo generate-lockfile` + `cargo fetch` download the crate; a build unpacks it.
    let ok = Command::new("cargo")
        .args(["build", "-q", "--manifest-path"])
        .arg(proj.join("Cargo.toml"))
        .status()
        .is_ok_and(|s| s.success());
    registry_roots()
        .into_iter()
        .map(|r| r.join(&dir))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            format!(
                "{dir} is not in the cargo registry and fetching it through cargo {}: run `cargo fetch` in a project that depends on {name} = \"={version}\"",
                if ok { "did not unpack it" } else { "failed (offline?)" }
            )
        })
}

fn set_mtime(path: &Path, t: SystemTime) -> Result<(), String> {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(|e| format!("cannot set the mtime of {}: {e}", path.display()))
}

/// Copies two releases into `old` and `new` with the mtimes a real update leaves: every old
/// file and every unchanged new file two days old, changed and added files one day old (the
/// registry gives every file one mtime, which rsync's quick check would take for "unchanged").
pub fn release_pair(old_src: &Path, new_src: &Path, old: &Path, new: &Path) -> Result<(), String> {
    copy_tree(old_src, old)?;
    copy_tree(new_src, new)?;
    let now = SystemTime::now();
    let (two_days, one_day) = (
        now - Duration::from_secs(2 * 86400),
        now - Duration::from_secs(86400),
    );
    for rel in sizes(old).keys() {
        set_mtime(&old.join(rel), two_days)?;
    }
    for rel in sizes(new).keys() {
        let same = std::fs::read(old.join(rel)).ok() == std::fs::read(new.join(rel)).ok();
        set_mtime(&new.join(rel), if same { two_days } else { one_day })?;
    }
    Ok(())
}

/// The bytes of `new` compressed against `old` by `zstd -19 --long=31 --patch-from` (the
/// files of each concatenated in path order, the old as the new's reference), a floor for an
/// update that carries no context; the zstd command is installed with the other tools.
pub fn patch_from(old: &Path, new: &Path, work: &Path) -> Result<usize, String> {
    let concat = |root: &Path, to: &Path| -> Result<(), String> {
        let mut all = Vec::new();
        for rel in sizes(root).keys() {
            all.extend(std::fs::read(root.join(rel)).map_err(|e| e.to_string())?);
        }
        std::fs::write(to, all).map_err(|e| e.to_string())
    };
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let (o, n, out) = (
        work.join("old.cat"),
        work.join("new.cat"),
        work.join("new.zst"),
    );
    concat(old, &o)?;
    concat(new, &n)?;
    let ok = Command::new("zstd")
        .args(["-q", "-f", "-19", "--long=31", "--single-thread"])
        .arg(format!("--patch-from={}", o.display()))
        .arg(&n)
        .arg("-o")
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    let len = std::fs::metadata(&out).map(|m| m.len() as usize);
    let _ = [o, n, out.clone()]
        .iter()
        .try_for_each(std::fs::remove_file);
    match (ok, len) {
        (true, Ok(len)) => Ok(len),
        _ => Err("`zstd --patch-from` failed (install zstd)".into()),
    }
}

/// Copies whole crates from the registry, in name order, into `to` until it holds at least
/// `bytes` bytes or `files` files, skipping crates larger than a fifth of `bytes`. Returns
/// (files, bytes).
pub fn source_tree(to: &Path, bytes: u64, files: usize) -> Result<(usize, u64), String> {
    let mut crates: Vec<PathBuf> = registry_roots()
        .iter()
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    crates.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    crates.dedup_by(|a, b| a.file_name() == b.file_name());
    let (mut n, mut total) = (0usize, 0u64);
    for c in crates {
        if total >= bytes || n >= files {
            break;
        }
        let s = sizes(&c);
        // No one crate may make up most of the tree (some carry large data files).
        if s.values().sum::<u64>() > bytes / 5 {
            continue;
        }
        let name = c.file_name().unwrap_or_default();
        copy_tree(&c, &to.join(name))?;
        n += s.len();
        total += s.values().sum::<u64>();
    }
    if total < bytes / 2 {
        return Err(format!(
            "the cargo registry holds only {total} bytes of crate sources; build the workspace once (cargo build) so it fills"
        ));
    }
    Ok((n, total))
}

/// splitmix64: a small deterministic generator for benchmark data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes `size` pseudo-random bytes from `seed` to `path`.
pub fn random_file(path: &Path, size: u64, seed: u64) -> Result<(), String> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
    );
    let mut rng = Rng(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in block.chunks_exact_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])
            .map_err(|e| format!("cannot write {}: {e} (disk full?)", path.display()))?;
        left -= n as u64;
    }
    f.flush().map_err(|e| e.to_string())
}

/// `count` small text files (100 to 1,100 bytes) in directories of 1,000 under `root`.
pub fn small_files(root: &Path, count: usize, seed: u64) -> Result<u64, String> {
    let mut rng = Rng(seed);
    let mut total = 0;
    for i in 0..count {
        let dir = root.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        }
        let len = 100 + (rng.next_u64() % 1000) as usize;
        let mut text = String::with_capacity(len);
        while text.len() < len {
            let w = rng.next_u64();
            text.push((b'a' + (w % 26) as u8) as char);
            if w.is_multiple_of(7) {
                text.push(if w.is_multiple_of(5) { '\n' } else { ' ' });
            }
        }
        text.truncate(len);
        std::fs::write(dir.join(format!("f{i:06}.txt")), &text).map_err(|e| e.to_string())?;
        total += len as u64;
    }
    Ok(total)
}

/// Inserts `line` into the file at `path` at the first newline after the middle (or at the
/// middle), writing a new file and renaming it into place, as an editor saves.
pub fn insert_line(path: &Path, line: &[u8]) -> Result<(), String> {
    let at = insert_offset(path)?;
    let tmp = path.with_extension("bench-edit");
    {
        let mut src = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut dst =
            std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| e.to_string())?);
        std::io::copy(&mut (&mut src).take(at), &mut dst).map_err(|e| e.to_string())?;
        dst.write_all(line).map_err(|e| e.to_string())?;
        std::io::copy(&mut src, &mut dst).map_err(|e| e.to_string())?;
        dst.flush().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// Where [`insert_line`] inserts: the middle of the file.
fn insert_offset(path: &Path) -> Result<u64, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    Ok(len / 2)
}

/// Size and BLAKE3 of `path` with `line` inserted as [`insert_line`] would, without writing it.
pub fn hash_with_inserted(path: &Path, line: &[u8]) -> Result<(u64, [u8; 32]), String> {
    let at = insert_offset(path)?;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut inserted = false;
    loop {
        let want = if inserted {
            buf.len()
        } else {
            (at - pos).min(buf.len() as u64) as usize
        };
        if !inserted && want == 0 {
            h.update(line);
            inserted = true;
            continue;
        }
        let n = f.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    if !inserted {
        h.update(line);
    }
    Ok((pos + line.len() as u64, *h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_hash_matches_the_written_file() {
        let dir = std::env::temp_dir().join(format!("chorus-bench-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        random_file(&p, 3 * 1024 * 1024 + 17, 1).unwrap();
        let want = hash_with_inserted(&p, b"a line\n").unwrap();
        insert_line(&p, b"a line\n").unwrap();
        let got = (std::fs::metadata(&p).unwrap().len(), hash_file(&p).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(want, got);
    }
}

//! The two-party scenarios of issue 8 (and the measured part of issue 6): a source-tree
//! update, the initial sync of a source tree, of a large file and of many small files, a
//! one-line edit in the large file and in the many files, and chorus' memory on a 4 GiB file.
//! Each builds its data once per benchmark run, then hands its phases to [`run_two_party`].

use std::path::PathBuf;
use std::time::Duration;

use super::data::{self, Snapshot};
use super::results::Results;
use super::two_party::{Ctx, Phase, Spec, log, run_two_party};

/// Two releases of one crate as a source-tree update.
struct Release {
    /// The scenario's name and its measured phase's key.
    key: &'static str,
    krate: &'static str,
    old: &'static str,
    new: &'static str,
    /// The table's title.
    title: &'static str,
}

/// Scenario 1: two releases of tokio, old then new, plus the diff floor.
pub fn update(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    release_update(
        ctx,
        results,
        &Release {
            key: "update",
            krate: "tokio",
            old: "1.44.0",
            new: "1.45.0",
            title: "Source-tree update, tokio 1.44.0 → 1.45.0",
        },
    )
}

/// Scenario 1b (issue 15's mid-size update): OpenSSL 3.2.1 → 3.3.1 as vendored by
/// openssl-src, ~580 of ~3,500 files changed, 14.9 MB of them: more new bytes than a delta
/// carries as literals (8 MiB), so most come as fetched chunks. Floors: the diff and
/// `zstd --patch-from` of the old tree.
pub fn release(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    release_update(
        ctx,
        results,
        &Release {
            key: "release",
            krate: "openssl-src",
            old: "300.2.3+3.2.1",
            new: "300.3.1+3.3.1",
            title: "Mid-size release update, OpenSSL 3.2.1 → 3.3.1 (openssl-src)",
        },
    )
}

fn release_update(ctx: &Ctx, results: &mut Results, r: &Release) -> Result<(), String> {
    let data = ctx.data().join(r.key);
    let (old, new) = (data.join("old"), data.join("new"));
    if !new.is_dir() {
        let o = data::registry_crate(r.krate, r.old, &ctx.work)?;
        let n = data::registry_crate(r.krate, r.new, &ctx.work)?;
        data::release_pair(&o, &n, &old, &new)?;
    }
    let (eo, en) = (data::snapshot(&old)?, data::snapshot(&new)?);
    let changed = en
        .files
        .iter()
        .filter(|(p, v)| eo.files.get(*p) != Some(v))
        .count()
        + eo.files
            .keys()
            .filter(|p| !en.files.contains_key(*p))
            .count();
    results.notes.push(format!(
        "{}: {} {} ({} files, {:.1} MB) to {} ({} files, {:.1} MB), {changed} paths changed; unchanged files keep their mtime, changed ones are a day newer.",
        r.title,
        r.krate,
        r.old,
        eo.files.len(),
        eo.total_bytes() as f64 / 1e6,
        r.new,
        en.files.len(),
        en.total_bytes() as f64 / 1e6
    ));
    // The floors: the unified diff, compressed; the new tree compressed against the old.
    let diff = std::process::Command::new("diff")
        .arg("-ruN")
        .arg(&old)
        .arg(&new)
        .output()
        .map_err(|e| format!("cannot run diff: {e}"))?;
    let floor = zstd::encode_all(&diff.stdout[..], 19).map_err(|e| e.to_string())?;
    let phase = results.phase(r.key, r.title);
    phase
        .row("diff -ruN, zstd -19 (floor)")
        .fwd
        .push(floor.len() as f64);
    if r.key != "update" {
        let patch = data::patch_from(&old, &new, &ctx.work.join("patch-from"))?;
        phase
            .row("zstd -19 --patch-from (floor)")
            .fwd
            .push(patch as f64);
    }

    let (o2, n2) = (old.clone(), new.clone());
    let title = r.title;
    let spec = Spec {
        scenario: r.key,
        stage: Box::new(move |stage| {
            data::copy_tree(&o2, &stage.join("old"))?;
            data::copy_tree(&n2, &stage.join("new"))
        }),
        phases: vec![
            Phase {
                key: if r.key == "update" {
                    "update-setup"
                } else {
                    "release-setup"
                },
                title: format!("{} {} to an empty node", r.krate, r.old),
                apply: Box::new(|a, stage| data::move_into(&stage.join("old"), a)),
                expect: eo,
                measured: false,
            },
            Phase {
                key: r.key,
                title: title.into(),
                apply: Box::new(|a, stage| {
                    let ok = std::process::Command::new("rsync")
                        // Leave what a tool keeps in the folder alone (Syncthing's and chorus'
                        // markers: without its marker chorus takes the folder for a disk that is
                        // not mounted and stops syncing it).
                        .args([
                            "-a",
                            "--delete",
                            "--exclude=/.stfolder",
                            "--exclude=/.chorus",
                            "--exclude=/.chorus-share",
                        ])
                        .arg(format!("{}/", stage.join("new").display()))
                        .arg(format!("{}/", a.display()))
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        Ok(())
                    } else {
                        Err("local rsync of the new release failed".into())
                    }
                }),
                expect: en,
                measured: true,
            },
        ],
        limit: Duration::from_secs(300),
        only: None,
        runs: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

/// Scenario 3a: a ~50 MB, ~5k-file source tree to an empty node.
pub fn initial_tree(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let (bytes, files) = if ctx.quick {
        (10_000_000, 1_000)
    } else {
        (50_000_000, 5_000)
    };
    let tree = ctx.data().join(format!("tree-v2-{bytes}-{files}"));
    if !tree.is_dir() {
        let tmp = ctx.data().join("tree-partial");
        let _ = std::fs::remove_dir_all(&tmp);
        data::source_tree(&tmp, bytes, files)?;
        std::fs::rename(&tmp, &tree).map_err(|e| e.to_string())?;
    }
    let expect = data::snapshot(&tree)?;
    let title = format!(
        "Initial sync of a source tree ({} files, {:.1} MB) to an empty node",
        expect.files.len(),
        expect.total_bytes() as f64 / 1e6
    );
    results.notes.push(format!("{title}: whole crates copied from the cargo registry in name order (none over a fifth of the total) until ~{} MB or {files} files.", bytes / 1_000_000));
    let t2 = tree.clone();
    let spec = Spec {
        scenario: "initial-tree",
        stage: Box::new(move |stage| data::copy_tree(&t2, stage)),
        phases: vec![Phase {
            key: "initial-tree",
            title,
            apply: Box::new(|a, stage| data::move_into(stage, a)),
            expect,
            measured: true,
        }],
        limit: Duration::from_secs(600),
        only: None,
        runs: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

fn big_file(ctx: &Ctx, size: u64, seed: u64) -> Result<(PathBuf, Snapshot), String> {
    let dir = ctx.data().join(format!("big-{size}"));
    let file = dir.join("big.bin");
    if !file.is_file() || std::fs::metadata(&file).map(|m| m.len()).ok() != Some(size) {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        log(format!("writing a {} MiB file", size >> 20));
        data::random_file(&file, size, seed)?;
    }
    let snap = data::snapshot(&dir)?;
    Ok((dir, snap))
}

fn size_label(size: u64) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}

/// Scenarios 3b and 4: a 1 GiB file to an empty node, then a one-line insertion in it.
pub fn big(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let size = if ctx.quick { 64 << 20 } else { 1 << 30 };
    let (dir, snap) = big_file(ctx, size, 1)?;
    const LINE: &[u8] = b"one line inserted by the benchmark\n";
    let (len, hash) = data::hash_with_inserted(&dir.join("big.bin"), LINE)?;
    let mut edited = snap.clone();
    edited.files.insert(PathBuf::from("big.bin"), (len, hash));
    let label = size_label(size);
    let d2 = dir.clone();
    let spec = Spec {
        scenario: "big-file",
        stage: Box::new(move |stage| data::copy_tree(&d2, stage)),
        phases: vec![
            Phase {
                key: "big-initial",
                title: format!("Initial sync of one {label} file (pseudo-random bytes)"),
                apply: Box::new(|a, stage| data::move_into(stage, a)),
                expect: snap,
                measured: true,
            },
            Phase {
                key: "big-edit",
                title: format!(
                    "A one-line insertion ({} bytes) in the middle of the {label} file",
                    LINE.len()
                ),
                apply: Box::new(|a, _| data::insert_line(&a.join("big.bin"), LINE)),
                expect: edited,
                measured: true,
            },
        ],
        limit: Duration::from_secs(600),
        only: None,
        runs: None,
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

/// Scenario 5 (chorus only): peak RSS while syncing a 4 GiB file.
pub fn huge(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let size = if ctx.quick { 256 << 20 } else { 4 << 30 };
    let (dir, snap) = big_file(ctx, size, 4)?;
    let d2 = dir.clone();
    let spec = Spec {
        scenario: "huge-file",
        // Moved, not copied, to keep the disk use of a run to one copy per folder; a later
        // run writes the same bytes again.
        stage: Box::new(move |stage| {
            let src = d2.join("big.bin");
            if !src.is_file() {
                data::random_file(&src, size, 4)?;
            }
            std::fs::rename(&src, stage.join("big.bin")).map_err(|e| e.to_string())
        }),
        phases: vec![Phase {
            key: "huge-initial",
            title: format!(
                "Initial sync of one {} file (chorus only, for its memory)",
                size_label(size)
            ),
            apply: Box::new(|a, stage| data::move_into(stage, a)),
            expect: snap,
            measured: true,
        }],
        // Long enough for its memory to show; a slower sync is reported as not finished.
        limit: Duration::from_secs(600),
        only: Some("chorus"),
        runs: Some(ctx.long_runs),
    };
    run_two_party(ctx, &spec, results);
    // The pristine file is not needed again in this run.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Scenario 6: 100k small files to an empty node, then one appended line in that tree (which
/// each tool finds by its watcher or by rescanning).
pub fn scale(ctx: &Ctx, results: &mut Results) -> Result<(), String> {
    let count = if ctx.quick { 5_000 } else { 100_000 };
    let tree = ctx.data().join(format!("small-{count}"));
    if !tree.is_dir() {
        let tmp = ctx.data().join("small-partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        data::small_files(&tmp, count, 6)?;
        std::fs::rename(&tmp, &tree).map_err(|e| e.to_string())?;
    }
    let expect = data::snapshot(&tree)?;
    let target = PathBuf::from(format!("d{:03}/f{:06}.txt", count / 2000, count / 2));
    let mut changed = expect.clone();
    const LINE: &[u8] = b"one line appended by the benchmark\n";
    {
        let mut bytes = std::fs::read(tree.join(&target)).map_err(|e| e.to_string())?;
        bytes.extend_from_slice(LINE);
        changed.files.insert(
            target.clone(),
            (bytes.len() as u64, *blake3::hash(&bytes).as_bytes()),
        );
    }
    let t2 = tree.clone();
    let spec = Spec {
        scenario: "scale",
        stage: Box::new(move |stage| data::copy_tree(&t2, stage)),
        phases: vec![
            Phase {
                key: "scale-initial",
                title: format!(
                    "Initial sync of {count} small files ({:.1} MB)",
                    expect.total_bytes() as f64 / 1e6
                ),
                apply: Box::new(|a, stage| data::move_into(stage, a)),
                expect,
                measured: true,
            },
            Phase {
                key: "scale-change",
                title: format!("One line appended to one of the {count} files (watcher or rescan)"),
                apply: Box::new(move |a, _| {
                    use std::io::Write;
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(a.join(&target))
                        .and_then(|mut f| f.write_all(LINE))
                        .map_err(|e| e.to_string())
                }),
                expect: changed,
                measured: true,
            },
        ],
        limit: Duration::from_secs(900),
        only: None,
        runs: Some(ctx.long_runs),
    };
    run_two_party(ctx, &spec, results);
    Ok(())
}

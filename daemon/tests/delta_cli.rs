//! `chorus delta` as a user runs it: a real process on real folders.

use std::fs;
use std::path::Path;
use std::process::Command;

fn chorus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

#[test]
fn json_report_of_a_small_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let text: String = (0..3000)
        .map(|i| format!("line {i} of a document that is kept in sync\n"))
        .collect();
    write(&old, "docs/notes.md", text.as_bytes());
    write(&old, "unchanged.bin", &[7u8; 50_000]);
    let edited = text.replacen("line 1500 of", "line 1500, edited, of", 1);
    write(&new, "docs/notes.md", edited.as_bytes());
    write(&new, "unchanged.bin", &[7u8; 50_000]);
    write(&new, "added.txt", b"a new file\n");

    let out = chorus()
        .arg("delta")
        .arg(&old)
        .arg(&new)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["files_changed"], 2);
    let bytes = v["delta_bytes"].as_u64().unwrap();
    assert!(
        bytes > 0 && bytes < 600,
        "a one-line edit and a tiny file cost {bytes} bytes"
    );
    assert_eq!(v["round_trips"], 0);
}

#[test]
fn table_output_and_a_large_new_file_that_needs_chunk_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    fs::create_dir_all(&old).unwrap();
    // 12 MiB of incompressible bytes: more than one delta carries, so the rest is fetched.
    let big = chorus_chunking::testdata::pseudo_random(12 << 20, 1);
    write(&new, "big.bin", &big);
    let out = chorus().arg("delta").arg(&old).arg(&new).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified           yes"), "{stdout}");
    assert!(stdout.contains("chunk fetches"), "{stdout}");
}

#[test]
fn a_missing_folder_is_a_one_line_error_with_exit_code_1() {
    let out = chorus()
        .args(["delta", "/nonexistent/a", "/nonexistent/b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn usage_errors_exit_with_2() {
    let out = chorus().args(["delta"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = chorus()
        .args(["delta", "a", "b", "--chunk-sizes", "1,2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

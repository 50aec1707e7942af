//! `chorus merge-file` as a user runs it.

use std::fs;
use std::process::Command;

fn run(
    dir: &std::path::Path,
    ours: &str,
    base: &str,
    theirs: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    for (name, text) in [("ours", ours), ("base", base), ("theirs", theirs)] {
        fs::write(dir.join(name), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("merge-file")
        .args(extra)
        .args(["ours", "base", "theirs"].map(|n| dir.join(n)))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_clean_merge_combines_both_sides_and_exits_0() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, _) = run(
        d.path(),
        "a\nB\nc\nd\ne\n",
        "a\nb\nc\nd\ne\n",
        "a\nb\nc\nd\nE\n",
        &[],
    );
    assert_eq!(code, Some(0));
    assert_eq!(out, "a\nB\nc\nd\nE\n");
}

#[test]
fn a_conflict_is_won_by_the_higher_number_and_the_loser_is_kept_for_redo() {
    let d = tempfile::tempdir().unwrap();
    let redo = d.path().join("redo.json");
    let args = [
        "--ours-number",
        "7.1",
        "--theirs-number",
        "7.2",
        "--redo",
        redo.to_str().unwrap(),
    ];
    let (code, out, _) = run(
        d.path(),
        "x\nOURS\ny\n",
        "x\nbase\ny\n",
        "x\nTHEIRS\ny\n",
        &args,
    );
    assert_eq!(code, Some(1), "one conflict resolved by order");
    assert_eq!(out, "x\nTHEIRS\ny\n");
    let entries: serde_json::Value = serde_json::from_slice(&fs::read(&redo).unwrap()).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert!(entries.to_string().contains("OURS"), "{entries}");

    // Swap the numbers: ours wins.
    let args = ["--ours-number", "8.0", "--theirs-number", "7.2"];
    let (code, out, _) = run(
        d.path(),
        "x\nOURS\ny\n",
        "x\nbase\ny\n",
        "x\nTHEIRS\ny\n",
        &args,
    );
    assert_eq!((code, out.as_str()), (Some(1), "x\nOURS\ny\n"));
}

#[test]
fn errors_exit_255_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "merge-file",
            "/nonexistent/o",
            "/nonexistent/b",
            "/nonexistent/t",
        ])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["merge-file", "--mode", "sideways", "o", "b", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

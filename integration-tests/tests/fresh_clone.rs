//! The repository stands alone: a `git clone` of this checkout's HEAD into an empty folder
//! (nothing beside it, no `../shared`) has everything the README's test command needs. The
//! test reads the README's test command, checks that `.ci/run` runs exactly that command, and
//! builds and runs the merge crate's trace replays in the clone (the tests that once read a
//! folder outside the repository), sharing this build's target dir so only the workspace's
//! own crates are compiled again. Skipped, with a `SKIPPED` line, when the checkout is not a
//! git repository or git is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root: the parent of this crate's folder.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_owned()
}

/// `git ARGS` in `dir`: its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The test command of the README's "Set up" block: its `cargo test` line, comment dropped.
fn readme_test_command(readme: &str) -> String {
    readme
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| l.starts_with("cargo test"))
        .expect("the README names its test command (a `cargo test` line)")
        .to_owned()
}

/// The target dir this test was built in: `$CARGO_TARGET_DIR`, else the folder three levels
/// above this test binary (`TARGET/debug/deps/fresh_clone-HASH`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary sits in TARGET/PROFILE/deps")
        .to_owned()
}

#[test]
fn a_fresh_clone_has_everything_the_readme_test_command_needs() {
    let root = repo_root();
    let Some(head) = git(&root, &["rev-parse", "HEAD"]) else {
        println!(
            "SKIPPED a_fresh_clone_has_everything_the_readme_test_command_needs: {} is not a git \
             repository (or git is missing), so there is nothing to clone",
            root.display()
        );
        return;
    };

    // What the README says, and what CI runs.
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let command = readme_test_command(&readme);
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let ci_command = ci
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("cargo test"))
        .expect(".ci/run runs a `cargo test` command");
    assert_eq!(
        ci_command, command,
        ".ci/run must run exactly the README's test command"
    );

    // A clone of HEAD, alone in an empty folder.
    let empty = tempfile::tempdir().expect("a temp dir");
    let clone = empty.path().join("chorus");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks", "--no-checkout"])
        .arg(&root)
        .arg(&clone)
        .output()
        .expect("run git clone");
    assert!(
        out.status.success(),
        "git clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        git(&clone, &["checkout", "--quiet", "--detach", &head]).is_some(),
        "cannot check out {head} in the clone"
    );
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        1,
        "the clone has nothing beside it"
    );

    // Everything the tests read is tracked: the traces are in the clone.
    let traces = clone.join("merge/data/traces");
    for name in [
        "automerge-paper",
        "seph-blog1",
        "rustcode",
        "friendsforever",
        "clownschool",
    ] {
        assert!(
            traces.join(format!("{name}.json.gz")).is_file(),
            "{name} is not in the clone's merge/data/traces: is it committed?"
        );
    }
    assert!(
        std::fs::read_to_string(traces.join("README.md"))
            .is_ok_and(|r| r.contains("CC BY 4.0") && r.contains("Joseph Gentle")),
        "the traces' README keeps their attribution"
    );

    // The trace replays, built and run in the clone as the README's command would, with the
    // traces' override unset so they are found where the clone keeps them.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--locked", "-p", "chorus-merge", "--test", "traces"])
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CHORUS_TRACES")
        .output()
        .expect("run cargo test in the clone");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`cargo test -p chorus-merge --test traces` failed in a fresh clone:\n{stdout}\n{stderr}"
    );
    for test in ["automerge_paper", "friendsforever"] {
        assert!(
            stdout.contains(&format!("test {test} ... ok")),
            "{test} did not run in the clone:\n{stdout}"
        );
    }
}

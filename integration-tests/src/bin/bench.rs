//! `bench`: the side-by-side benchmark of chorus, rsync, Syncthing and Unison (issue 8).
//!
//! ```sh
//! cargo run --release -p chorus-integration-tests --bin bench -- --all      # everything, writes docs/benchmarks.md
//! cargo run --release -p chorus-integration-tests --bin bench -- --quick    # smoke run: small data, one run
//! cargo run --release -p chorus-integration-tests --bin bench -- --scenario latency --scenario update
//! ```
//!
//! Runs as root (nftables counts the bytes; missing tools are installed with apt-get).

use std::path::PathBuf;
use std::process::ExitCode;

use chorus_integration_tests::bench::{self, Options, SCENARIOS};

const USAGE: &str = "usage: bench (--all | --quick) [--scenario NAME]... [--tool NAME]... [--runs N] [--long-runs N] [--chorus PATH] [--work DIR] [--write-docs]

  --all            every scenario at full size, 3 runs each; writes docs/benchmarks.md and docs/plots
  --quick          every scenario (or those named) with small data and 1 run; report in the work dir
  --scenario NAME  only this scenario (repeatable): update, release, latency, initial-tree, big-file, scale, huge-file
  --runs N         runs per figure (default 3, or 1 with --quick)
  --long-runs N    runs of the long scenarios, 100k files and 4 GiB (default 1: 10 min or more a run)
  --chorus PATH    the chorus binary to test (default: cargo build --release -p chorus)
  --work DIR       data and scratch folders (default /tmp/chorus-bench; needs ~70 GB free for --all: the runs' folders are deleted only at the end)
  --tool NAME      only the tools whose names contain NAME (repeatable): chorus, rsync, syncthing, unison
  --keep-failed    keep the folders and logs of a failed run in the work dir
  --write-docs     write docs/benchmarks.md and docs/plots even for a partial or quick run
  --render FILE    measure nothing: render the results.json an earlier run saved in its work dir
                   (with --write-docs, into docs/); repeated, later files replace the scenarios
                   they measured";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        scenarios: Vec::new(),
        runs: None,
        long_runs: None,
        render: Vec::new(),
        chorus: None,
        work: PathBuf::from("/tmp/chorus-bench"),
        write_docs: false,
        tools: Vec::new(),
        keep_failed: false,
    };
    let mut all = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--all" => all = true,
            "--quick" => opts.quick = true,
            "--write-docs" => opts.write_docs = true,
            "--scenario" => {
                let s = value("--scenario")?;
                if !SCENARIOS.contains(&s.as_str()) {
                    return Err(format!(
                        "no scenario {s}; the scenarios are {}",
                        SCENARIOS.join(", ")
                    ));
                }
                opts.scenarios.push(s);
            }
            "--runs" => {
                opts.runs = Some(
                    value("--runs")?
                        .parse()
                        .map_err(|_| "--runs takes a number".to_owned())?,
                )
            }
            "--tool" => opts.tools.push(value("--tool")?),
            "--keep-failed" => opts.keep_failed = true,
            "--long-runs" => {
                opts.long_runs = Some(
                    value("--long-runs")?
                        .parse()
                        .map_err(|_| "--long-runs takes a number".to_owned())?,
                )
            }
            "--render" => opts.render.push(PathBuf::from(value("--render")?)),
            "--chorus" => opts.chorus = Some(PathBuf::from(value("--chorus")?)),
            "--work" => opts.work = PathBuf::from(value("--work")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !all && !opts.quick && opts.scenarios.is_empty() && opts.render.is_empty() {
        return Err("say --all, --quick or --scenario NAME".into());
    }
    if all && !opts.quick && opts.scenarios.is_empty() {
        opts.write_docs = true;
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = if opts.render.is_empty() {
        bench::run(opts)
    } else {
        bench::render(&opts.render.clone(), &opts)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

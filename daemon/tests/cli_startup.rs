//! `chorus run` as users start it, with real processes: a busy port or a second daemon on the
//! share is reported before anything says the share is being kept in sync; `--listen` and
//! config.toml's `listen` take `IP:PORT`, `[IPV6]:PORT` and bare ports besides multiaddrs, and
//! refuse anything else with the right form as the example; and a healthy start and transfer,
//! in a group formed the README's way, log no WARN or ERROR and no colour codes.

mod support;

use std::process::{Output, Stdio};

use support::group::{Group, ok, wait_until};
use support::procs::{chorus, free_port};

/// stdout and stderr together.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `chorus run ARGS` that must stop by itself (a refusal): its output.
fn run_refused(args: &[&str]) -> Output {
    let mut child = chorus()
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("chorus run to stop", || child.try_wait().unwrap().is_some());
    child.wait_with_output().unwrap()
}

#[test]
fn a_busy_port_or_a_second_daemon_is_reported_before_it_claims_to_run() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    // The first daemon did say it keeps the share in sync (so the check below can fail).
    wait_until("the first daemon's start-up message", || {
        g.log(a).contains("keeping")
    });

    let out = run_refused(&[g.path(a)]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(text.contains("another chorus daemon"), "{text}");
    assert!(
        !text.contains("keeping"),
        "it claimed to run first:\n{text}"
    );

    // A second share on a port something else holds.
    let port = free_port();
    let holder = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let b = g.at("b");
    ok(&["init", b.to_str().unwrap()]);
    let listen = format!("/ip4/0.0.0.0/tcp/{port}");
    let out = run_refused(&[b.to_str().unwrap(), "--listen", &listen]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(text.contains(&format!("port {port} is in use")), "{text}");
    assert!(
        !text.contains("keeping"),
        "it claimed to run first:\n{text}"
    );
    drop(holder);
}

/// The addresses node `i` listens on, from `chorus invite --json`.
fn addresses(g: &Group, i: usize) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&g.ask(i, &["invite", "--json"])).unwrap();
    v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn listen_takes_ip_port_and_bare_ports_and_refuses_the_rest_with_an_example() {
    let mut g = Group::new();
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut forms = vec![
        (format!("127.0.0.1:{}", free_port()), "/ip4/127.0.0.1/tcp/"),
        (format!("{}", free_port()), "/ip4/"),
    ];
    if ipv6 {
        forms.push((format!("[::1]:{}", free_port()), "/ip6/::1/tcp/"));
    } else {
        println!("SKIPPED the [::1]:PORT form: this machine has no IPv6 loopback");
    }
    for (k, (form, want)) in forms.into_iter().enumerate() {
        let path = g.at(&format!("s{k}"));
        ok(&["init", path.to_str().unwrap()]);
        let port = form.rsplit(':').next().unwrap().to_owned();
        let i = g.start_with(path, Vec::new(), &["--listen", &form]);
        let addrs = addresses(&g, i);
        assert!(
            addrs
                .iter()
                .any(|a| a.starts_with(want) && a.contains(&format!("/tcp/{port}/"))),
            "--listen {form}: listening on {addrs:?}"
        );
    }

    for bad in [
        "localhost:7000",
        "127.0.0.1",
        "/ip4/127.0.0.1/udp/7000",
        "seven",
    ] {
        let out = run_refused(&[g.path(0), "--listen", bad]);
        assert_eq!(out.status.code(), Some(2), "--listen {bad}: {}", said(&out));
        let text = said(&out);
        assert!(
            text.contains("/ip4/0.0.0.0/tcp/7000") && text.contains("127.0.0.1:7000"),
            "--listen {bad} must show the right forms: {text}"
        );
    }

    // config.toml's `listen` takes the same forms.
    let c = g.at("c");
    ok(&["init", c.to_str().unwrap()]);
    let config = c.join(".chorus/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let with = |listen: &str| {
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("listen") {
                    format!("listen = [\"{listen}\"]")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&config, lines.join("\n") + "\n").unwrap();
    };
    with("nowhere:port");
    let out = run_refused(&[c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let refused = said(&out);
    assert!(
        refused.contains("config.toml") && refused.contains("127.0.0.1:7000"),
        "{refused}"
    );
    with(&format!("127.0.0.1:{port}"));
    let i = g.start(c, Vec::new());
    assert!(
        addresses(&g, i).contains(&format!(
            "/ip4/127.0.0.1/tcp/{port}/p2p/{}",
            g.status(i)["peer_id"].as_str().unwrap()
        )),
        "{:?}",
        addresses(&g, i)
    );
}

#[test]
fn a_healthy_start_and_transfer_log_no_warnings_and_no_colour_codes() {
    let mut g = Group::new();
    // One node as a user starts it (no log filter), one with `RUST_LOG=info`, which used to
    // let openraft's routine warnings through.
    let a = g.init(g.at("a"));
    let b = g.join_with(a, g.at("b"), vec![("RUST_LOG".into(), "info".into())]);
    let c = g.join(a, g.at("c"));
    let big = chorus_sync::testing::noise(1, 3 << 20);
    std::fs::write(g.file(b, "big.bin"), &big).unwrap();
    std::fs::write(g.file(a, "notes.txt"), "hello\n").unwrap();
    g.wait_everywhere("big.bin", &big);
    g.wait_everywhere("notes.txt", b"hello\n");
    g.wait_converged();
    for i in [a, b, c] {
        g.stop(i);
    }
    for i in [a, b, c] {
        let log = g.log(i);
        assert!(log.contains("keeping"), "node {i} started:\n{log}");
        for line in log.lines() {
            assert!(
                !line.contains(" WARN ") && !line.contains(" ERROR "),
                "node {i} logged a warning or an error in a healthy run:\n{line}\n\n{log}"
            );
            assert!(
                !line.contains('\x1b'),
                "node {i} logged colour codes: {line:?}"
            );
        }
    }
}

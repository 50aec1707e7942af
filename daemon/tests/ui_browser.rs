//! The web page (`chorus ui`) in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) against real daemons, in a group formed as README.md forms one.
//! The page opens with the token `chorus ui` prints and is refused without it; an edit made on
//! another machine appears in the history; a conflict shows what won beside what was displaced,
//! and its redo buttons bring the displaced side back on every machine, in place or beside the
//! file; pause, resume, undo and restore work from the page, as does an invite, whose token a
//! new machine joins with. Each view is saved as a screenshot under the test's target dir
//! (`ui-screenshots/`). Where Chromium or chromedriver is not installed, the browser test says
//! SKIPPED (`.ci/run` installs both).
//!
//! Without a browser: what a request that does not come from the page gets (no token, a
//! cookie alone for a change, another origin, a rebound host name).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;
use support::group::{Group, LIVENESS, PLAN, cli_in, ok_in, wait_until, wait_until_telling};
use support::procs::free_port;

/// `chorus ui` run in node `i`'s folder, as a user runs it: the address with the token.
fn ui_url(g: &Group, i: usize) -> String {
    let out = ok_in(Some(&g.nodes[i].path), &["ui"]);
    let url = out.trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "`chorus ui` printed {out:?}"
    );
    url
}

/// The page's origin (`http://127.0.0.1:PORT`) and its token.
fn split(url: &str) -> (String, String) {
    let (base, token) = url.split_once("/?token=").expect("a token in the address");
    (base.to_owned(), token.to_owned())
}

/// One HTTP/1.1 request on a fresh connection: the status and the body.
fn http(base: &str, request: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the page");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

#[test]
fn requests_that_do_not_come_from_the_page_get_nothing() {
    let mut g = Group::new();
    let a = g.init(g.at("a"));
    let url = ui_url(&g, a);
    let (base, token) = split(&url);
    let host = base.trim_start_matches("http://").to_owned();
    // Asked twice, the daemon answers the same page.
    assert_eq!(ui_url(&g, a), url);
    // `--open` hands the browser a private file that redirects to the page, never the token
    // itself (a command line is in every user's `ps`).
    let bin = g.at("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\necho \"$1\" > {}\n",
            bin.join("opened").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = support::procs::chorus()
        .args(["ui", "--open", "--folder", g.path(a)])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), url);
    let opened = std::fs::read_to_string(bin.join("opened")).unwrap();
    let opened = Path::new(opened.trim());
    assert!(
        !opened.to_string_lossy().contains(&token),
        "{}",
        opened.display()
    );
    let redirect = std::fs::read_to_string(opened).unwrap();
    assert!(redirect.contains(&format!("url={url}")), "{redirect}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(opened).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the redirect file is private");
    let get = |path: &str, extra: &str| {
        http(
            &base,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    let post = |path: &str, extra: &str| {
        http(
            &base,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ),
        )
    };
    for path in [
        "/",
        "/app.js",
        "/v1/status",
        "/v1/events",
        "/v1/versions",
        "/metrics",
    ] {
        assert_eq!(get(path, "").0, 401, "{path} without the token");
        assert_eq!(
            get(path, "Cookie: chorus-1=nothing\r\n").0,
            401,
            "{path} with a wrong cookie"
        );
    }
    let cookie = format!(
        "Cookie: chorus-{}={token}\r\n",
        host.rsplit(':').next().unwrap()
    );
    let (status, body) = get("/v1/status", &cookie);
    assert_eq!(status, 200, "{body}");
    let header = format!("X-Chorus-Token: {token}\r\n");
    // A change with the cookie alone is what a forged cross-site form sends.
    assert_eq!(post("/v1/pause", &cookie).0, 403);
    assert_eq!(
        post(
            "/v1/pause",
            &format!("{header}Origin: http://evil.example\r\n")
        )
        .0,
        403,
        "another origin"
    );
    assert!(
        !g.status(a)["paused"].as_bool().unwrap_or(false),
        "nothing paused it"
    );
    // The page cannot mint its own address; only the socket starts it.
    assert_eq!(post("/v1/ui", &header).0, 404);
    // A DNS name rebound to 127.0.0.1 is not this page's host, token or not.
    let (status, _) = http(
        &base,
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: attacker.example\r\n{header}Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403);
    // No CORS: a preflight gets no Access-Control-Allow-Origin.
    let (status, _) = http(
        &base,
        &format!(
            "OPTIONS /v1/pause HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 405);
    let (status, body) = post("/v1/pause", &header);
    assert_eq!(status, 200, "{body}");
    assert_eq!(g.status(a)["paused"], true);

    // `ui_listen` serves the page from the start, at the port given; a new token each start.
    let port = free_port();
    g.set_config(a, "ui_listen", &format!("\"127.0.0.1:{port}\""));
    g.restart(a);
    let (status, _) = http(
        &format!("http://127.0.0.1:{port}"),
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{header}Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 401, "the old token is void after a restart");
    let again = ui_url(&g, a);
    assert!(
        again.starts_with(&format!("http://127.0.0.1:{port}/?token=")),
        "{again}"
    );
    let (_, token) = split(&again);
    let (status, body) = http(
        &format!("http://127.0.0.1:{port}"),
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost:{port}\r\nX-Chorus-Token: {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
    // An address off loopback without a token is refused before anything is served.
    g.stop(a);
    g.set_config(a, "ui_listen", "\"0.0.0.0:0\"");
    let out = cli_in(None, &["run", g.path(a)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ui_token"), "{err}");
}

/// chromedriver and a headless Chromium session; both end with it.
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

/// The program at `name` on PATH (or as given by `env`), if there is one.
fn program(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// A browser, or `None` (and why) where Chromium or chromedriver is missing.
    fn start() -> Result<Browser, String> {
        let chromium = program("CHORUS_CHROMIUM", "chromium")
            .ok_or("no `chromium` on PATH (Debian: apt-get install chromium chromium-driver)")?;
        let chromedriver = program("CHORUS_CHROMEDRIVER", "chromedriver")
            .ok_or("no `chromedriver` on PATH (Debian: apt-get install chromium-driver)")?;
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", chromedriver.display()))?;
        let profile = tempfile::tempdir().expect("a profile dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                // As root (CI) Chromium needs --no-sandbox; the rest keep it off the network.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let start = Instant::now();
        let client = loop {
            let attempt = rt.block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match attempt {
                Ok(c) => break c,
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    return Err(format!("chromedriver did not start a session: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Ok(Browser {
            rt,
            client: Some(client),
            driver,
            shots,
            _profile: profile,
        })
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).expect("navigate");
    }

    /// The value of a script run in the page (`return ...`).
    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the script returns true.
    fn wait_js(&self, what: &str, script: &str) {
        let start = Instant::now();
        loop {
            if self.js(script) == Value::Bool(true) {
                return;
            }
            assert!(
                start.elapsed() < LIVENESS,
                "the page never showed {what}; it shows:\n{}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector({css:?}); return e ? e.innerText : '(no {css})';"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// A real click (WebDriver's) on the element `css` selects.
    fn click(&self, css: &str) {
        self.rt
            .block_on(async {
                let e = self.c().find(Locator::Css(css)).await?;
                e.click().await
            })
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Presses the button `css` selects with the page's own `click()`, found and pressed in
    /// one turn of its event loop. The conflicts list is redrawn whenever the daemon reports a
    /// change (a redo displaces something in turn and a new card goes on top), so WebDriver's
    /// click, which finds the button and then clicks where it was on screen, can hit a
    /// replaced button or the card that moved into its place.
    fn press(&self, css: &str) {
        let pressed = self.js(&format!(
            "const b = document.querySelector({css:?}); \
             if (!b || b.disabled) return false; b.click(); return true"
        ));
        assert_eq!(pressed, Value::Bool(true), "no button to press at {css}");
    }

    /// Types `text` into the field `css` selects (after clearing it).
    fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                let e = self.c().find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    fn resize(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.c().set_window_size(width, height))
            .expect("resize");
    }

    /// Saves the page as `NAME.png` in the screenshots dir.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn text_of(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until every node's `rel` satisfies `cond`.
fn wait_all(g: &Group, rel: &str, what: &str, cond: impl Fn(&str) -> bool) {
    for i in 0..g.nodes.len() {
        let f = g.file(i, rel);
        wait_until(&format!("{what} on node {i}"), || cond(&text_of(&f)));
    }
}

#[test]
fn the_page_shows_the_group_history_and_conflicts_and_acts_on_them() {
    let browser = match Browser::start() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED: the web page's browser test needs Chromium: {why}");
            return;
        }
    };
    let (mut g, a, b) = Group::with_plan();
    let base = PLAN;

    // Refused without the token, in the browser too.
    let url = ui_url(&g, a);
    let (origin, _) = split(&url);
    browser.goto(&format!("{origin}/"));
    assert!(
        browser.text("body").contains("needs its token"),
        "{}",
        browser.text("body")
    );
    // Opened with it: the token moves into a cookie and out of the address bar.
    browser.goto(&url);
    browser.wait_js(
        "both members",
        "return document.querySelectorAll('#members tbody tr').length === 2",
    );
    let shown = browser.js("return location.href");
    assert_eq!(
        shown,
        Value::String(format!("{origin}/")),
        "the token left the address"
    );
    browser.wait_js(
        "the live stream",
        "return document.getElementById('live').textContent === 'live'",
    );
    let members = browser.text("#members");
    for i in [a, b] {
        let id = g.status(i)["peer_id"].as_str().unwrap().to_owned();
        assert!(members.contains(&id[id.len() - 8..]), "{id} in\n{members}");
    }
    browser.wait_js(
        "how b is reached",
        "return document.getElementById('members').innerText.includes('direct')",
    );

    // An edit on the other machine appears in the history, by the event stream.
    browser.goto(&format!("{origin}/#history"));
    let before = g.head(a);
    std::fs::write(g.file(b, "notes.txt"), base.replace("kickoff", "launch")).unwrap();
    wait_until("a accepts b's edit", || g.head(a) != before);
    let accepted = Instant::now();
    let number = g.head(a);
    browser.wait_js(
        "b's version in the history",
        &format!("return !!document.querySelector('#timeline [data-version=\"{number}\"]')"),
    );
    let shown_after = accepted.elapsed();
    eprintln!("version {number} shown {shown_after:?} after node a had it");
    assert!(
        shown_after < Duration::from_secs(1),
        "the history showed b's edit {shown_after:?} after a accepted it (the issue's bound: 1 s)"
    );
    // Opened: what it changed, and the file's diff against the version before.
    browser.click(&format!("#timeline [data-version=\"{number}\"] > button"));
    browser.wait_js(
        "the changed path",
        &format!("return !!document.querySelector('#timeline [data-version=\"{number}\"] [data-diff=\"notes.txt\"]')"),
    );
    browser.click(&format!(
        "#timeline [data-version=\"{number}\"] [data-diff=\"notes.txt\"]"
    ));
    browser.wait_js(
        "the diff",
        "return !!document.querySelector('#timeline .diff')",
    );
    let diff = browser.text("#timeline .diff");
    assert!(
        diff.contains("-what: kickoff") && diff.contains("+what: launch"),
        "{diff}"
    );
    browser.screenshot("history");
    // A member names a file as markup would (a hostile or careless one): the page shows the
    // name as text, runs nothing, and diffs the new file against its absence.
    let hostile = "<img src=x onerror=\"document.title='owned'\">.txt";
    std::fs::write(g.file(b, hostile), "line one\n").unwrap();
    let before_hostile = g.head(a);
    wait_until("the oddly named file accepted", || {
        g.head(a) != before_hostile
    });
    let added = g.head(a);
    browser.wait_js(
        "the version adding it",
        &format!("return !!document.querySelector('#timeline [data-version=\"{added}\"]')"),
    );
    browser.click(&format!("#timeline [data-version=\"{added}\"] > button"));
    browser.wait_js(
        "its diff button",
        &format!(
            "return !!document.querySelector('#timeline [data-version=\"{added}\"] [data-diff]')"
        ),
    );
    let listed = browser.text(&format!("#timeline [data-version=\"{added}\"]"));
    assert!(
        listed.contains(hostile),
        "the name is shown as text: {listed}"
    );
    browser.click(&format!("#timeline [data-version=\"{added}\"] [data-diff]"));
    browser.wait_js(
        "the new file's diff",
        &format!("return !!document.querySelector('#timeline [data-version=\"{added}\"] .diff')"),
    );
    assert!(
        browser
            .text(&format!("#timeline [data-version=\"{added}\"] .diff"))
            .contains("+line one")
    );
    assert_eq!(
        browser.js("return [document.querySelectorAll('#timeline img').length, document.title]"),
        serde_json::json!([0, "chorus"]),
        "no markup from a file name ran"
    );
    // The compare form: any file between any two versions.
    browser.type_into("#compare-path", "notes.txt");
    browser.click(&format!("#compare-from option[value=\"{before}\"]"));
    browser.click(&format!("#compare-to option[value=\"{number}\"]"));
    browser.click("#compare button[type=submit]");
    browser.wait_js(
        "the compared diff",
        "return !!document.querySelector('#compare-out .diff')",
    );
    let compared = browser.text("#compare-out .diff");
    assert!(compared.contains("+what: launch"), "{compared}");

    // A conflict: b offline (paused) while both change one line and one binary file.
    let launched = base.replace("kickoff", "launch");
    let (ours, theirs) = (
        launched.replace("monday", "tuesday"),
        launched.replace("monday", "wednesday"),
    );
    g.concurrent_edits(
        a,
        b,
        &[
            ("notes.txt", ours.as_bytes()),
            ("data.bin", &[0xffu8; 1000]),
        ],
        &[
            ("notes.txt", theirs.as_bytes()),
            ("data.bin", &[0xfeu8; 2000]),
        ],
    );
    g.ask(b, &["resume"]);
    browser.goto(&format!("{origin}/#conflicts"));
    browser.wait_js(
        "two conflicts",
        "return document.querySelectorAll('#conflicts article').length >= 2",
    );
    g.wait_converged();
    let merged = text_of(&g.file(a, "notes.txt"));
    let (won, lost) = if merged.contains("when: tuesday") {
        ("tuesday", "wednesday")
    } else {
        ("wednesday", "tuesday")
    };
    let hunk = browser.js(
        "const c = [...document.querySelectorAll('#conflicts article')].find(a => a.querySelector('h3').innerText.includes('hunk')); \
         return c ? {seq: c.dataset.seq, won: c.querySelector('.kept').innerText, lost: c.querySelector('.displaced').innerText} : null",
    );
    assert!(
        hunk["won"]
            .as_str()
            .unwrap()
            .contains(&format!("when: {won}"))
            && hunk["lost"]
                .as_str()
                .unwrap()
                .contains(&format!("when: {lost}")),
        "both sides side by side: {hunk}"
    );
    browser.screenshot("conflicts");
    // Redo in place: the displaced line is back on every machine.
    let seq = hunk["seq"].as_str().unwrap().to_owned();
    browser.press(&format!(
        "#conflicts article[data-seq=\"{seq}\"] [data-redo=\"in-place\"]"
    ));
    wait_all(&g, "notes.txt", "the displaced line back", |t| {
        t.contains(&format!("when: {lost}"))
    });
    // Redo beside: the displaced binary file comes back next to what won, which stays.
    let whole = browser.js(
        "const c = [...document.querySelectorAll('#conflicts article')].find(a => a.querySelector('h3').innerText.includes('whole')); \
         return c ? c.dataset.seq : null",
    );
    let whole = whole.as_str().expect("a whole-file conflict").to_owned();
    browser.press(&format!(
        "#conflicts article[data-seq=\"{whole}\"] [data-redo=\"beside\"]"
    ));
    browser.wait_js(
        "what the beside redo answered",
        &format!(
            "const t = document.getElementById('toast'); \
             return t.innerText.includes('put #{whole} beside') || t.className.includes('bad')"
        ),
    );
    let answered = browser.text("#toast");
    assert!(
        answered.contains(&format!("put #{whole} beside")),
        "the page said: {answered}"
    );
    let winner_bytes = std::fs::read(g.file(a, "data.bin")).unwrap();
    let loser_bytes = if winner_bytes == vec![0xffu8; 1000] {
        vec![0xfeu8; 2000]
    } else {
        vec![0xffu8; 1000]
    };
    for i in 0..g.nodes.len() {
        let dir = g.nodes[i].path.clone();
        // What the folder holds is told on a timeout, to tell a copy never written from one
        // written and removed.
        let listing = || -> Vec<(String, u64)> {
            std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            let len = e.metadata().map_or(0, |m| m.len());
                            (e.file_name().to_string_lossy().into_owned(), len)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        wait_until_telling(
            &format!("data.bin's displaced side beside it on node {i}"),
            || {
                std::fs::read_dir(&dir).is_ok_and(|entries| {
                    entries.flatten().any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("data.bin.redo-")
                            && std::fs::read(e.path()).is_ok_and(|b| b == loser_bytes)
                    })
                })
            },
            || {
                format!(
                    "it has {} bytes, the winner {}; the folder holds {:?}; `chorus conflicts` says {}",
                    loser_bytes.len(),
                    winner_bytes.len(),
                    listing(),
                    g.ask(i, &["conflicts"])
                )
            },
        );
        assert_eq!(
            std::fs::read(g.file(i, "data.bin")).unwrap(),
            winner_bytes,
            "what won stays"
        );
    }

    // Pause and resume from the page: an edit made while paused goes out after resuming.
    browser.goto(&format!("{origin}/#actions"));
    browser.wait_js(
        "the pause button",
        "return !document.getElementById('pause').disabled",
    );
    browser.click("#pause");
    wait_until("a paused", || g.status(a)["paused"] == true);
    browser.wait_js(
        "the page says paused",
        "return document.getElementById('pause-state').innerText.startsWith('Paused')",
    );
    std::fs::write(g.file(a, "while-paused.txt"), "written while paused\n").unwrap();
    browser.click("#resume");
    wait_until("a resumed", || g.status(a)["paused"] == false);
    g.wait_everywhere("while-paused.txt", b"written while paused\n");
    g.wait_converged();

    // Restore one file to an older version from the page.
    let first = g.ask(a, &["log", "--json"]);
    let versions: Vec<Value> = serde_json::from_str(&first).unwrap();
    let with_base = versions
        .iter()
        .map(|v| v["number"].as_str().unwrap().to_owned())
        .find(|n| {
            let out = cli_in(None, &["show", n, "notes.txt", "--folder", g.path(a)]);
            String::from_utf8_lossy(&out.stdout) == base
        })
        .expect("a version with the first notes");
    browser.wait_js(
        "the version in the restore picker",
        &format!("return [...document.getElementById('restore-version').options].some(o => o.value === '{with_base}')"),
    );
    browser.click(&format!("#restore-version option[value=\"{with_base}\"]"));
    browser.type_into("#restore-path", "notes.txt");
    browser.click("#restore button[type=submit]");
    wait_all(&g, "notes.txt", "notes.txt restored", |t| t == base);
    // Undo from the page takes the restore back.
    g.wait_converged();
    browser.click("#undo");
    wait_all(&g, "notes.txt", "the restore undone", |t| {
        t != base && t.contains("launch")
    });
    g.wait_converged();

    // An invite from the page, with its QR code; a new machine joins with the token.
    browser.click("#invite button[type=submit]");
    browser.wait_js(
        "the invite token",
        "return document.getElementById('invite-token').value.startsWith('chorus1')",
    );
    browser.wait_js(
        "the QR code",
        "const i = document.getElementById('invite-qr'); return i.complete && i.naturalWidth > 0",
    );
    browser.js(
        "document.getElementById('toast').className = ''; document.getElementById('invite').scrollIntoView(); return true",
    );
    browser.screenshot("actions");
    browser.click("#invite-copy");
    browser.wait_js(
        "the copy said",
        "return document.getElementById('toast').innerText === 'token copied'",
    );
    let token = browser.js("return document.getElementById('invite-token').value");
    let c_path = g.at("c");
    ok_in(
        None,
        &["join", token.as_str().unwrap(), c_path.to_str().unwrap()],
    );
    let c = g.start(c_path, Vec::new());
    g.wait_everywhere("while-paused.txt", b"written while paused\n");
    assert!(g.nodes.len() == 3 && c == 2);
    browser.goto(&format!("{origin}/#group"));
    browser.wait_js(
        "three members",
        "return document.querySelectorAll('#members tbody tr').length === 3",
    );
    browser.screenshot("group");
    // A version arriving in pieces: b sends slowly (its bandwidth limit), and the page shows the
    // chunks a fetches with a progress bar.
    g.set_config(b, "bandwidth_limit", "2000000");
    g.restart(b);
    g.wait_converged();
    let big = chorus_sync::testing::noise(18, 24 << 20);
    std::fs::write(g.file(b, "big.bin"), &big).unwrap();
    browser.wait_js(
        "a transfer's progress bar",
        "const p = document.querySelector('#transfers progress'); return !!p && p.value > 0 && p.value < p.max",
    );
    browser.screenshot("transfers");
    g.wait_everywhere("big.bin", &big);
    // Readable on a phone: nothing wider than the screen but the scrolled table.
    browser.resize(390, 844);
    browser.wait_js("the phone layout", "return window.innerWidth <= 400");
    let overflow =
        browser.js("return document.documentElement.scrollWidth <= window.innerWidth + 1");
    assert_eq!(overflow, Value::Bool(true), "the page fits a phone's width");
    browser.screenshot("group-phone");
    // Keyboard: the views are links reached with Tab and followed with Enter.
    let focusable = browser.js(
        "return [...document.querySelectorAll('nav a, button, input, select, textarea')].every(e => e.tabIndex >= 0)",
    );
    assert_eq!(focusable, Value::Bool(true));
    // A version that adds many files (written while paused: one scan, one version) lists the
    // first 500 and says how many more.
    let many = g.file(a, "many");
    g.ask(a, &["pause"]);
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..600 {
        std::fs::write(many.join(format!("f{i:03}.txt")), format!("{i}\n")).unwrap();
    }
    g.ask(a, &["resume"]);
    g.wait_everywhere("many/f599.txt", b"599\n");
    g.wait_converged();
    let newest = g.head(a);
    browser.resize(1200, 900);
    browser.goto(&format!("{origin}/#history"));
    let at = format!("#timeline [data-version=\"{newest}\"]");
    browser.wait_js(
        "the version adding many files",
        &format!("return !!document.querySelector('{at}')"),
    );
    browser.click(&format!("{at} > button"));
    browser.wait_js(
        "its changes",
        &format!("return document.querySelectorAll('{at} .changes li').length > 1"),
    );
    let rows = browser.js(&format!(
        "return document.querySelectorAll('{at} .changes li').length"
    ));
    assert_eq!(
        rows,
        serde_json::json!(501),
        "500 paths and a line for the rest"
    );
    let listed = browser.text(&format!("{at} .changes"));
    // 601 paths: the folder and its 600 files.
    assert!(listed.contains("and 101 more paths"), "{listed}");

    // Every daemon lived through all of it.
    for i in 0..g.nodes.len() {
        assert!(g.running(i), "node {i}'s daemon exited:\n{}", g.log(i));
    }
}

//! The web page: `chorus ui` (or `ui_listen` in config.toml) serves a small page and the
//! socket's own API over HTTP on 127.0.0.1, at a random port unless configured. One router,
//! two listeners: every `/v1/...` request is answered by the socket's [`server::handle`], after
//! the [`auth::Gate`] has checked the page's token; the page's files are built into the binary
//! ([`assets`]). The server runs on the node's runtime until the node stops.

pub mod assets;
pub mod auth;
pub mod qr;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::routes;
use super::server::{self, Body, Channels, PageServer};
use crate::config::resolve::UiSettings;
use auth::{Gate, Verdict};

/// Connections served at once; more are closed (a browser opens about six).
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a request's headers: a client that opens
/// connections and sends nothing does not hold them.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(
        "cannot serve the web page at {addr}: {source}; pick another `ui_listen` in config.toml, or leave it empty for a random port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Starts the page's server once (at start-up when configured, else when `chorus ui` first
/// asks) and knows its address; stops it with the node.
pub struct Launcher {
    settings: UiSettings,
    token: String,
    running: Mutex<Option<Running>>,
}

struct Running {
    url: String,
    task: JoinHandle<()>,
}

impl Launcher {
    /// The configured token, or a random one (192 bits) for this run of the daemon.
    pub fn new(settings: UiSettings) -> Launcher {
        let token = settings
            .token
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 24]>()));
        Launcher {
            settings,
            token,
            running: Mutex::new(None),
        }
    }

    /// Whether the page is to be served from the start.
    pub fn configured(&self) -> bool {
        self.settings.listen.is_some()
    }

    /// Serves the page (if not already) and answers its address with the token, as the user
    /// opens it. Called on the node's runtime.
    pub fn start(&self, channels: Channels) -> Result<String, UiError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.as_ref().filter(|r| !r.task.is_finished()) {
            return Ok(r.url.clone());
        }
        let addr = self
            .settings
            .listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let bind_err = |source| UiError::Bind { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let local = std_listener.local_addr().map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
        // The address a browser on this machine opens: loopback where all interfaces listen.
        let shown = if local.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, local.port()))
        } else {
            local
        };
        let url = format!("http://{shown}/?token={}", self.token);
        let gate = Gate::new(self.token.clone(), local.port(), local.ip().is_loopback());
        tracing::info!("web page served at http://{shown}/ (`chorus ui` prints it with its token)");
        *running = Some(Running {
            url: url.clone(),
            task: tokio::spawn(serve(listener, gate, channels)),
        });
        Ok(url)
    }

    /// Stops serving (the node is stopping).
    pub fn stop(&self) {
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.task.abort();
        }
    }
}

impl PageServer for Launcher {
    fn start(&self, channels: Channels) -> Result<String, String> {
        Launcher::start(self, channels).map_err(|e| e.to_string())
    }
}

/// Accepts connections until aborted; each is served on a task of this one's, so they end
/// with it.
async fn serve(listener: TcpListener, gate: Gate, channels: Channels) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("web page: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if connections.len() >= MAX_CONNECTIONS {
                    // Dropped: the browser retries; the page never needs this many.
                    continue;
                }
                let (gate, channels) = (gate.clone(), channels.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (gate, channels) = (gate.clone(), channels.clone());
                        async move { Ok::<_, Infallible>(handle(req, &gate, channels).await) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("web page: connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One request: the gate first, then the page's files, a QR code, or the socket's API.
async fn handle(req: Request<Incoming>, gate: &Gate, channels: Channels) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().as_str().to_owned();
    let mut resp = match gate.check(&method, &path, query.as_deref(), req.headers()) {
        Verdict::Refuse(status, message) => refusal(status, &path, &message),
        Verdict::Enter { location, cookie } => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            insert(&mut r, header::LOCATION, &location);
            insert(&mut r, header::SET_COOKIE, &cookie);
            r
        }
        Verdict::Allow => match path.as_str() {
            "/" | "/index.html" if method == "GET" || method == "HEAD" => {
                let page = assets::INDEX.replace("{{TOKEN}}", gate.token());
                let mut r = bytes(200, "text/html; charset=utf-8", page.into_bytes());
                insert(&mut r, header::CONTENT_SECURITY_POLICY, CSP);
                r
            }
            "/ui/qr" => match routes::query_value(query.as_deref(), "text")
                .and_then(|t| qr::svg(&t).map_err(|e| routes::error(400, &e)))
            {
                Ok(svg) => bytes(200, "image/svg+xml", svg.into_bytes()),
                Err(reply) => server::full(reply),
            },
            // Starting the page is the socket's: a page cannot mint its own address.
            "/v1/ui" => server::full(routes::error(404, "no such endpoint: /v1/ui")),
            p => match assets::get(p).filter(|_| method == "GET") {
                Some(a) => bytes(200, a.content_type, a.body.to_vec()),
                None => server::handle(req, channels).await,
            },
        },
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// What the page may load: only its own files; no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A refusal: JSON for the API, a short page for a browser.
fn refusal(status: u16, path: &str, message: &str) -> Response<Body> {
    if path.starts_with("/v1/") || path == "/metrics" {
        return server::full(routes::error(status, message));
    }
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>chorus</title><p>{}</p>\n",
        escape(message)
    );
    bytes(status, "text/html; charset=utf-8", page.into_bytes())
}

/// Text made safe inside HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    server::full(routes::Reply {
        status,
        content_type,
        body,
    })
}

fn empty() -> Body {
    BodyExt::boxed(Full::new(Bytes::new()))
}

fn insert(r: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

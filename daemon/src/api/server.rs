//! Serves the socket: binds `<state dir>/api.sock` with mode 0600 and answers each HTTP/1.1
//! connection: reads from the latest [`Snapshot`] the driver published, `POST`s as
//! [`Command`]s queued to the driver's loop (which answers each), and `/v1/events` as a stream
//! of server-sent events from the driver's broadcast.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{Command, Event, Snapshot, routes, socket_path};

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "another chorus daemon is already serving {0}: stop it first, or give this one another --state-dir"
    )]
    Busy(PathBuf),
    #[error(
        "the local socket's path {0} is longer than a Unix socket allows ({MAX_PATH} bytes): use a shorter --state-dir"
    )]
    TooLong(PathBuf),
    #[error(
        "cannot create the local socket {path}: {source}; check that the state dir is writable"
    )]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The longest socket path Linux takes (`sun_path` is 108 bytes, the last one a NUL); the
/// temporary name the socket is bound under is 4 bytes longer.
const MAX_PATH: usize = 107;

/// Binds the socket of `state_dir`, mode 0600. A socket file left by a daemon that is gone is
/// removed first; one that a live daemon answers on is left alone.
pub fn bind(state_dir: &Path) -> Result<UnixListener, ServeError> {
    let path = socket_path(state_dir);
    let bind_err = |source| ServeError::Bind {
        path: path.clone(),
        source,
    };
    if path.as_os_str().len() + ".tmp".len() > MAX_PATH {
        return Err(ServeError::TooLong(path));
    }
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(ServeError::Busy(path));
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    // Bound under a temporary name and made 0600 before it takes the real name, so the socket
    // is never reachable with the umask's wider mode.
    let tmp = path.with_extension("sock.tmp");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(bind_err)?;
    Ok(listener)
}

/// What the server answers from: the driver's latest snapshot, its command queue and its event
/// feed.
#[derive(Clone)]
pub struct Channels {
    pub snapshots: watch::Receiver<Snapshot>,
    pub commands: mpsc::Sender<Command>,
    pub events: broadcast::Sender<Event>,
    /// The web page's server, which `POST /v1/ui` starts.
    pub ui: std::sync::Arc<dyn PageServer>,
}

/// What serves the web page (`ui::Launcher`), as the socket's `POST /v1/ui` sees it: the page
/// listener imports this router, so the router knows it only by this.
pub trait PageServer: Send + Sync {
    /// Serves the page if it is not served yet; its address with the token, or why not.
    fn start(&self, channels: Channels) -> Result<String, String>;
}

/// How long a command may take (a restore of a large tree writes it all).
const COMMAND_WITHIN: Duration = Duration::from_secs(120);
/// The largest request body taken.
const MAX_BODY: usize = 64 << 10;
/// An idle event stream gets a comment this often, so clients and proxies see it alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// Accepts connections until the task is dropped; each is served on its own task.
pub async fn serve(listener: UnixListener, channels: Channels) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("local socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let channels = channels.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let channels = channels.clone();
                async move { Ok::<_, Infallible>(handle(req, channels).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("local socket: connection ended: {e}");
            }
        });
    }
}

/// Answers one request of the API (both listeners').
pub(super) async fn handle(req: Request<Incoming>, ch: Channels) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    if path == "/v1/ui" {
        if method != "POST" {
            return full(routes::error(405, "/v1/ui answers POST only"));
        }
        return match ch.ui.start(ch.clone()) {
            Ok(url) => full(routes::json(200, &serde_json::json!({ "url": url }))),
            Err(e) => full(routes::error(500, &e)),
        };
    }
    if routes::is_command(&path) {
        if method != "POST" {
            return full(routes::error(405, &format!("{path} answers POST only")));
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return full(routes::error(
                    413,
                    &format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                ));
            }
        };
        let request = match routes::parse_command(&path, &body) {
            Ok(r) => r,
            Err(reply) => return full(reply),
        };
        return full(ask(&ch, request).await);
    }
    if path == "/v1/diff" {
        if method != "GET" {
            return full(routes::error(405, "/v1/diff answers GET only"));
        }
        return match routes::parse_diff(req.uri().query()) {
            Ok(request) => full(file_diff(&ch, request).await),
            Err(reply) => full(reply),
        };
    }
    if matches!(path.as_str(), "/v1/file" | "/v1/tree" | "/v1/changes") {
        if method != "GET" {
            return full(routes::error(405, &format!("{path} answers GET only")));
        }
        let request = match path.as_str() {
            "/v1/file" => routes::parse_show(req.uri().query()),
            "/v1/tree" => routes::parse_list(req.uri().query()),
            _ => routes::parse_changes(req.uri().query()),
        };
        return match request {
            Ok(request) => full(ask(&ch, request).await),
            Err(reply) => full(reply),
        };
    }
    if path == "/v1/events" {
        if method != "GET" {
            return full(routes::error(405, "/v1/events answers GET only"));
        }
        return events(ch.events.subscribe());
    }
    let reply = routes::route(&method, &path, &ch.snapshots.borrow());
    full(reply)
}

/// `GET /v1/diff`: one file in two accepted versions as a unified diff (`diff -u` hunks, no
/// header), computed off the async loop. A side where the file is absent counts as empty; a
/// file that is not text, or too long to compare line by line, is answered as such.
async fn file_diff(ch: &Channels, request: super::Request) -> routes::Reply {
    let texts = match answer(ch, request).await {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let mut out =
        serde_json::json!({"path": texts["path"], "from": texts["from"], "to": texts["to"]});
    let (Some(old), Some(new)) = (texts["old"].as_str(), texts["new"].as_str()) else {
        out["binary"] = true.into();
        return routes::json(200, &out);
    };
    let (old, new) = (old.to_owned(), new.to_owned());
    match tokio::task::spawn_blocking(move || super::diff::unified(&old, &new, 1))
        .await
        .ok()
        .flatten()
    {
        Some(diff) => out["diff"] = diff.into(),
        None => out["too_long"] = true.into(),
    }
    routes::json(200, &out)
}

/// Hands a request to the node's loop and waits for its answer.
async fn ask(ch: &Channels, request: super::Request) -> routes::Reply {
    match answer(ch, request).await {
        Ok(value) => routes::json(200, &value),
        Err(reply) => reply,
    }
}

/// The node loop's answer to `request`, or the error reply that says why there is none.
async fn answer(
    ch: &Channels,
    request: super::Request,
) -> Result<serde_json::Value, routes::Reply> {
    let (tx, rx) = oneshot::channel();
    if ch
        .commands
        .send(Command { request, reply: tx })
        .await
        .is_err()
    {
        return Err(routes::error(503, "the node is stopping"));
    }
    match tokio::time::timeout(COMMAND_WITHIN, rx).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(refusal))) => Err(routes::error(refusal.status, &refusal.message)),
        Ok(Err(_)) => Err(routes::error(503, "the node stopped before answering")),
        Err(_) => Err(routes::error(
            504,
            "the node did not answer in time; see `chorus status` and its log",
        )),
    }
}

/// The event feed as server-sent events, until the client goes away or the node stops.
fn events(rx: broadcast::Receiver<Event>) -> Response<Body> {
    let keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let hello = futures::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": chorus events\n\n")))
    });
    let feed = futures::stream::unfold((rx, keepalive), |(mut rx, mut keepalive)| async move {
        let text = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => sse(&ev),
                // A slow reader missed some: say so rather than pretend.
                Err(broadcast::error::RecvError::Lagged(n)) => format!(
                    "event: lagged\ndata: {{\"missed\":{n}}}\n\n"
                ),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = keepalive.tick() => ": keepalive\n\n".to_owned(),
        };
        Some((Ok(Frame::data(Bytes::from(text))), (rx, keepalive)))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(hello.chain(feed))));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// One event in the SSE framing.
pub fn sse(ev: &Event) -> String {
    let data = serde_json::to_string(ev).unwrap_or_else(|_| "{}".into());
    format!("event: {}\ndata: {data}\n\n", ev.kind)
}

pub(super) fn full(reply: routes::Reply) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(reply.body))));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    resp
}

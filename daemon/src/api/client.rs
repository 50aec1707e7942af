//! The socket's client, as the `chorus` subcommands use it: one GET or POST, its JSON decoded;
//! or the event stream, read event by event.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::{ErrorBody, Event, socket_path};

/// Why a query failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no chorus daemon is running for {state_dir} ({reason}): start it with `chorus run <folder>`, or pass the folder (or --state-dir) it runs with"
    )]
    NoDaemon { state_dir: PathBuf, reason: String },
    #[error(
        "the daemon on {socket} did not answer properly ({reason}): is it a chorus daemon of this version? restart it with `chorus run`"
    )]
    Protocol { socket: PathBuf, reason: String },
    #[error(
        "the daemon on {0} did not answer within {ANSWER_WITHIN:?}: it may still be starting, or be stuck; see its log, or restart it"
    )]
    Timeout(PathBuf),
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// How long a query waits for the daemon (which answers from memory, at once, once started).
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET path` on the socket of `state_dir`, the body decoded as `T`.
pub fn get_json<T: DeserializeOwned>(state_dir: &Path, path: &str) -> Result<T, ClientError> {
    let body = get(state_dir, path)?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
        socket: socket_path(state_dir),
        reason: format!("bad JSON from {path}: {e}"),
    })
}

/// `GET path` on the socket of `state_dir`: the body of a 200 answer.
pub fn get(state_dir: &Path, path: &str) -> Result<Vec<u8>, ClientError> {
    block_on(
        state_dir,
        ANSWER_WITHIN,
        request(state_dir, "GET", path, None),
    )
}

/// `POST path` with a JSON body on the socket of `state_dir`: the body of a 200 answer.
pub fn post(
    state_dir: &Path,
    path: &str,
    body: &serde_json::Value,
    within: std::time::Duration,
) -> Result<Vec<u8>, ClientError> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    block_on(
        state_dir,
        within,
        request(state_dir, "POST", path, Some(body)),
    )
}

/// Reads `GET /v1/events` and hands each event to `each` until it returns false or the daemon
/// stops.
pub fn events(state_dir: &Path, mut each: impl FnMut(Event) -> bool) -> Result<(), ClientError> {
    let rt = runtime()?;
    rt.block_on(async {
        let resp = tokio::time::timeout(ANSWER_WITHIN, send(state_dir, "GET", "/v1/events", None))
            .await
            .unwrap_or_else(|_| Err(ClientError::Timeout(socket_path(state_dir))))?;
        let socket = socket_path(state_dir);
        let mut body = resp.into_body();
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol {
                socket: socket.clone(),
                reason: e.to_string(),
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                let Some(json) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                if let Ok(ev) = serde_json::from_str::<Event>(json)
                    && !each(ev)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)
}

fn block_on(
    state_dir: &Path,
    within: std::time::Duration,
    fut: impl std::future::Future<Output = Result<Vec<u8>, ClientError>>,
) -> Result<Vec<u8>, ClientError> {
    runtime()?.block_on(async {
        tokio::time::timeout(within, fut)
            .await
            .unwrap_or_else(|_| Err(ClientError::Timeout(socket_path(state_dir))))
    })
}

/// Sends one request; the answer's head, its body still to read.
async fn send(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
    let socket = socket_path(state_dir);
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| ClientError::NoDaemon {
            state_dir: state_dir.to_owned(),
            reason: format!("{}: {e}", socket.display()),
        })?;
    let protocol = |reason: String| ClientError::Protocol {
        socket: socket.clone(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("local socket connection: {e}");
        }
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "chorus");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| protocol(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| protocol(e.to_string()))
}

async fn request(
    state_dir: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, ClientError> {
    let resp = send(state_dir, method, path, body).await?;
    let socket = socket_path(state_dir);
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Protocol {
            socket,
            reason: e.to_string(),
        })?
        .to_bytes()
        .to_vec();
    if status != 200 {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(ClientError::Refused { status, message });
    }
    Ok(body)
}

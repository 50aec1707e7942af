//! The socket's client, as the `chorus` subcommands use it: one GET, its JSON decoded.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::{ErrorBody, socket_path};

/// Why a query failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no chorus daemon is running for {state_dir} ({reason}): start it with `chorus run --folder <folder>`, or pass the --folder/--state-dir it runs with"
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
    #[error("the daemon answered {status}: {message}")]
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    rt.block_on(async {
        tokio::time::timeout(ANSWER_WITHIN, get_async(state_dir, path))
            .await
            .unwrap_or_else(|_| Err(ClientError::Timeout(socket_path(state_dir))))
    })
}

async fn get_async(state_dir: &Path, path: &str) -> Result<Vec<u8>, ClientError> {
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
    let req = Request::get(path)
        .header(hyper::header::HOST, "chorus")
        .body(Empty::<Bytes>::new())
        .map_err(|e| protocol(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
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

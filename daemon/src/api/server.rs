//! Serves the socket: binds `<state dir>/api.sock` with mode 0600 and answers each HTTP/1.1
//! connection from the latest [`Snapshot`] the driver published.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::{Snapshot, routes, socket_path};

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

/// Accepts connections until the task is dropped; each is served on its own task.
pub async fn serve(listener: UnixListener, snapshots: watch::Receiver<Snapshot>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("local socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let reply =
                    routes::route(req.method().as_str(), req.uri().path(), &snapshots.borrow());
                async move { Ok::<_, Infallible>(response(reply)) }
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

fn response(reply: routes::Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    resp
}

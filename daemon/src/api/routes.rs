//! What each path of the socket answers, from a [`Snapshot`]: pure, so every answer is a
//! function of the request line and the driver's last published state.

use super::{
    ErrorBody, RedoBody, RemoveBody, Request, RestoreBody, ResumeBody, SeenBody, Snapshot,
};

/// An answer: HTTP status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn json<T: serde::Serialize>(status: u16, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            Reply {
                status,
                content_type: JSON,
                body,
            }
        }
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

pub(crate) fn error(status: u16, message: &str) -> Reply {
    let mut body = serde_json::to_vec(&ErrorBody {
        error: message.to_owned(),
    })
    .unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
    body.push(b'\n');
    Reply {
        status,
        content_type: JSON,
        body,
    }
}

/// The paths that take a `POST` (a [`Request`] for the node's loop).
pub const COMMANDS: [&str; 9] = [
    "/v1/pause",
    "/v1/resume",
    "/v1/undo",
    "/v1/redo",
    "/v1/restore",
    "/v1/invite",
    "/v1/members/remove",
    "/v1/members/evict-all",
    "/v1/conflicts/seen",
];

/// True for a path that takes a `POST`.
pub fn is_command(path: &str) -> bool {
    COMMANDS.contains(&path)
}

/// The body of `POST /v1/invite`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    #[serde(default)]
    expires_secs: Option<u64>,
    #[serde(default)]
    uses: Option<u32>,
}

/// The request a `POST path` with `body` makes (an empty body is `{}`); a 400 that says what
/// is wrong with it otherwise.
pub fn parse_command(path: &str, body: &[u8]) -> Result<Request, Reply> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    fn parse<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, Reply> {
        serde_json::from_slice(body)
            .map_err(|e| error(400, &format!("bad JSON body for {path}: {e}")))
    }
    /// The body of a request that takes no arguments: `{}` (or nothing).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoArguments {}
    Ok(match path {
        "/v1/pause" | "/v1/undo" | "/v1/members/evict-all" => {
            parse::<NoArguments>(path, body)?;
            match path {
                "/v1/pause" => Request::Pause,
                "/v1/undo" => Request::Undo,
                _ => Request::EvictAll,
            }
        }
        "/v1/invite" => {
            let b: InviteBody = parse(path, body)?;
            Request::Invite {
                expires_secs: b.expires_secs,
                uses: b.uses,
            }
        }
        "/v1/resume" => Request::Resume {
            confirm: parse::<ResumeBody>(path, body)?.confirm,
        },
        "/v1/redo" => {
            let b: RedoBody = parse(path, body)?;
            if b.beside && b.entry.is_none() {
                return Err(error(
                    400,
                    "/v1/redo: `beside` goes with an `entry` (taking back an undo has no file to put beside)",
                ));
            }
            Request::Redo {
                entry: b.entry,
                beside: b.beside,
            }
        }
        "/v1/restore" => {
            let b: RestoreBody = parse(path, body)?;
            Request::Restore {
                version: b.version,
                path: b.path,
            }
        }
        "/v1/conflicts/seen" => Request::ConflictsSeen {
            upto: parse::<SeenBody>(path, body)?.upto,
        },
        "/v1/members/remove" => Request::Remove {
            peer: parse::<RemoveBody>(path, body)?.peer,
        },
        _ => return Err(error(404, &format!("no such endpoint: {path}"))),
    })
}

/// The pairs of a query string, values percent-decoded.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Reply> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            percent_decode(v)
                .map(|v| (k.to_owned(), v))
                .ok_or_else(|| error(400, &format!("bad percent-encoding in `{pair}`")))
        })
        .collect()
}

/// The percent-decoded value of `key` in a query string; a 400 naming it when missing.
pub fn query_value(query: Option<&str>, key: &str) -> Result<String, Reply> {
    value_of(&query_pairs(query)?, key)
        .ok_or_else(|| error(400, &format!("the query needs {key}=... (percent-encoded)")))
}

/// The value of `key` in `pairs`, if given.
fn value_of(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The request `GET /v1/file?version=V&path=P` makes (query values percent-decoded).
pub fn parse_show(query: Option<&str>) -> Result<Request, Reply> {
    let pairs = query_pairs(query)?;
    match (value_of(&pairs, "version"), value_of(&pairs, "path")) {
        (Some(version), Some(path)) => Ok(Request::Show { version, path }),
        _ => Err(error(
            400,
            "/v1/file needs ?version=MAJOR.MINOR&path=PATH (percent-encoded)",
        )),
    }
}

/// The request `GET /v1/changes?version=V` makes.
pub fn parse_changes(query: Option<&str>) -> Result<Request, Reply> {
    let pairs = query_pairs(query)?;
    match value_of(&pairs, "version") {
        Some(version) => Ok(Request::Changes { version }),
        None => Err(error(400, "/v1/changes needs ?version=MAJOR.MINOR")),
    }
}

/// The request `GET /v1/diff?path=P&from=V&to=W` makes: one file's text in two versions.
pub fn parse_diff(query: Option<&str>) -> Result<Request, Reply> {
    let pairs = query_pairs(query)?;
    match (
        value_of(&pairs, "path"),
        value_of(&pairs, "from"),
        value_of(&pairs, "to"),
    ) {
        (Some(path), Some(from), Some(to)) => Ok(Request::Texts { path, from, to }),
        _ => Err(error(
            400,
            "/v1/diff needs ?path=PATH&from=MAJOR.MINOR&to=MAJOR.MINOR (percent-encoded)",
        )),
    }
}

/// The request `GET /v1/tree?version=V[&path=P][&recursive=true]` makes.
pub fn parse_list(query: Option<&str>) -> Result<Request, Reply> {
    let pairs = query_pairs(query)?;
    let Some(version) = value_of(&pairs, "version") else {
        return Err(error(
            400,
            "/v1/tree needs ?version=MAJOR.MINOR, and optionally &path=PATH (percent-encoded) and &recursive=true",
        ));
    };
    let recursive = match value_of(&pairs, "recursive").as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(error(
                400,
                &format!("recursive must be true or false, not `{other}`"),
            ));
        }
    };
    Ok(Request::List {
        version,
        path: value_of(&pairs, "path").unwrap_or_default(),
        recursive,
    })
}

/// `%XX` escapes and `+` (a space) decoded; `None` when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// The answer to `method path` (the query string, if any, is ignored).
pub fn route(method: &str, path: &str, snap: &Snapshot) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    let known = matches!(
        path,
        "/v1/status" | "/v1/peers" | "/v1/versions" | "/v1/conflicts" | "/metrics"
    );
    if !known {
        return error(404, &format!("no such endpoint: {path}"));
    }
    if method != "GET" {
        return error(405, &format!("{path} answers GET only"));
    }
    match path {
        "/v1/status" => json(200, &snap.status),
        "/v1/peers" => json(200, &snap.peers),
        "/v1/versions" => json(200, &*snap.versions),
        "/v1/conflicts" => json(200, &*snap.conflicts),
        _ => Reply {
            status: 200,
            content_type: PROMETHEUS,
            body: metrics(snap).into_bytes(),
        },
    }
}

/// Prometheus text exposition of the node's figures.
pub fn metrics(snap: &Snapshot) -> String {
    let s = &snap.status;
    let t = &s.traffic;
    let mut out = String::new();
    out.push_str(
        "# HELP chorus_bytes_sent_total Bytes sent on the wire, length prefixes included.\n",
    );
    out.push_str("# TYPE chorus_bytes_sent_total counter\n");
    out.push_str(&format!(
        "chorus_bytes_sent_total{{protocol=\"sync\"}} {}\n",
        t.sync_sent
    ));
    out.push_str(&format!(
        "chorus_bytes_sent_total{{protocol=\"raft\"}} {}\n",
        t.raft_sent
    ));
    out.push_str("# HELP chorus_bytes_received_total Bytes received on the wire, length prefixes included.\n");
    out.push_str("# TYPE chorus_bytes_received_total counter\n");
    out.push_str(&format!(
        "chorus_bytes_received_total{{protocol=\"sync\"}} {}\n",
        t.sync_received
    ));
    out.push_str(&format!(
        "chorus_bytes_received_total{{protocol=\"raft\"}} {}\n",
        t.raft_received
    ));
    out.push_str(
        "# HELP chorus_versions_accepted Accepted versions (MAJOR of the newest known here).\n",
    );
    out.push_str("# TYPE chorus_versions_accepted gauge\n");
    out.push_str(&format!("chorus_versions_accepted {}\n", snap.accepted));
    out.push_str("# HELP chorus_role 1 for this node's Raft role, 0 for the others.\n");
    out.push_str("# TYPE chorus_role gauge\n");
    for role in ["leader", "candidate", "follower", "learner"] {
        let v = u8::from(s.role == role);
        out.push_str(&format!("chorus_role{{role=\"{role}\"}} {v}\n"));
    }
    out.push_str("# HELP chorus_term Raft term.\n# TYPE chorus_term gauge\n");
    out.push_str(&format!("chorus_term {}\n", s.term));
    out.push_str("# HELP chorus_peers_connected Other members connected now.\n");
    out.push_str("# TYPE chorus_peers_connected gauge\n");
    out.push_str(&format!("chorus_peers_connected {}\n", s.peers_connected));
    out.push_str(
        "# HELP chorus_conflicts Entries on the redo stack.\n# TYPE chorus_conflicts gauge\n",
    );
    out.push_str(&format!("chorus_conflicts {}\n", snap.conflicts.len()));
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::{Conflict, Status, Traffic, VersionRef};

    fn snapshot() -> Snapshot {
        let v = VersionRef {
            number: "3.0".into(),
            version: "ab".repeat(32),
        };
        Snapshot {
            status: Status {
                peer_id: "me".into(),
                role: "follower".into(),
                term: 4,
                leader: None,
                head: v.clone(),
                adopted: v,
                pending_local: None,
                settled: true,
                peers: 2,
                peers_connected: 1,
                unreachable: vec!["12D3KooWother".into()],
                reachability: "behind-nat".into(),
                public_addrs: Vec::new(),
                traffic: Traffic {
                    sync_sent: 10,
                    sync_received: 20,
                    raft_sent: 30,
                    raft_received: 40,
                },
                share: "/share".into(),
                paused: false,
                transfers: Vec::new(),
                held: None,
                retention: None,
                displaced_here: vec![],
            },
            peers: Vec::new(),
            versions: Arc::new(Vec::new()),
            conflicts: Arc::new(vec![Conflict {
                seq: 0,
                accepted_major: 3,
                path: Some("a.txt".into()),
                displaced_by: "3.1".into(),
                displaced_from: "2.0".into(),
                what: "hunk".into(),
                preview: None,
                detail: Default::default(),
            }]),
            accepted: 3,
        }
    }

    #[test]
    fn commands_parse_their_bodies_and_refuse_bad_ones() {
        assert_eq!(parse_command("/v1/pause", b""), Ok(Request::Pause));
        assert_eq!(
            parse_command("/v1/members/remove", br#"{"peer": "abcdef"}"#),
            Ok(Request::Remove {
                peer: "abcdef".into()
            })
        );
        assert!(parse_command("/v1/members/remove", b"").is_err());
        assert_eq!(
            parse_command("/v1/resume", b"{\"confirm\": true}"),
            Ok(Request::Resume { confirm: true })
        );
        assert_eq!(
            parse_command("/v1/redo", b" \n"),
            Ok(Request::Redo {
                entry: None,
                beside: false
            })
        );
        assert_eq!(
            parse_command("/v1/restore", b"{\"version\": \"3.0\", \"path\": \"a\"}"),
            Ok(Request::Restore {
                version: "3.0".into(),
                path: Some("a".into())
            })
        );
        for (path, body) in [
            ("/v1/restore", &b"{}"[..]),
            ("/v1/redo", b"{\"entry\": -1}"),
            ("/v1/resume", b"{\"confrim\": true}"),
            ("/v1/undo", b"not json"),
        ] {
            let reply = parse_command(path, body).unwrap_err();
            assert_eq!(reply.status, 400, "{path}");
            assert!(error_of(&reply).contains(path), "{}", error_of(&reply));
        }
        assert!(is_command("/v1/invite") && !is_command("/v1/status"));
    }

    #[test]
    fn tree_takes_a_version_and_optionally_a_path_and_recursive() {
        assert_eq!(
            parse_list(Some("version=3.0&path=a%20b&recursive=true")),
            Ok(Request::List {
                version: "3.0".into(),
                path: "a b".into(),
                recursive: true
            })
        );
        assert_eq!(
            parse_list(Some("version=3.0")),
            Ok(Request::List {
                version: "3.0".into(),
                path: String::new(),
                recursive: false
            })
        );
        for q in [None, Some("path=a"), Some("version=3.0&recursive=maybe")] {
            assert_eq!(parse_list(q).unwrap_err().status, 400, "{q:?}");
        }
    }

    #[test]
    fn show_takes_percent_encoded_query_values() {
        assert_eq!(
            parse_show(Some("version=3.0&path=a%20b/c+d.txt")),
            Ok(Request::Show {
                version: "3.0".into(),
                path: "a b/c d.txt".into()
            })
        );
        for q in [None, Some("version=3.0"), Some("path=a&version=%zz")] {
            assert_eq!(parse_show(q).unwrap_err().status, 400, "{q:?}");
        }
    }

    fn error_of(reply: &Reply) -> String {
        serde_json::from_slice::<ErrorBody>(&reply.body)
            .map(|e| e.error)
            .unwrap_or_default()
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_both_as_json() {
        let snap = snapshot();
        for path in [
            "/",
            "/v1",
            "/v1/status/x",
            "/../etc/passwd",
            "/v2/status",
            "",
        ] {
            let r = route("GET", path, &snap);
            assert_eq!((r.status, r.content_type), (404, JSON), "{path}");
            assert!(error_of(&r).contains("no such endpoint"), "{path}");
        }
        let r = route("DELETE", "/v1/status", &snap);
        assert_eq!((r.status, r.content_type), (405, JSON));
        assert!(error_of(&r).contains("GET only"));
    }

    #[test]
    fn endpoints_answer_the_snapshot_and_ignore_the_query_string() {
        let snap = snapshot();
        let r = route("GET", "/v1/status?x=1", &snap);
        assert_eq!(r.status, 200);
        let status: Status = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(status, snap.status);
        let r = route("GET", "/v1/conflicts", &snap);
        let conflicts: Vec<Conflict> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(conflicts, *snap.conflicts);
    }

    #[test]
    fn metrics_carry_bytes_per_protocol_versions_and_the_role() {
        let r = route("GET", "/metrics", &snapshot());
        assert_eq!((r.status, r.content_type), (200, PROMETHEUS));
        let text = String::from_utf8(r.body).unwrap();
        for line in [
            "chorus_bytes_sent_total{protocol=\"sync\"} 10",
            "chorus_bytes_received_total{protocol=\"sync\"} 20",
            "chorus_bytes_sent_total{protocol=\"raft\"} 30",
            "chorus_bytes_received_total{protocol=\"raft\"} 40",
            "chorus_versions_accepted 3",
            "chorus_role{role=\"follower\"} 1",
            "chorus_role{role=\"leader\"} 0",
            "chorus_term 4",
            "chorus_conflicts 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}

//! Who may use the web page: every request carries the page's token, in a cookie the page got
//! by being opened with `?token=`, in the `X-Chorus-Token` header, or in the query; a request
//! that changes something carries it in the header (a cookie alone is what a forged cross-site
//! request would carry) and comes from the page's own origin. On loopback the `Host` header
//! must name loopback too, so a rebound DNS name gets nothing. Pure: a function of the request
//! line and headers.

use hyper::HeaderMap;
use hyper::header::{COOKIE, HOST, ORIGIN};

/// The header a state-changing request carries the token in.
pub const TOKEN_HEADER: &str = "x-chorus-token";

/// What the gate decides about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allow,
    /// The page opened with `?token=`: set the cookie and send the browser to `location`
    /// (the same path without the token, so it stays out of history and bookmarks).
    Enter { location: String, cookie: String },
    /// Refuse with this status and message.
    Refuse(u16, String),
}

/// The token and where the page is served.
#[derive(Debug, Clone)]
pub struct Gate {
    token: String,
    /// The port: cookies are shared by every port of a host, so the cookie is named for it.
    port: u16,
    /// Served on loopback: `Host` must be a loopback name.
    loopback: bool,
}

impl Gate {
    pub fn new(token: String, port: u16, loopback: bool) -> Gate {
        Gate {
            token,
            port,
            loopback,
        }
    }

    /// The token the page carries in its requests.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The cookie's name: one per port, so two daemons' pages on one machine do not clash.
    pub fn cookie_name(&self) -> String {
        format!("chorus-{}", self.port)
    }

    /// The decision for `method path?query` with `headers`.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Verdict {
        if let Err(why) = self.host_ok(headers) {
            return Verdict::Refuse(403, why);
        }
        let from_query = query.and_then(token_in_query);
        let from_header = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let from_cookie = cookie(headers, &self.cookie_name());
        let ok = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t, &self.token));
        match method {
            "GET" | "HEAD" => {
                if ok(&from_query) {
                    // Opening the page with the token: keep it in the cookie, drop it from the URL.
                    if path == "/" {
                        return Verdict::Enter {
                            location: "/".into(),
                            cookie: format!(
                                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                                self.cookie_name(),
                                self.token
                            ),
                        };
                    }
                    return Verdict::Allow;
                }
                if ok(&from_header) || ok(&from_cookie) {
                    Verdict::Allow
                } else {
                    Verdict::Refuse(
                        401,
                        "this page needs its token: run `chorus ui` on this machine and open the address it prints".into(),
                    )
                }
            }
            "POST" => {
                if !ok(&from_header) {
                    return Verdict::Refuse(
                        403,
                        format!(
                            "a request that changes something carries the page's token in the {TOKEN_HEADER} header"
                        ),
                    );
                }
                match self.same_origin(headers) {
                    Ok(()) => Verdict::Allow,
                    Err(why) => Verdict::Refuse(403, why),
                }
            }
            other => Verdict::Refuse(405, format!("{other} is not answered here (no CORS)")),
        }
    }

    /// On loopback, a `Host` of `127.0.0.1`, `[::1]` or `localhost` at this port.
    fn host_ok(&self, headers: &HeaderMap) -> Result<(), String> {
        if !self.loopback {
            return Ok(());
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        // `NAME:PORT`, or `NAME` alone where the port is HTTP's own (80).
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, port.parse::<u16>().ok()),
            _ => (host, Some(80)),
        };
        let allowed =
            port == Some(self.port) && ["127.0.0.1", "[::1]", "localhost"].contains(&name);
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "Host `{host}` is not this machine's loopback address; open the address `chorus ui` prints"
            ))
        }
    }

    /// An `Origin`, where the browser sends one, names this page's own origin.
    fn same_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
            return Ok(());
        };
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if origin == format!("http://{host}") {
            Ok(())
        } else {
            Err(format!("requests from {origin} are not answered (no CORS)"))
        }
    }
}

/// The `token` value of a query string.
fn token_in_query(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const TOKEN: &str = "t0k3n-t0k3n-t0k3n-t0k3n-t0k3n-t0k3n";

    fn gate() -> Gate {
        Gate::new(TOKEN.into(), 8384, true)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8384"));
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn refused(v: &Verdict) -> u16 {
        match v {
            Verdict::Refuse(s, _) => *s,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn without_the_token_nothing_is_served() {
        let g = gate();
        for path in ["/", "/app.js", "/v1/status", "/v1/events"] {
            assert_eq!(refused(&g.check("GET", path, None, &headers(&[]))), 401);
            let wrong = format!("token={}x", &TOKEN[..TOKEN.len() - 1]);
            assert_eq!(
                refused(&g.check("GET", path, Some(&wrong), &headers(&[]))),
                401
            );
            let cookie = "chorus-8384=nope".to_string();
            assert_eq!(
                refused(&g.check("GET", path, None, &headers(&[("cookie", &cookie)]))),
                401
            );
        }
    }

    #[test]
    fn opening_with_the_token_sets_the_cookie_and_drops_it_from_the_address() {
        let g = gate();
        let q = format!("token={TOKEN}");
        let Verdict::Enter { location, cookie } = g.check("GET", "/", Some(&q), &headers(&[]))
        else {
            panic!("not entered")
        };
        assert_eq!(location, "/");
        assert!(
            cookie.starts_with(&format!("chorus-8384={TOKEN};")),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let c = format!("other=1; chorus-8384={TOKEN}");
        assert_eq!(
            g.check("GET", "/v1/status", None, &headers(&[("cookie", &c)])),
            Verdict::Allow
        );
        // Another daemon's page on another port has another cookie.
        let c = format!("chorus-9999={TOKEN}");
        assert_eq!(
            refused(&g.check("GET", "/v1/status", None, &headers(&[("cookie", &c)]))),
            401
        );
    }

    #[test]
    fn changes_need_the_header_and_the_page_own_origin() {
        let g = gate();
        let c = format!("chorus-8384={TOKEN}");
        // The cookie alone is what a forged cross-site form would send.
        assert_eq!(
            refused(&g.check("POST", "/v1/undo", None, &headers(&[("cookie", &c)]))),
            403
        );
        let q = format!("token={TOKEN}");
        assert_eq!(
            refused(&g.check("POST", "/v1/undo", Some(&q), &headers(&[]))),
            403
        );
        assert_eq!(
            g.check("POST", "/v1/undo", None, &headers(&[(TOKEN_HEADER, TOKEN)])),
            Verdict::Allow
        );
        assert_eq!(
            g.check(
                "POST",
                "/v1/undo",
                None,
                &headers(&[(TOKEN_HEADER, TOKEN), ("origin", "http://127.0.0.1:8384")])
            ),
            Verdict::Allow
        );
        assert_eq!(
            refused(&g.check(
                "POST",
                "/v1/undo",
                None,
                &headers(&[(TOKEN_HEADER, TOKEN), ("origin", "http://evil.example")])
            )),
            403
        );
        for method in ["OPTIONS", "PUT", "DELETE"] {
            assert_eq!(
                refused(&g.check(method, "/v1/undo", None, &headers(&[(TOKEN_HEADER, TOKEN)]))),
                405
            );
        }
    }

    #[test]
    fn on_loopback_a_foreign_host_name_is_refused_even_with_the_token() {
        let g = gate();
        let mut h = headers(&[(TOKEN_HEADER, TOKEN)]);
        h.insert(HOST, HeaderValue::from_static("attacker.example:8384"));
        assert_eq!(refused(&g.check("GET", "/v1/status", None, &h)), 403);
        h.insert(HOST, HeaderValue::from_static("localhost:8384"));
        assert_eq!(g.check("GET", "/v1/status", None, &h), Verdict::Allow);
        h.insert(HOST, HeaderValue::from_static("localhost:8385"));
        assert_eq!(refused(&g.check("GET", "/v1/status", None, &h)), 403);
        h.insert(HOST, HeaderValue::from_static("[::1]:8384"));
        assert_eq!(g.check("GET", "/v1/status", None, &h), Verdict::Allow);
        h.insert(HOST, HeaderValue::from_static("localhost"));
        assert_eq!(refused(&g.check("GET", "/v1/status", None, &h)), 403);
        // At port 80 a browser names the host alone.
        let at_80 = Gate::new(TOKEN.into(), 80, true);
        assert_eq!(at_80.check("GET", "/v1/status", None, &h), Verdict::Allow);
        h.insert(HOST, HeaderValue::from_static("[::1]"));
        assert_eq!(at_80.check("GET", "/v1/status", None, &h), Verdict::Allow);
        // Served on another interface by the user's choice: any name, the token still needed.
        let open = Gate::new(TOKEN.into(), 8384, false);
        h.insert(HOST, HeaderValue::from_static("nas.lan:8384"));
        assert_eq!(open.check("GET", "/v1/status", None, &h), Verdict::Allow);
    }
}

//! The page's files, built into the binary: plain HTML, JavaScript and CSS (no framework, no
//! build step, nothing fetched at run time), from `daemon/ui/`.

/// One embedded file.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

/// The page's HTML: `{{TOKEN}}` stands where the served page carries its token (in a `meta`
/// element the script reads for the header of its requests).
pub const INDEX: &str = include_str!("../../../ui/index.html");

/// The file at `path`, if the page has one.
pub fn get(path: &str) -> Option<Asset> {
    let (body, content_type): (&'static [u8], _) = match path {
        "/app.js" => (
            include_bytes!("../../../ui/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "/app.css" => (
            include_bytes!("../../../ui/app.css"),
            "text/css; charset=utf-8",
        ),
        "/favicon.svg" => (include_bytes!("../../../ui/favicon.svg"), "image/svg+xml"),
        _ => return None,
    };
    Some(Asset { body, content_type })
}

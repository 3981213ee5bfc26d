//! The browser client's files: embedded in the binary at build time (see `build.rs`), or
//! read from a directory with `--web-dir` while working on the page, and the headers every
//! one of them is served with.

use std::path::Path;

use crate::http::response::Response;

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// Where it is served, e.g. `/js/app/main.js`.
    pub(crate) path: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
    /// A strong ETag of the bytes, quotes included.
    pub(crate) etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The page may run scripts and load styles, images and its socket from this server only;
/// nothing inline, nothing from another host, no plugins, no framing. `blob:` images and media
/// let it preview a file it downloaded; `data:` images are the favicon and inline icons.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The media type served for a file name, by extension; `None` for anything the page has no
/// business serving.
pub(crate) fn media_type(path: &str) -> Option<&'static str> {
    let (_, ext) = path.rsplit_once('.')?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

/// The embedded file served at `path` (`/` is `/index.html`).
pub(crate) fn embedded(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    EMBEDDED
        .binary_search_by(|asset| asset.path.cmp(path))
        .ok()
        .map(|i| &EMBEDDED[i])
}

/// Answers `GET`/`HEAD` of a page file: from the binary, or from `dir` when it is set.
/// `if_none_match` is the request's `If-None-Match`, which a browser revalidating its cache
/// sends: a matching embedded file is answered `304` without a body.
pub(crate) fn serve(path: &str, if_none_match: Option<&str>, dir: Option<&Path>) -> Response {
    let Some(content_type) = media_type(if path == "/" { "/index.html" } else { path }) else {
        return Response::status(404);
    };
    let response = match dir {
        Some(dir) => match from_dir(dir, path) {
            // Read on every request, never cached: the point of --web-dir is that an edit shows
            // on the next reload.
            Some(body) => Response::new(200, content_type, body),
            None => return Response::status(404),
        },
        None => match embedded(path) {
            Some(asset) if if_none_match.is_some_and(|tags| etag_matches(tags, asset.etag)) => {
                Response::new(304, content_type, bytes::Bytes::new())
                    .header("ETag", asset.etag)
                    .cache("no-cache")
            }
            // `no-cache` still caches, but revalidates each load: a new server version is
            // picked up at once, and an unchanged file costs a 304.
            Some(asset) => Response::new(200, content_type, asset.body)
                .header("ETag", asset.etag)
                .cache("no-cache"),
            None => return Response::status(404),
        },
    };
    response
        .header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 §13.1.2 asks).
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Reads `path` under `dir`, if it names a file the embedded table could hold: `/` or
/// `/index.html`, or plain segments (letters, digits, `.`, `_`, `-`, no leading dot) under
/// `/css`, `/js` or `/img`. Nothing else of the directory is reachable.
fn from_dir(dir: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = match path {
        "/" | "/index.html" => "index.html",
        _ => {
            let rel = path.strip_prefix('/')?;
            let mut segments = rel.split('/');
            if !matches!(segments.next(), Some("css" | "js" | "img")) {
                return None;
            }
            let plain = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            };
            if !rel.split('/').all(plain) {
                return None;
            }
            rel
        }
    };
    // Blocking, but only in this development mode, for files of a few KiB.
    std::fs::read(dir.join(rel)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_modules_are_embedded() {
        let index = embedded("/").expect("web/index.html is embedded");
        assert_eq!(index.path, "/index.html");
        assert!(std::str::from_utf8(index.body).is_ok_and(|t| t.contains("<html")));
        assert!(embedded("/js/connection.js").is_some());
        // Tests and fixtures beside the modules are not served.
        assert!(EMBEDDED.iter().all(|a| !a.path.starts_with("/test")
            && !a.path.starts_with("/testing")
            && media_type(a.path).is_some()));
        assert!(EMBEDDED.windows(2).all(|w| w[0].path < w[1].path));
    }

    #[test]
    fn unknown_paths_and_types_are_404() {
        assert_eq!(serve("/js/nope.js", None, None).status, 404);
        assert_eq!(serve("/package.json", None, None).status, 404);
        assert_eq!(serve("/README.md", None, None).status, 404);
    }

    #[test]
    fn every_file_carries_the_security_headers() {
        let r = serve("/", None, None);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/html; charset=utf-8");
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("Content-Security-Policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(header("X-Content-Type-Options"), Some("nosniff"));
        assert!(header("ETag").is_some());
    }

    #[test]
    fn a_matching_etag_is_answered_304() {
        let etag = embedded("/").expect("embedded").etag;
        assert_eq!(serve("/", Some(etag), None).status, 304);
        assert_eq!(
            serve("/", Some(&format!("\"x\", W/{etag}")), None).status,
            304
        );
        assert_eq!(serve("/", Some("\"other\""), None).status, 200);
        assert_eq!(serve("/", Some("*"), None).status, 304);
    }

    #[test]
    fn the_web_dir_serves_only_page_files() {
        let dir = std::env::temp_dir().join(format!("chatgroup-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("js")).expect("mkdir");
        std::fs::write(dir.join("index.html"), "<html>dev</html>").expect("write");
        std::fs::write(dir.join("js/a.js"), "export {}").expect("write");
        std::fs::write(dir.join("secret.js"), "no").expect("write");
        let get = |p: &str| serve(p, None, Some(&dir));
        assert_eq!(&get("/").body[..], b"<html>dev</html>");
        assert_eq!(&get("/js/a.js").body[..], b"export {}");
        for bad in [
            "/secret.js",
            "/js/../secret.js",
            "/js/.a.js",
            "/js//a.js",
            "/js/%2e%2e/x.js",
        ] {
            assert_eq!(get(bad).status, 404, "{bad}");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

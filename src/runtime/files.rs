//! Static files from a directory ([`Builder::static_files`](crate::Builder::static_files)):
//! the file system half. The request path is checked by the sans-I/O
//! [`static_path`](crate::http::static_path) first; here it is resolved against the
//! canonical root, and anything whose canonical path falls outside the root (a symlink
//! that leads out) is refused. Every refusal is a plain 404, the same answer as a
//! missing file, so a probe learns nothing about what exists outside.
//!
//! Files are read with `std::fs` on the shard thread, whole (or the requested range)
//! into the response body: fine for a site's assets, not for serving large media to
//! many clients. A body larger than the route's cap (default 64 MiB) is answered 413;
//! a range within the cap is still served.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::http::conditional::{http_date, plan, Plan, Validators};
use crate::http::static_path::{content_type, safe_path};
use crate::http::Request;
use crate::route::HttpResponse;

/// The default cap on the bytes of one static response body.
pub(crate) const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// One served directory.
#[derive(Debug)]
pub(crate) struct StaticDir {
    /// Canonical (absolute, symlinks resolved).
    root: PathBuf,
    /// The largest body served (a whole file or a range).
    pub(crate) max_file_size: u64,
}

/// A static answer: the response, and the `Content-Length` to announce (the body is
/// empty for HEAD; `None` for a 304, which announces none).
pub(crate) struct FileAnswer {
    pub(crate) response: HttpResponse,
    pub(crate) length: Option<u64>,
}

impl FileAnswer {
    fn text(status: u16, body: &str) -> FileAnswer {
        let response = HttpResponse::text(status, body);
        let length = Some(response.body.len() as u64);
        FileAnswer { response, length }
    }

    fn not_found() -> FileAnswer {
        FileAnswer::text(404, "not found\n")
    }
}

impl StaticDir {
    /// Serves `dir`, which must exist and be a directory.
    pub(crate) fn new(dir: &Path) -> io::Result<StaticDir> {
        let root = dir.canonicalize().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("static files: {}: {error}", dir.display()),
            )
        })?;
        if !root.is_dir() {
            let message = format!("static files: {} is not a directory", dir.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        Ok(StaticDir {
            root,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        })
    }

    /// Answers `request`, whose path is `rest` below the route's prefix (`None`: the
    /// prefix itself without its final `/`, which is redirected to the `/` form).
    pub(crate) fn serve(&self, request: &Request<'_>, rest: Option<&str>) -> FileAnswer {
        let method = request.method();
        if method != "GET" && method != "HEAD" {
            let mut answer = FileAnswer::text(405, "only GET and HEAD are allowed here\n");
            answer.response = answer.response.header("Allow", "GET, HEAD");
            return answer;
        }
        let Some(rest) = rest else {
            return redirect_to_slash(request);
        };
        let path = match safe_path(rest) {
            Ok(path) => path,
            Err(refusal) => {
                tracing::debug!(path = request.path(), ?refusal, "static path refused");
                return FileAnswer::not_found();
            }
        };
        let mut candidate = self.root.clone();
        candidate.extend(&path.segments);
        let Some(resolved) = self.inside_root(&candidate) else {
            return FileAnswer::not_found();
        };
        let (file_path, name) = if resolved.is_dir() {
            if !path.trailing_slash {
                return redirect_to_slash(request);
            }
            match self.inside_root(&resolved.join("index.html")) {
                Some(index) => (index, "index.html"),
                None => return FileAnswer::not_found(),
            }
        } else if path.trailing_slash {
            // `file.txt/` names no directory.
            return FileAnswer::not_found();
        } else {
            let name = path.segments.last().map_or("", String::as_str);
            (resolved, name)
        };
        match self.serve_file(request, &file_path, content_type(name)) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(path = request.path(), %error, "static file unreadable");
                FileAnswer::not_found()
            }
        }
    }

    /// The canonical form of `path` when it exists and lies inside the root.
    fn inside_root(&self, path: &Path) -> Option<PathBuf> {
        let canonical = path.canonicalize().ok()?;
        if canonical.starts_with(&self.root) {
            Some(canonical)
        } else {
            tracing::debug!(path = %path.display(), "static path leads out of the root");
            None
        }
    }

    fn serve_file(
        &self,
        request: &Request<'_>,
        path: &Path,
        content_type: &str,
    ) -> io::Result<FileAnswer> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        let len = meta.len();
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let validators = Validators::new(len, mtime_ns);
        let last_modified = http_date(validators.modified);
        let mut headers = vec![
            ("ETag".to_owned(), validators.etag.clone()),
            ("Last-Modified".to_owned(), last_modified),
        ];
        let (status, start, count) = match plan(request, &validators, len) {
            Plan::NotModified => {
                let response = HttpResponse::new(304, "", Vec::new());
                return Ok(FileAnswer {
                    response: with_headers(response, headers),
                    length: None,
                });
            }
            Plan::Unsatisfiable => {
                let mut answer = FileAnswer::text(416, "range not satisfiable\n");
                headers.push(("Content-Range".to_owned(), format!("bytes */{len}")));
                answer.response = with_headers(answer.response, headers);
                return Ok(answer);
            }
            Plan::Full => (200, 0, len),
            Plan::Partial { start, end } => {
                let range = format!("bytes {start}-{end}/{len}");
                headers.push(("Content-Range".to_owned(), range));
                (206, start, end - start + 1)
            }
        };
        if count > self.max_file_size {
            return Ok(FileAnswer::text(413, "file too large to serve\n"));
        }
        headers.push(("Accept-Ranges".to_owned(), "bytes".to_owned()));
        let mut body = Vec::new();
        if request.method() == "GET" {
            let size = usize::try_from(count).map_err(io::Error::other)?;
            body.resize(size, 0);
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut body)?;
        }
        let response = HttpResponse::new(status, content_type, body);
        Ok(FileAnswer {
            response: with_headers(response, headers),
            length: Some(count),
        })
    }
}

fn with_headers(mut response: HttpResponse, headers: Vec<(String, String)>) -> HttpResponse {
    response.headers.extend(headers);
    response
}

/// 301 to the request path with a `/` appended (the query kept).
fn redirect_to_slash(request: &Request<'_>) -> FileAnswer {
    let location = match request.query() {
        Some(query) => format!("{}/?{query}", request.path()),
        None => format!("{}/", request.path()),
    };
    let mut answer = FileAnswer::text(301, "moved to the directory's / form\n");
    answer.response = answer.response.header("Location", location);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{header_storage, parse_request, Parse};

    fn answer(head: &str, rest: Option<&str>) -> FileAnswer {
        let dir = StaticDir::new(&std::env::temp_dir()).expect("the temp dir exists");
        let buf = format!("{head}\r\nHost: x\r\n\r\n");
        let mut headers = header_storage();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf.as_bytes(), &mut headers, 8192)
        else {
            panic!("bad test request");
        };
        dir.serve(&request, rest)
    }

    fn header<'a>(answer: &'a FileAnswer, name: &str) -> Option<&'a str> {
        let headers = &answer.response.headers;
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn methods_redirects_and_refusals() {
        let post = answer("POST /s/x HTTP/1.1", Some("x"));
        assert_eq!(post.response.status, 405);
        assert_eq!(header(&post, "Allow"), Some("GET, HEAD"));
        let bare = answer("GET /s?q=1 HTTP/1.1", None);
        assert_eq!(bare.response.status, 301);
        assert_eq!(header(&bare, "Location"), Some("/s/?q=1"));
        for rest in [
            "../x",
            "%2e%2e/x",
            "a%00",
            "/etc/passwd",
            "no-such-file-here",
        ] {
            assert_eq!(answer("GET /s/ HTTP/1.1", Some(rest)).response.status, 404);
        }
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let error = StaticDir::new(Path::new("/nonexistent/ringws")).expect_err("missing");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("/nonexistent/ringws"), "{error}");
    }
}

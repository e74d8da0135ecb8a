//! Static files from a directory ([`Builder::static_files`](crate::Builder::static_files)):
//! the file system half. The request path is checked by the sans-I/O
//! [`static_path`](crate::http::static_path) first; here it is resolved against the
//! canonical root, and anything whose canonical path falls outside the root (a symlink
//! that leads out) is refused. Every refusal is a plain 404, the same answer as a
//! missing file, so a probe learns nothing about what exists outside.
//!
//! Only the file's metadata is looked at here: resolving the path, `open` and `fstat`
//! stay synchronous on the shard thread (a few system calls on metadata the kernel
//! caches, bounded whatever the file's size). The body is not read here: the answer
//! carries a [`FileBody`] (the open file, the offset and the length to send), which the
//! connection streams in chunks through the runtime (`connection/static_file.rs`: it
//! asks for a chunk only while its output queue is short; the backend reads it with
//! io_uring or on a small blocking pool), so a large file costs a shard neither a
//! blocking read nor its size in memory. An optional cap (`max_static_file_size`, no
//! limit by default) answers larger bodies 413; a range within the cap is still served.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::http::conditional::{http_date, plan, Plan, Validators};
use crate::http::static_path::{content_type, safe_path};
use crate::http::Request;
use crate::route::HttpResponse;

/// The default cap on the bytes of one static response body: none (bodies are
/// streamed, so their size costs no memory).
pub(crate) const DEFAULT_MAX_FILE_SIZE: u64 = u64::MAX;

/// One served directory.
#[derive(Debug)]
pub(crate) struct StaticDir {
    /// Canonical (absolute, symlinks resolved).
    root: PathBuf,
    /// The largest body served (a whole file or a range).
    pub(crate) max_file_size: u64,
}

pub(crate) use crate::connection::{FileAnswer, FileBody};
use crate::route::StaticFiles;

impl StaticFiles for StaticDir {
    fn serve(&self, request: &Request<'_>, rest: Option<&str>) -> FileAnswer {
        StaticDir::serve(self, request, rest)
    }

    fn set_max_file_size(&mut self, bytes: u64) {
        self.max_file_size = bytes;
    }
}

impl FileAnswer {
    fn text(status: u16, body: &str) -> FileAnswer {
        let response = HttpResponse::text(status, body);
        let length = Some(response.body.len() as u64);
        FileAnswer {
            response,
            length,
            body: None,
        }
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
        // Synchronous on purpose: open and fstat are short metadata calls (see the
        // module's doc); the body itself is read through the runtime.
        let file = File::open(path)?;
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
                    body: None,
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
        let body = (request.method() == "GET" && count > 0).then(|| FileBody {
            file: Arc::new(file),
            offset: start,
            len: count,
        });
        let response = HttpResponse::new(status, content_type, Vec::new());
        Ok(FileAnswer {
            response: with_headers(response, headers),
            length: Some(count),
            body,
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
    fn bodies_are_left_to_the_runtime() {
        let name = format!("ringws-files-{}.txt", std::process::id());
        let path = std::env::temp_dir().join(&name);
        std::fs::write(&path, b"0123456789").expect("write");
        let get = answer(&format!("GET /s/{name} HTTP/1.1"), Some(&name));
        let body = get.body.as_ref().expect("a body to stream");
        assert_eq!((get.length, body.offset, body.len), (Some(10), 0, 10));
        assert!(get.response.body.is_empty(), "read on the shard");
        let range = answer(
            &format!("GET /s/{name} HTTP/1.1\r\nRange: bytes=3-"),
            Some(&name),
        );
        let body = range.body.as_ref().expect("a range to stream");
        assert_eq!((range.response.status, body.offset, body.len), (206, 3, 7));
        let head = answer(&format!("HEAD /s/{name} HTTP/1.1"), Some(&name));
        assert!(head.body.is_none() && head.length == Some(10));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let error = StaticDir::new(Path::new("/nonexistent/ringws")).expect_err("missing");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("/nonexistent/ringws"), "{error}");
    }
}

//! Static file paths, sans-I/O: the part of a request path below a static prefix,
//! percent-decoded and checked so it can only name something inside the served
//! directory, and the content type its extension implies.
//!
//! The checks run on the decoded path, so `%2e%2e` and `%2f..` are refused like `..`:
//! a `..` segment, a NUL byte (raw or `%00`), a backslash, an empty segment (which
//! also refuses an absolute path such as `//etc/passwd` under the prefix), a malformed
//! escape or a path that is not UTF-8. The runtime (`runtime/files.rs`) then resolves
//! the checked path against the canonical root and refuses anything a symlink leads
//! out of it.

use super::hex_value;

/// A request path below a static prefix that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SafePath {
    /// The decoded segments, none empty, `.` or `..`, none with `/`, `\` or NUL.
    pub(crate) segments: Vec<String>,
    /// The path ended with `/`: it names a directory (served by its `index.html`).
    pub(crate) trailing_slash: bool,
}

/// Why a path was refused (every refusal is answered 404, so nothing is revealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `%` not followed by two hex digits, or a decoded path that is not UTF-8.
    BadEncoding,
    /// A `..` segment.
    ParentSegment,
    /// A NUL byte.
    Nul,
    /// A backslash.
    Backslash,
    /// An empty segment (`a//b`, or a leading `/`: an absolute path).
    EmptySegment,
}

/// Decodes and checks `rest`, the request path after the static prefix (which ends
/// with `/`, so `rest` does not start with one unless the client doubled it).
pub(crate) fn safe_path(rest: &str) -> Result<SafePath, Refusal> {
    let decoded = percent_decode(rest)?;
    if decoded.contains('\0') {
        return Err(Refusal::Nul);
    }
    if decoded.contains('\\') {
        return Err(Refusal::Backslash);
    }
    let trailing_slash = decoded.is_empty() || decoded.ends_with('/');
    let body = decoded.strip_suffix('/').unwrap_or(&decoded);
    let mut segments = Vec::new();
    if !body.is_empty() {
        for segment in body.split('/') {
            match segment {
                "" => return Err(Refusal::EmptySegment),
                ".." => return Err(Refusal::ParentSegment),
                "." => {}
                other => segments.push(other.to_owned()),
            }
        }
    }
    Ok(SafePath {
        segments,
        trailing_slash,
    })
}

/// Percent-decodes `input` (`+` stays a `+`: this is a path, not a form).
fn percent_decode(input: &str) -> Result<String, Refusal> {
    if !input.contains('%') {
        return Ok(input.to_owned());
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|&b| hex_value(b));
            let lo = bytes.get(i + 2).and_then(|&b| hex_value(b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Refusal::BadEncoding);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Refusal::BadEncoding)
}

/// The `Content-Type` for a file name, by its extension (case-insensitive);
/// `application/octet-stream` for anything else.
pub(crate) fn content_type(file_name: &str) -> &'static str {
    let extension = match file_name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(rest: &str) -> Vec<String> {
        safe_path(rest).expect(rest).segments
    }

    #[test]
    fn plain_paths_are_split_into_segments() {
        assert_eq!(segments("a/b.txt"), ["a", "b.txt"]);
        assert_eq!(segments("./a/./b"), ["a", "b"]);
        assert_eq!(segments("a%20b/%C3%A9.txt"), ["a b", "é.txt"]);
        assert_eq!(segments("a+b"), ["a+b"]);
        let root = safe_path("").expect("root");
        assert!(root.segments.is_empty() && root.trailing_slash);
        let dir = safe_path("docs/").expect("dir");
        assert_eq!(dir.segments, ["docs"]);
        assert!(dir.trailing_slash);
        assert!(!safe_path("docs").expect("file").trailing_slash);
        // Dots inside a name are fine.
        assert_eq!(segments("..a/b..c/..."), ["..a", "b..c", "..."]);
    }

    #[test]
    fn escapes_are_refused_after_decoding() {
        let cases = [
            ("..", Refusal::ParentSegment),
            ("../etc/passwd", Refusal::ParentSegment),
            ("a/../../b", Refusal::ParentSegment),
            ("%2e%2e/secret", Refusal::ParentSegment),
            ("%2E%2E", Refusal::ParentSegment),
            ("a%2f..%2fb", Refusal::ParentSegment),
            ("%2f..", Refusal::EmptySegment),
            ("a\0b", Refusal::Nul),
            ("a%00.txt", Refusal::Nul),
            ("..\\secret", Refusal::Backslash),
            ("a%5cb", Refusal::Backslash),
            ("/etc/passwd", Refusal::EmptySegment),
            ("%2fetc/passwd", Refusal::EmptySegment),
            ("a//b", Refusal::EmptySegment),
            ("%zz", Refusal::BadEncoding),
            ("%4", Refusal::BadEncoding),
            ("%ff%fe", Refusal::BadEncoding),
        ];
        for (rest, refusal) in cases {
            assert_eq!(safe_path(rest), Err(refusal), "{rest:?}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("site.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "text/javascript; charset=utf-8"),
            ("data.json", "application/json"),
            ("logo.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.jpeg", "image/jpeg"),
            ("a.gif", "image/gif"),
            ("a.webp", "image/webp"),
            ("favicon.ico", "image/x-icon"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("m.wasm", "application/wasm"),
            ("f.woff2", "font/woff2"),
            ("app.js.map", "application/json"),
            ("feed.xml", "application/xml"),
            ("doc.pdf", "application/pdf"),
            ("archive.tar.gz", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
        ];
        for (name, expected) in cases {
            assert_eq!(content_type(name), expected, "{name}");
        }
    }
}

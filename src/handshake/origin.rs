//! The origin check of a WebSocket upgrade (cross-site WebSocket hijacking), sans-I/O.
//!
//! A browser sends the page's origin with every WebSocket upgrade, and it sends the
//! site's cookies too: without a check, any page a user visits may open a WebSocket to
//! this server in the user's name. [`OriginPolicy`] says which origins a route accepts;
//! [`check_origin`] applies it to a validated upgrade.

use core::fmt;
use core::str::FromStr;

use super::{Upgrade, Version};
use crate::http::{HttpError, Request};

/// 403: the request's origin is not one the route's [`OriginPolicy`] accepts.
pub const ERR_ORIGIN: HttpError = HttpError::new(403, "origin not allowed");

/// Which origins may open a WebSocket on a route, judged from the `Origin` header
/// (`Sec-WebSocket-Origin` for hybi-07/08, the same header as
/// [`Upgrade::origin`]) before the route's upgrade hook runs. A refused request is
/// answered `403 Forbidden` ([`ERR_ORIGIN`]) and never reaches user code.
///
/// - [`SameOrigin`](OriginPolicy::SameOrigin) (the default): the origin's host and
///   port must be the request's `Host` (host case-insensitive, a missing port being
///   the scheme's default: 80 for `http`/`ws`, 443 for `https`/`wss`); the scheme
///   must be one of those four. A page served by this server may connect, other sites
///   may not.
/// - [`AllowList`](OriginPolicy::AllowList): the origin must be one of these, each
///   `scheme://host[:port]`, compared case-insensitively on scheme and host, with the
///   default port normalised (`http://a:80` is `http://a`; a final `/` is ignored).
///   An entry that is no such origin (`null`) is compared as text.
/// - [`Any`](OriginPolicy::Any): no check.
///
/// Under every policy a request **without** an origin header is accepted: browsers
/// always send one, so such a client is not a browser (a command-line tool, a server,
/// a test) and cannot carry a victim's cookies. `Origin: null` (sandboxed frames,
/// `file:` pages, some redirects) is refused by `SameOrigin`, and by `AllowList`
/// unless `"null"` is listed. An origin header that is not UTF-8 is refused by both.
///
/// ```
/// use ringws::handshake::OriginPolicy;
///
/// let same = OriginPolicy::SameOrigin;
/// assert!(same.allows(Some("http://chat.example:8080"), Some("chat.example:8080")));
/// assert!(same.allows(Some("https://Chat.Example"), Some("chat.example:443")));
/// assert!(!same.allows(Some("https://evil.example"), Some("chat.example")));
/// assert!(!same.allows(Some("null"), Some("chat.example")));
/// assert!(same.allows(None, Some("chat.example"))); // not a browser
///
/// let list: OriginPolicy = "https://example.com,http://127.0.0.1:8080".parse().unwrap();
/// assert!(list.allows(Some("HTTPS://example.com:443"), Some("anything")));
/// assert!(!list.allows(Some("http://example.com"), Some("anything")));
/// assert_eq!("same".parse(), Ok(OriginPolicy::SameOrigin));
/// assert_eq!("any".parse(), Ok(OriginPolicy::Any));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (no check): for routes meant for every site, or whose upgrade hook
    /// checks [`UpgradeRequest::origin`](crate::UpgradeRequest::origin) itself.
    Any,
    /// Only these origins (`scheme://host[:port]`; `"null"` to accept `Origin: null`).
    AllowList(Vec<String>),
    /// Only pages of the host the request is addressed to (its `Host` header).
    #[default]
    SameOrigin,
}

impl OriginPolicy {
    /// Whether a request whose origin header is `origin` (`None`: there is none) and
    /// whose `Host` header is `host` passes this policy.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(str::trim_ascii) else {
            return true;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(list) => list.iter().any(|entry| same_entry(entry, origin)),
            OriginPolicy::SameOrigin => host.is_some_and(|host| same_host(origin, host)),
        }
    }
}

/// Applies `policy` to a validated upgrade: the origin header is the one
/// [`Upgrade::origin`] reads (`Sec-WebSocket-Origin`, else `Origin`, for hybi-07/08;
/// `Origin` otherwise), compared with the `Host` header. `Err(`[`ERR_ORIGIN`]`)` when
/// refused; answer it with [`write_rejection`](super::write_rejection).
pub fn check_origin(
    policy: &OriginPolicy,
    request: &Request<'_>,
    upgrade: &Upgrade<'_>,
) -> Result<(), HttpError> {
    if *policy == OriginPolicy::Any {
        return Ok(());
    }
    let origin = match origin_header(request, upgrade.version) {
        None => None,
        Some(raw) => match core::str::from_utf8(raw) {
            Ok(origin) => Some(origin),
            // A header that is there but unreadable is not "no origin".
            Err(_) => return Err(ERR_ORIGIN),
        },
    };
    let host = request.header_str("Host").map(str::trim_ascii);
    match policy.allows(origin, host) {
        true => Ok(()),
        false => Err(ERR_ORIGIN),
    }
}

/// The origin header of a request of `version`, as sent: `Origin` for RFC 6455 and
/// the hixie drafts, `Sec-WebSocket-Origin` (else `Origin`) for hybi-07/08.
pub(super) fn origin_header<'b>(request: &Request<'b>, version: Version) -> Option<&'b [u8]> {
    match version {
        Version::V13 | Version::Hixie76 | Version::Hixie75 => request.header("Origin"),
        Version::V8 | Version::V7 => request
            .header("Sec-WebSocket-Origin")
            .or_else(|| request.header("Origin")),
    }
}

/// Why a text is no [`OriginPolicy`] (from [`OriginPolicy::from_str`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOriginPolicyError {
    entry: String,
}

impl fmt::Display for ParseOriginPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an origin: {:?} (expected any, same, or a comma-separated list of \
             scheme://host[:port] such as https://example.com)",
            self.entry
        )
    }
}

impl std::error::Error for ParseOriginPolicyError {}

impl FromStr for OriginPolicy {
    type Err = ParseOriginPolicyError;

    /// `any`, `same`, or a comma-separated allow-list of origins
    /// (`https://example.com,http://127.0.0.1:8080`; `null` may be listed): the syntax
    /// of `ringws serve --allowed-origins`.
    fn from_str(text: &str) -> Result<OriginPolicy, ParseOriginPolicyError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("any") {
            return Ok(OriginPolicy::Any);
        }
        if text.eq_ignore_ascii_case("same") {
            return Ok(OriginPolicy::SameOrigin);
        }
        let mut list = Vec::new();
        for entry in text.split(',').map(str::trim) {
            if entry != "null" && parse_origin(entry).is_none() {
                let entry = entry.to_owned();
                return Err(ParseOriginPolicyError { entry });
            }
            list.push(entry.to_owned());
        }
        Ok(OriginPolicy::AllowList(list))
    }
}

/// A serialized origin, `scheme://host[:port]`, its port resolved to the scheme's
/// default when absent (`None` for a scheme without one).
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl Origin<'_> {
    fn matches(&self, other: &Origin<'_>) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.host.eq_ignore_ascii_case(other.host)
            && self.port == other.port
    }
}

/// Parses `scheme://host[:port]` (a final `/` allowed); `None` for anything else.
fn parse_origin(text: &str) -> Option<Origin<'_>> {
    let text = text.strip_suffix('/').unwrap_or(text);
    let (scheme, authority) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid_scheme = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let (host, port) = parse_authority(authority)?;
    Some(Origin {
        scheme,
        host,
        port: port.or_else(|| default_port(scheme)),
    })
}

/// Parses `host[:port]` (an IPv6 host in brackets); `None` when malformed.
fn parse_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, rest) = match text.strip_prefix('[') {
        Some(inner) => {
            let end = inner.find(']')? + 2;
            text.split_at(end)
        }
        None => text.split_at(text.find(':').unwrap_or(text.len())),
    };
    let bracketed = host.starts_with('[');
    let inner = host.trim_start_matches('[').trim_end_matches(']');
    let valid_host = !inner.is_empty()
        && inner.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(c, '/' | '?' | '#' | '@' | '\\' | '[' | ']')
                && (bracketed || c != ':')
        });
    if !valid_host {
        return None;
    }
    let port = match rest {
        "" => None,
        _ => {
            let digits = rest.strip_prefix(':')?;
            let all_digits =
                (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            if !all_digits {
                return None;
            }
            Some(digits.parse().ok()?)
        }
    };
    Some((host, port))
}

/// The default port of the web's schemes.
fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

/// An allow-list entry against an origin: as origins when both are, else as text.
fn same_entry(entry: &str, origin: &str) -> bool {
    let entry = entry.trim();
    match (parse_origin(entry), parse_origin(origin)) {
        (Some(entry), Some(origin)) => entry.matches(&origin),
        _ => entry.eq_ignore_ascii_case(origin),
    }
}

/// The same-origin rule: a web scheme, and the origin's host and port are the `Host`
/// header's (whose missing port is the origin scheme's default).
fn same_host(origin: &str, host: &str) -> bool {
    let Some(origin) = parse_origin(origin) else {
        return false;
    };
    let Some(default) = default_port(origin.scheme) else {
        return false;
    };
    let Some((host, port)) = parse_authority(host) else {
        return false;
    };
    origin.host.eq_ignore_ascii_case(host) && origin.port == Some(port.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::AllowList(entries.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn origins_parse_with_default_ports() {
        let o = |scheme, host, port| Some(Origin { scheme, host, port });
        assert_eq!(parse_origin("http://a"), o("http", "a", Some(80)));
        assert_eq!(parse_origin("wss://a:8443/"), o("wss", "a", Some(8443)));
        assert_eq!(
            parse_origin("https://[::1]:9"),
            o("https", "[::1]", Some(9))
        );
        assert_eq!(parse_origin("HTTPS://A"), o("HTTPS", "A", Some(443)));
        assert_eq!(
            parse_origin("chrome-extension://id"),
            o("chrome-extension", "id", None)
        );
        for bad in [
            "",
            "null",
            "a",
            "http://",
            "http://a:",
            "http://a:x",
            "http://a:65536",
            "http://a:123456",
            "http://a/path",
            "http://u@a",
            "1http://a",
            "http://a b",
            "http://[::1",
            "http://[]:80",
            "http://a:80:80",
            "://a",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn same_origin_compares_host_and_port_with_the_host_header() {
        let same = OriginPolicy::SameOrigin;
        let yes = |origin, host| same.allows(Some(origin), Some(host));
        assert!(yes("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(yes("http://Example.COM", "example.com"));
        assert!(yes("http://example.com", "example.com:80"));
        assert!(yes("HTTP://example.com", "example.com:80"));
        assert!(yes("WSS://example.com", "example.com:443"));
        assert!(yes("http://example.com:80", "example.com"));
        assert!(yes("https://example.com", "example.com"));
        assert!(yes("https://example.com", "example.com:443"));
        assert!(yes("http://[::1]:8080", "[::1]:8080"));
        assert!(yes(" http://a ", "a"));
        assert!(!yes("https://example.com", "example.com:80"));
        assert!(!yes("http://example.com:8080", "example.com"));
        assert!(!yes("http://example.com", "example.com:8080"));
        assert!(!yes("http://evil.example", "example.com"));
        assert!(!yes("http://example.com.evil", "example.com"));
        assert!(!yes("http://localhost:8080", "127.0.0.1:8080"));
        assert!(!yes("null", "example.com"));
        assert!(!yes("", "example.com"));
        assert!(!yes("chrome-extension://example.com", "example.com"));
        assert!(!yes("http://example.com/path", "example.com"));
        assert!(!yes("http://example.com", "example.com:x"));
        assert!(!same.allows(Some("http://example.com"), None));
        // No origin: not a browser.
        assert!(same.allows(None, Some("example.com")));
        assert!(same.allows(None, None));
    }

    #[test]
    fn allow_lists_normalise_case_and_default_ports() {
        let policy = list(&["https://Example.com", "http://127.0.0.1:8080/", "null"]);
        let yes = |origin| policy.allows(Some(origin), Some("server"));
        assert!(yes("https://example.com"));
        assert!(yes("HTTPS://EXAMPLE.COM:443"));
        assert!(yes("http://127.0.0.1:8080"));
        assert!(yes("null"));
        assert!(!yes("http://example.com"));
        assert!(!yes("https://example.com:8443"));
        assert!(!yes("https://sub.example.com"));
        assert!(!yes("http://127.0.0.1"));
        assert!(!yes("http://127.0.0.1:80800"));
        assert!(policy.allows(None, Some("server")));
        let default_port = list(&["http://a:80"]);
        assert!(default_port.allows(Some("http://a"), None));
        assert!(default_port.allows(Some("HTTP://A:80"), None));
        assert!(default_port.allows(Some("HTTP://A"), None));
        assert!(!default_port.allows(Some("https://a"), None));
        assert!(!list(&["https://example.com"]).allows(Some("null"), None));
        assert!(!list(&[]).allows(Some("http://a"), None));
    }

    #[test]
    fn any_allows_everything() {
        for origin in [
            None,
            Some("null"),
            Some("http://evil.example"),
            Some("junk"),
        ] {
            assert!(OriginPolicy::Any.allows(origin, Some("server")));
        }
    }

    #[test]
    fn policies_parse_from_the_command_line_syntax() {
        assert_eq!("any".parse(), Ok(OriginPolicy::Any));
        assert_eq!(" Same ".parse(), Ok(OriginPolicy::SameOrigin));
        assert_eq!(
            "https://example.com, http://127.0.0.1:8080,null".parse(),
            Ok(list(&[
                "https://example.com",
                "http://127.0.0.1:8080",
                "null"
            ]))
        );
        for bad in [
            "",
            "example.com",
            "https://a,",
            "https://a/x",
            "http://a:99999",
        ] {
            let error = bad.parse::<OriginPolicy>().expect_err(bad);
            assert!(error.to_string().starts_with("not an origin: "), "{error}");
        }
        assert_eq!(OriginPolicy::default(), OriginPolicy::SameOrigin);
    }
}

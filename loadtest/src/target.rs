//! `ws://` URL parsing and the loopback check that keeps the load generator pointed at
//! machines its user owns.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A parsed and resolved `ws://` target.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The `Host` header value: host, plus `:port` when the URL named one.
    pub host_header: String,
    /// Path and query sent in the request line (`/` when the URL had none).
    pub path_and_query: String,
    /// The addresses the host resolved to (connections use the first).
    pub addrs: Vec<SocketAddr>,
}

impl Target {
    /// Parses `url` (`ws://host[:port][/path][?query]`, port 80 by default) and resolves
    /// its host. `wss://` is refused: TLS is not supported yet.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = if let Some(rest) = strip_prefix_ci(url, "ws://") {
            rest
        } else if strip_prefix_ci(url, "wss://").is_some() {
            return Err(format!("{url}: wss:// (TLS) is not supported, use ws://"));
        } else {
            return Err(format!("{url}: expected a ws:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let path = match path.find('#') {
            Some(i) => path[..i].to_string(),
            None => path,
        };
        if authority.contains('@') {
            return Err(format!("{url}: user info in the URL is not supported"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| format!("{url}: bad host or port"))?;
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{url}: {host} resolved to no address"));
        }
        Ok(Target {
            url: url.to_string(),
            host_header: authority.to_string(),
            path_and_query: path,
            addrs,
        })
    }

    /// The address connections go to.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// True when every address the host resolved to is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.addrs.iter().all(|a| is_loopback_ip(a.ip()))
    }

    /// Refuses a target that is not on this machine unless `i_own_the_target`.
    pub fn check_allowed(&self, i_own_the_target: bool) -> Result<(), String> {
        if i_own_the_target || self.is_loopback() {
            return Ok(());
        }
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.ip().to_string()).collect();
        Err(format!(
            "refusing to load {} ({}): it is not a loopback address (127.0.0.0/8, ::1, localhost). \
             Load-test only servers you own; if you do, pass --i-own-the-target",
            self.url,
            addrs.join(", ")
        ))
    }
}

/// 127.0.0.0/8, `::1`, and IPv4-mapped `::ffff:127.x.y.z`.
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; the host comes back without brackets.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => 80,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/echo?x=1").unwrap();
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/echo?x=1");
        assert_eq!(t.addr(), "127.0.0.1:8080".parse().unwrap());
        let t = Target::parse("WS://[::1]").unwrap();
        assert_eq!(t.path_and_query, "/");
        assert_eq!(t.addr(), "[::1]:80".parse().unwrap());
        let t = Target::parse("ws://127.0.0.1:9?q").unwrap();
        assert_eq!(t.path_and_query, "/?q");
        assert!(Target::parse("wss://127.0.0.1/")
            .unwrap_err()
            .contains("TLS"));
        assert!(Target::parse("http://127.0.0.1/").is_err());
        assert!(Target::parse("ws://127.0.0.1:99999/").is_err());
        assert!(Target::parse("ws:///x").is_err());
    }

    #[test]
    fn loopback_check() {
        for ok in [
            "ws://127.0.0.1:1/",
            "ws://127.8.9.10/",
            "ws://[::1]:5/",
            "ws://localhost:1/",
        ] {
            let t = Target::parse(ok).unwrap();
            assert!(t.is_loopback(), "{ok}");
            assert!(t.check_allowed(false).is_ok(), "{ok}");
        }
        for remote in [
            "ws://10.0.0.1/",
            "ws://192.0.2.7:8080/x",
            "ws://[2001:db8::1]/",
            "ws://0.0.0.0/",
        ] {
            let t = Target::parse(remote).unwrap();
            let err = t.check_allowed(false).unwrap_err();
            assert!(err.contains("--i-own-the-target"), "{err}");
            assert!(t.check_allowed(true).is_ok());
        }
        assert!(is_loopback_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback_ip("::ffff:10.0.0.1".parse().unwrap()));
    }
}

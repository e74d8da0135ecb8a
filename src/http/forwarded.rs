//! The client's address behind a reverse proxy, sans-I/O: which TCP peers are trusted
//! proxies ([`TrustedProxies`], a list of [`Cidr`] networks), and the address they
//! forwarded in `X-Forwarded-For` or RFC 7239 `Forwarded` ([`TrustedProxies::client_addr`]).
//!
//! The rule: when the TCP peer is **not** in the list, the headers are ignored and the
//! peer is the client (anyone can send them). When it is, the header the proxies write
//! ([`ForwardedHeader`], `X-Forwarded-For` by default; only that one is read) is read
//! from its right end, where the nearest proxy appended the address it saw: addresses
//! in the list are skipped (a chain of trusted proxies), and the first one that is not
//! is the client. When every address is trusted, the left-most is. The address has port
//! 0 unless the header gave one. Anything that cannot be read up to the chosen address
//! (a malformed element, `unknown` or an obfuscated `Forwarded` node, a `Forwarded`
//! header that is not RFC 7239, no header at all) leaves the TCP peer as the client:
//! a garbled header is ignored, never a panic. What lies left of the chosen address was
//! written by the client and is never looked at, so a client cannot make its own address
//! unreadable by sending a garbled header that the proxy appends to.
//!
//! ```
//! use std::net::SocketAddr;
//! use ringws::http::{header_storage, parse_request, Parse, TrustedProxies};
//!
//! let proxies: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse().unwrap();
//! let head = b"GET /chat HTTP/1.1\r\nHost: a\r\n\
//!              X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.1.2.3\r\n\r\n";
//! let mut headers = header_storage();
//! let Ok(Parse::Complete { request, .. }) = parse_request(head, &mut headers, 8192) else {
//!     panic!("incomplete");
//! };
//! // From the proxy: the right-most address that is not a trusted proxy.
//! let nginx: SocketAddr = "127.0.0.1:51000".parse().unwrap();
//! assert_eq!(proxies.client_addr(nginx, &request), "203.0.113.9:0".parse().unwrap());
//! // From anyone else: the header is ignored.
//! let direct: SocketAddr = "192.0.2.1:40000".parse().unwrap();
//! assert_eq!(proxies.client_addr(direct, &request), direct);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use super::Request;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address
/// (`127.0.0.1`, `::1`, `[::1]`, which are `/32` and `/128`). Host bits past the prefix
/// are cleared (`10.1.2.3/8` is `10.0.0.0/8`), and an IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`) is the IPv4 network it maps (`10.0.0.0/8`), so it matches
/// IPv4 peers whichever way the listener reports them.
///
/// ```
/// use ringws::http::Cidr;
///
/// let net: Cidr = "10.1.2.3/8".parse().unwrap();
/// assert_eq!(net.to_string(), "10.0.0.0/8");
/// assert!(net.contains("10.200.0.1".parse().unwrap()));
/// assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is not an address or a CIDR network, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidCidr {
    input: String,
    why: &'static str,
}

impl InvalidCidr {
    fn new(input: &str, why: &'static str) -> InvalidCidr {
        InvalidCidr {
            input: input.to_owned(),
            why,
        }
    }
}

impl fmt::Display for InvalidCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an IP address or CIDR network (such as 10.0.0.0/8 or ::1): {:?}: {}",
            self.input, self.why
        )
    }
}

impl std::error::Error for InvalidCidr {}

impl Cidr {
    /// The network of `addr` with a prefix of `prefix` bits (at most 32 for IPv4, 128
    /// for IPv6); host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, InvalidCidr> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(InvalidCidr::new(
                &format!("{addr}/{prefix}"),
                "the prefix is longer than the address",
            ));
        }
        // An IPv4-mapped network (::ffff:a.b.c.d/96+) is the IPv4 network it maps.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask128(prefix))),
        };
        Ok(Cidr { addr, prefix })
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is in the network (an IPv4-mapped IPv6 address counts as the IPv4
    /// address it maps).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(input: &str) -> Result<Cidr, InvalidCidr> {
        let text = input.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| InvalidCidr::new(input, "not an IP address"))?;
        let prefix = match prefix {
            None => match addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .map_err(|_| InvalidCidr::new(input, "the prefix is not a number"))?,
            Some(_) => return Err(InvalidCidr::new(input, "the prefix is not a number")),
        };
        Cidr::new(addr, prefix).map_err(|e| InvalidCidr::new(input, e.why))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<IpAddr> for Cidr {
    /// The single address (`/32` or `/128`).
    fn from(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr::new(addr, prefix).expect("a full-length prefix is valid")
    }
}

/// Which header the trusted proxies write the client's address into. Only that one
/// is read: a proxy passes the other through as the client sent it, so reading both
/// would let a client forge its address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`, most load
    /// balancers). Elements are `1.2.3.4`, `1.2.3.4:port`, `2001:db8::1`, `[2001:db8::1]`
    /// or `[2001:db8::1]:port`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`:
    /// the `for` parameter of each element.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "X-Forwarded-For",
            ForwardedHeader::Forwarded => "Forwarded",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;

    /// `x-forwarded-for` or `forwarded` (case-insensitive).
    fn from_str(s: &str) -> Result<ForwardedHeader, String> {
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(ForwardedHeader::XForwardedFor)
        } else if s.eq_ignore_ascii_case("forwarded") {
            Ok(ForwardedHeader::Forwarded)
        } else {
            Err(format!(
                "unknown header {s:?}: expected x-forwarded-for or forwarded"
            ))
        }
    }
}

/// The reverse proxies whose forwarding header says who the client is (see the module
/// documentation for the rule), and which header that is. Empty by default: no peer is
/// trusted and the TCP peer is always the client.
///
/// ```
/// use ringws::http::{Cidr, ForwardedHeader, TrustedProxies};
///
/// let proxies = TrustedProxies::parse(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]).unwrap();
/// assert!(proxies.contains("10.9.8.7".parse().unwrap()));
/// let same: TrustedProxies = "127.0.0.1 10.0.0.0/8, fd00::/8".parse().unwrap();
/// assert_eq!(proxies, same);
/// let error = TrustedProxies::parse(["10.0.0.0/8", "proxy.local"]).unwrap_err();
/// assert!(error.to_string().contains("proxy.local"));
/// let rfc7239 = proxies.header(ForwardedHeader::Forwarded);
/// # let _ = rfc7239;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// No trusted proxy.
    pub fn new() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// Each string an address or CIDR network; the first that is neither is the error.
    pub fn parse<I, S>(list: I) -> Result<TrustedProxies, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = list
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(TrustedProxies {
            nets,
            header: ForwardedHeader::default(),
        })
    }

    /// Adds a network (or, with `Cidr::from(ip)`, one address).
    pub fn with(mut self, net: Cidr) -> TrustedProxies {
        self.nets.push(net);
        self
    }

    /// Which header the proxies write (default [`ForwardedHeader::XForwardedFor`]).
    pub fn header(mut self, header: ForwardedHeader) -> TrustedProxies {
        self.header = header;
        self
    }

    /// The header that is read.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[Cidr] {
        &self.nets
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `ip` is a trusted proxy's address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The client's address for a request that came from the TCP peer `peer`: `peer`
    /// itself unless it is a trusted proxy and its header names the client (see the
    /// module documentation). Never panics, whatever the headers hold.
    pub fn client_addr(&self, peer: SocketAddr, request: &Request<'_>) -> SocketAddr {
        if !self.contains(peer.ip()) {
            return peer;
        }
        let name = self.header.name();
        let values: Vec<&[u8]> = request
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect();
        let found = match self.header {
            ForwardedHeader::XForwardedFor => self.walk(x_forwarded_for(&values)),
            ForwardedHeader::Forwarded => match forwarded_nodes(&values) {
                Some(nodes) => self.walk(nodes.into_iter().rev()),
                None => None,
            },
        };
        found.unwrap_or(peer)
    }

    /// Walks the hops from the nearest (right-most) one: the first address that is not
    /// trusted, or the last one when all are; `None` when a hop cannot be read before
    /// that, or there is none.
    fn walk(&self, hops: impl Iterator<Item = Option<SocketAddr>>) -> Option<SocketAddr> {
        let mut last = None;
        for hop in hops {
            let addr = hop?;
            if !self.contains(addr.ip()) {
                return Some(addr);
            }
            last = Some(addr);
        }
        last
    }
}

impl FromStr for TrustedProxies {
    type Err = InvalidCidr;

    /// Addresses and networks separated by commas or white space.
    fn from_str(s: &str) -> Result<TrustedProxies, InvalidCidr> {
        TrustedProxies::parse(
            s.split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|part| !part.is_empty()),
        )
    }
}

/// The elements of every `X-Forwarded-For` value, right-most first, each parsed as
/// an address (`None`: it is not one); empty elements are skipped.
fn x_forwarded_for<'v>(values: &'v [&[u8]]) -> impl Iterator<Item = Option<SocketAddr>> + 'v {
    values
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
        .map(parse_xff_element)
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_xff_element(element: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(element).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(socket(ip, 0));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 0,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        return Some(socket(IpAddr::V6(ip), port));
    }
    let (ip, port) = text.split_once(':')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some(socket(IpAddr::V4(ip), parse_port(port)?))
}

/// Decimal digits only (`u16::from_str` also takes a `+`), at most 65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The socket address, IPv4-mapped IPv6 addresses as the IPv4 address they map.
fn socket(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

/// The `for` node of every element of every `Forwarded` value, left to right (`None`
/// for an element without `for`, or one that is `unknown`, obfuscated or not an
/// address); `None` as a whole when a value is not RFC 7239.
fn forwarded_nodes(values: &[&[u8]]) -> Option<Vec<Option<SocketAddr>>> {
    let mut nodes = Vec::new();
    for value in values {
        parse_forwarded_value(value, &mut nodes)?;
    }
    Some(nodes)
}

/// RFC 7239 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The longest node value read (`"[v6]:65535"` is 47 bytes).
const MAX_NODE: usize = 64;

/// One `Forwarded` value: `1#forwarded-element`, elements `pair *( ";" pair )`,
/// pairs `token "=" ( token / quoted-string )`. Optional white space is taken around
/// `,` and `;`; an empty element or pair is allowed, as the grammar's brackets say.
fn parse_forwarded_value(value: &[u8], nodes: &mut Vec<Option<SocketAddr>>) -> Option<()> {
    let mut i = 0;
    let skip_ows = |i: &mut usize| {
        while *i < value.len() && matches!(value[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    loop {
        // One element.
        let mut node: Option<Option<SocketAddr>> = None;
        loop {
            skip_ows(&mut i);
            if i < value.len() && value[i] != b',' && value[i] != b';' {
                // A pair.
                let start = i;
                while i < value.len() && is_tchar(value[i]) {
                    i += 1;
                }
                let name = &value[start..i];
                if name.is_empty() || value.get(i) != Some(&b'=') {
                    return None;
                }
                i += 1;
                let mut text = [0u8; MAX_NODE];
                let mut len = 0;
                let mut too_long = false;
                let mut push = |b: u8| {
                    if len < MAX_NODE {
                        text[len] = b;
                        len += 1;
                    } else {
                        too_long = true;
                    }
                };
                if value.get(i) == Some(&b'"') {
                    i += 1;
                    loop {
                        match *value.get(i)? {
                            b'"' => {
                                i += 1;
                                break;
                            }
                            b'\\' => {
                                let escaped = *value.get(i + 1)?;
                                if !is_text(escaped) {
                                    return None;
                                }
                                push(escaped);
                                i += 2;
                            }
                            b if is_text(b) => {
                                push(b);
                                i += 1;
                            }
                            _ => return None,
                        }
                    }
                } else {
                    let start = i;
                    while i < value.len() && is_tchar(value[i]) {
                        push(value[i]);
                        i += 1;
                    }
                    if i == start {
                        return None;
                    }
                }
                if name.eq_ignore_ascii_case(b"for") {
                    if node.is_some() {
                        // "each parameter MUST NOT occur more than once per element"
                        return None;
                    }
                    node = Some(if too_long {
                        None
                    } else {
                        parse_node(&text[..len])
                    });
                }
                skip_ows(&mut i);
            }
            match value.get(i) {
                Some(b';') => i += 1,
                Some(b',') | None => break,
                Some(_) => return None,
            }
        }
        nodes.push(node.flatten());
        match value.get(i) {
            Some(b',') => i += 1,
            _ => return Some(()),
        }
    }
}

/// `qdtext` and `quoted-pair` octets: HTAB, SP, visible ASCII, obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// RFC 7239 `node = nodename [ ":" node-port ]`: `192.0.2.1`, `"192.0.2.1:80"`,
/// `"[2001:db8::1]"`, `"[2001:db8::1]:80"`; an obfuscated port (`_abc`) is port 0.
/// `unknown` and obfuscated names are not addresses.
fn parse_node(node: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(node).ok()?;
    let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (IpAddr::V6(ip), port)
    } else {
        let (ip, port) = match text.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (text, None),
        };
        (IpAddr::V4(ip.parse().ok()?), port)
    };
    let port = match port {
        None => 0,
        Some(obfuscated) if is_obfuscated(obfuscated) => 0,
        Some(port) => parse_port(port)?,
    };
    Some(socket(ip, port))
}

/// `obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-")`.
fn is_obfuscated(text: &str) -> bool {
    text.len() > 1
        && text.starts_with('_')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{header_storage, parse_request, Parse};

    const PROXY: &str = "127.0.0.1:40000";

    /// The client address for a request with these header lines from `peer`.
    fn client(proxies: &TrustedProxies, peer: &str, lines: &[&str]) -> SocketAddr {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for line in lines {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut headers = header_storage();
        let Ok(Parse::Complete { request, .. }) =
            parse_request(head.as_bytes(), &mut headers, 8192)
        else {
            panic!("bad test request: {head:?}");
        };
        proxies.client_addr(peer.parse().unwrap(), &request)
    }

    fn local() -> TrustedProxies {
        "127.0.0.1, 10.0.0.0/8, fd00::/8".parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let cases = [
            ("127.0.0.1", "127.0.0.1/32"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("[::1]", "::1/128"),
            ("fd12:3456::/8", "fd00::/8"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.1", "192.0.2.1/32"),
            (" 192.168.0.0/16 ", "192.168.0.0/16"),
        ];
        for (input, shown) in cases {
            let net: Cidr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(net.to_string(), shown, "{input}");
        }
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "proxy.local",
            "10.0.0",
            "010.0.0.1",
            "[10.0.0.1]x",
            "fe80::1%eth0",
            "10.0.0.0/8/8",
        ] {
            let error = bad.parse::<Cidr>().unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
        let any4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any4.contains("255.1.2.3".parse().unwrap()));
        assert!(!any4.contains("::1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_lists_parse() {
        let list: TrustedProxies = " 127.0.0.1,10.0.0.0/8  ::1 ".parse().unwrap();
        assert_eq!(list.nets().len(), 3);
        assert!(list.contains("::1".parse().unwrap()));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let error = "127.0.0.1, nope".parse::<TrustedProxies>().unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
        let built = TrustedProxies::new()
            .with(Cidr::from(IpAddr::from([127, 0, 0, 1])))
            .header(ForwardedHeader::Forwarded);
        assert_eq!(built.forwarded_header(), ForwardedHeader::Forwarded);
        assert_eq!("FORWARDED".parse(), Ok(ForwardedHeader::Forwarded));
        assert_eq!(
            "x-forwarded-for".parse(),
            Ok(ForwardedHeader::XForwardedFor)
        );
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn an_untrusted_peer_keeps_its_address() {
        let peer = "192.0.2.1:5000";
        let forged = ["X-Forwarded-For: 203.0.113.9", "Forwarded: for=203.0.113.9"];
        assert_eq!(client(&local(), peer, &forged), addr(peer));
        let none = TrustedProxies::new();
        assert_eq!(client(&none, PROXY, &forged), addr(PROXY));
        let rfc = local().header(ForwardedHeader::Forwarded);
        assert_eq!(client(&rfc, peer, &forged), addr(peer));
    }

    #[test]
    fn x_forwarded_for_from_a_trusted_peer() {
        let p = local();
        let xff = |value: &str| client(&p, PROXY, &[&format!("X-Forwarded-For: {value}")]);
        assert_eq!(xff("203.0.113.9"), addr("203.0.113.9:0"));
        // The right-most untrusted one, past a chain of trusted proxies.
        assert_eq!(
            xff("198.51.100.1, 203.0.113.9, 10.0.0.2"),
            addr("203.0.113.9:0")
        );
        assert_eq!(
            xff("198.51.100.1,203.0.113.9,10.0.0.2,127.0.0.1"),
            addr("203.0.113.9:0")
        );
        // Every one trusted: the left-most.
        assert_eq!(xff("10.9.9.9, 10.0.0.2"), addr("10.9.9.9:0"));
        // Ports, IPv6 with and without brackets, IPv4-mapped.
        assert_eq!(xff("203.0.113.9:4711"), addr("203.0.113.9:4711"));
        assert_eq!(xff("2001:db8::1"), addr("[2001:db8::1]:0"));
        assert_eq!(xff("[2001:db8::1]"), addr("[2001:db8::1]:0"));
        assert_eq!(xff("[2001:db8::1]:443"), addr("[2001:db8::1]:443"));
        assert_eq!(xff("::ffff:203.0.113.9"), addr("203.0.113.9:0"));
        assert_eq!(xff("203.0.113.9, fd00::1"), addr("203.0.113.9:0"));
        // Empty elements and white space are skipped.
        assert_eq!(xff(" , 203.0.113.9 ,\t, "), addr("203.0.113.9:0"));
        // Garbage left of the chosen address was the client's and is never read.
        assert_eq!(xff("nonsense, 203.0.113.9"), addr("203.0.113.9:0"));
        assert_eq!(xff("\u{e9}t\u{e9}, 203.0.113.9"), addr("203.0.113.9:0"));
    }

    #[test]
    fn several_x_forwarded_for_lines_are_one_list() {
        let lines = [
            "X-Forwarded-For: 198.51.100.1",
            "X-Real-IP: 192.0.2.200",
            "x-forwarded-for: 203.0.113.9, 10.0.0.2",
        ];
        assert_eq!(client(&local(), PROXY, &lines), addr("203.0.113.9:0"));
        let lines = ["X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 10.0.0.2"];
        assert_eq!(client(&local(), PROXY, &lines), addr("198.51.100.1:0"));
    }

    #[test]
    fn a_malformed_x_forwarded_for_keeps_the_peer() {
        let p = local();
        for bad in [
            "unknown",
            "203.0.113.9, garbage",
            "203.0.113.9:",
            "203.0.113.9:+80",
            "203.0.113.9:65536",
            "203.0.113.9:80:80",
            "[2001:db8::1",
            "[2001:db8::1]80",
            "[203.0.113.9]",
            "2001:db8::1:80:",
            "fe80::1%eth0",
            "203.0.113.9 10.0.0.2",
            ",,,",
            "",
        ] {
            let line = format!("X-Forwarded-For: {bad}");
            assert_eq!(client(&p, PROXY, &[&line]), addr(PROXY), "{bad:?}");
        }
        // A garbled hop between trusted proxies stops the walk there.
        let line = "X-Forwarded-For: 203.0.113.9, oops, 10.0.0.2";
        assert_eq!(client(&p, PROXY, &[line]), addr(PROXY));
        // No header at all.
        assert_eq!(client(&p, PROXY, &[]), addr(PROXY));
        // Only the configured header is read.
        assert_eq!(
            client(&p, PROXY, &["Forwarded: for=203.0.113.9"]),
            addr(PROXY)
        );
    }

    #[test]
    fn forwarded_from_a_trusted_peer() {
        let p = local().header(ForwardedHeader::Forwarded);
        let fwd = |value: &str| client(&p, PROXY, &[&format!("Forwarded: {value}")]);
        assert_eq!(fwd("for=203.0.113.9"), addr("203.0.113.9:0"));
        assert_eq!(fwd("For=\"203.0.113.9\""), addr("203.0.113.9:0"));
        // RFC 7239's own examples.
        assert_eq!(fwd("for=\"_gazonk\""), addr(PROXY));
        assert_eq!(
            fwd("For=\"[2001:db8:cafe::17]:4711\""),
            addr("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(
            fwd("for=192.0.2.60;proto=http;by=203.0.113.43"),
            addr("192.0.2.60:0")
        );
        assert_eq!(
            fwd("for=192.0.2.43, for=198.51.100.17"),
            addr("198.51.100.17:0")
        );
        // Past trusted proxies; parameters in any order and case; white space around ; and ,.
        assert_eq!(
            fwd("for=198.51.100.17;proto=https, by=10.0.0.1; FOR=\"203.0.113.9:8080\" , for=10.0.0.2"),
            addr("203.0.113.9:8080")
        );
        assert_eq!(fwd("for=\"[2001:db8::1]\""), addr("[2001:db8::1]:0"));
        assert_eq!(fwd("for=\"203.0.113.9:_obf\""), addr("203.0.113.9:0"));
        assert_eq!(fwd("for=\"\\2\\03.0.113.9\""), addr("203.0.113.9:0"));
        assert_eq!(fwd("for=10.1.1.1, for=10.0.0.2"), addr("10.1.1.1:0"));
        // Unknown, obfuscated or absent `for` at the nearest hop: the peer.
        for value in [
            "for=unknown",
            "for=_hidden, for=10.0.0.2",
            "proto=https",
            "for=\"[2001:db8::1]:\"",
            "for=2001:db8::1",
            "for=\"2001:db8::1\"",
        ] {
            assert_eq!(fwd(value), addr(PROXY), "{value:?}");
        }
        // Several header lines are one list.
        let lines = [
            "Forwarded: for=198.51.100.1",
            "Forwarded: for=203.0.113.9;by=x, for=10.0.0.2",
        ];
        assert_eq!(client(&p, PROXY, &lines), addr("203.0.113.9:0"));
        // X-Forwarded-For is not read when Forwarded is the header.
        assert_eq!(
            client(&p, PROXY, &["X-Forwarded-For: 203.0.113.9"]),
            addr(PROXY)
        );
    }

    #[test]
    fn a_malformed_forwarded_is_ignored_whole() {
        let p = local().header(ForwardedHeader::Forwarded);
        for bad in [
            "for",
            "for=",
            "=203.0.113.9",
            "for=203.0.113.9;for=198.51.100.1",
            "for=\"203.0.113.9",
            "for=\"203.0.113.9\"x",
            "for=203.0.113.9 by=x",
            "for=[2001:db8::1]",
            "for=\"a\\\"",
            "for=1.2.3.4, for=\"",
            "for = 1.2.3.4",
        ] {
            let line = format!("Forwarded: {bad}");
            assert_eq!(client(&p, PROXY, &[&line]), addr(PROXY), "{bad:?}");
        }
        // A bad line anywhere spoils the list, even left of a good hop.
        let lines = ["Forwarded: for=\"oops", "Forwarded: for=203.0.113.9"];
        assert_eq!(client(&p, PROXY, &lines), addr(PROXY));
        // Control characters never reach here (the request parser refuses them), but
        // the value parser refuses them too.
        for raw in [&b"for=\"\x7f\""[..], b"for=\"\x00\"", b"for=\"a\\\x01\""] {
            assert_eq!(parse_forwarded_value(raw, &mut Vec::new()), None, "{raw:?}");
        }
        assert_eq!(
            parse_forwarded_value(b"for=\"\x80\t\"", &mut Vec::new()),
            Some(())
        );
        // A long node value is not an address.
        let long = format!("Forwarded: for=\"{}\"", "1".repeat(200));
        assert_eq!(client(&p, PROXY, &[&long]), addr(PROXY));
    }

    #[test]
    fn an_ipv4_mapped_proxy_is_the_ipv4_proxy() {
        let line = "X-Forwarded-For: 203.0.113.9";
        assert_eq!(
            client(&local(), "[::ffff:127.0.0.1]:40000", &[line]),
            addr("203.0.113.9:0")
        );
        assert_eq!(
            client(&local(), "[fd00::7]:40000", &[line]),
            addr("203.0.113.9:0")
        );
        assert_eq!(
            client(&local(), "[::1]:40000", &[line]),
            addr("[::1]:40000")
        );
    }
}

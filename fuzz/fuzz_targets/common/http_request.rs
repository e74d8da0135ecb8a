//! Fuzzes the HTTP/1.x request head parser and what the server reads from a parsed
//! head: `Content-Length`, keep-alive, and the client address behind trusted proxies
//! (`X-Forwarded-For`, `Forwarded`; the query read as a list of CIDR networks). Nothing
//! may panic; a complete head lies within the input, and an error's status is a 4xx/5xx.
//!
//! The `http_request` target and the seed replay test (`tests/fuzz_seeds.rs`) share this body.

use std::net::SocketAddr;

use ringws::http::{
    header_storage, parse_request, Cidr, ForwardedHeader, Parse, Request, TrustedProxies,
};

pub fn run(data: &[u8]) {
    let mut headers = header_storage();
    match parse_request(data, &mut headers, 8192) {
        Ok(Parse::Complete { request, head_len }) => {
            assert!(head_len <= data.len());
            assert!(data[..head_len].ends_with(b"\n"));
            match request.content_length() {
                Ok(len) => {
                    // Without the header the length is 0; a body is cut from what follows.
                    if request
                        .headers()
                        .all(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
                    {
                        assert_eq!(len, 0);
                    }
                    let rest = &data[head_len..];
                    let body = &rest[..len.min(rest.len())];
                    let request = request.with_body(body);
                    assert_eq!(request.body().len(), body.len());
                }
                Err(e) => assert!((400..600).contains(&e.status), "{}", e.status),
            }
            let keep = request.keep_alive();
            if request.header_has_token("connection", "close") && request.version_minor() >= 1 {
                assert!(!keep);
            }
            let _ = (
                request.method(),
                request.path(),
                request.query(),
                request.target(),
            );
            forwarded(&request);
        }
        Ok(Parse::Partial) => {}
        Err(e) => assert!((400..600).contains(&e.status), "{}", e.status),
    }
}

/// The client address behind trusted proxies: an untrusted peer is always itself, an
/// empty list trusts nobody, and a trusted peer gets itself or an address read from
/// the header (IPv4-mapped addresses as IPv4). A query that parses as a list of
/// networks prints back as the same list.
fn forwarded(request: &Request<'_>) {
    let proxies: TrustedProxies = "127.0.0.1, 10.0.0.0/8, fd00::/8, ::ffff:192.0.2.0/120"
        .parse()
        .expect("the fuzz target's list");
    let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
    for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let proxies = proxies.clone().header(header);
        assert_eq!(proxies.client_addr(stranger, request), stranger);
        let nobody = TrustedProxies::new().header(header);
        assert_eq!(nobody.client_addr(proxy, request), proxy);
        let client = proxies.client_addr(proxy, request);
        if client != proxy {
            assert_eq!(client.ip(), client.ip().to_canonical(), "{client}");
        }
    }
    if let Some(Ok(list)) = request.query().map(str::parse::<TrustedProxies>) {
        let shown: Vec<String> = list.nets().iter().map(Cidr::to_string).collect();
        let again: TrustedProxies = shown.join(",").parse().expect("a printed list parses");
        assert_eq!(again.nets(), list.nets());
    }
}

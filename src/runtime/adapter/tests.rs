//! The adapter's request checks: the same answers as the shards' front, for HTTP/1.1
//! upgrades and HTTP/2 extended CONNECTs (the sessions themselves are driven end to end
//! in tests/axum.rs, tests/h2.rs and tests/hand_off.rs).

use http::{Method, Request, StatusCode, Version};

use super::{Adapter, UpgradeRejection, WebSocketUpgrade};
use crate::handshake::OriginPolicy;
use crate::{Conn, Handler, Message, WebSocketOptions};

struct Quiet;

impl Handler for Quiet {
    fn on_message(&mut self, _: &mut Conn<'_>, _: Message<'_>) {}
}

fn adapter() -> Adapter {
    Adapter::new().expect("adapter")
}

fn http11() -> http::request::Builder {
    Request::builder()
        .method(Method::GET)
        .uri("/chat")
        .version(Version::HTTP_11)
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
}

fn http2(protocol: Option<&str>) -> http::request::Builder {
    let builder = Request::builder()
        .method(Method::CONNECT)
        .uri("https://example.com/chat")
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13");
    match protocol {
        Some(protocol) => builder.extension(hyper::ext::Protocol::from(protocol)),
        None => builder,
    }
}

fn check(builder: http::request::Builder) -> Result<WebSocketUpgrade, UpgradeRejection> {
    let mut request = builder.body(()).expect("request");
    WebSocketUpgrade::from_request(&mut request, &adapter())
}

/// An HTTP/1.1 upgrade asking for version 99.
fn wrong_version() -> Result<WebSocketUpgrade, UpgradeRejection> {
    let mut request = http11().body(()).expect("request");
    request.headers_mut().insert(
        "sec-websocket-version",
        http::HeaderValue::from_static("99"),
    );
    WebSocketUpgrade::from_request(&mut request, &adapter())
}

fn refusal(builder: http::request::Builder) -> (u16, String) {
    let rejection = check(builder).expect_err("refused");
    (rejection.status(), rejection.reason().to_owned())
}

#[test]
fn a_valid_upgrade_passes_in_both_http_versions() {
    assert!(check(http11()).is_ok());
    assert!(check(http2(Some("websocket"))).is_ok());
}

#[test]
fn http11_refusals_are_the_fronts() {
    let no_key = Request::builder()
        .method(Method::GET)
        .uri("/chat")
        .header("host", "h")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13");
    assert_eq!(
        refusal(no_key),
        (400, "missing or invalid Sec-WebSocket-Key".to_owned())
    );
    let rejection = wrong_version().expect_err("426");
    assert_eq!(
        (rejection.status(), rejection.reason()),
        (426, "unsupported Sec-WebSocket-Version")
    );
    let plain = Request::builder()
        .method(Method::GET)
        .uri("/chat")
        .header("host", "h");
    assert_eq!(refusal(plain).0, 426);
    let post = http11().method(Method::POST);
    assert_eq!(
        refusal(post),
        (400, "websocket upgrade requires GET".to_owned())
    );
}

#[test]
fn legacy_drafts_are_left_to_the_shards() {
    let hixie76 = Request::builder()
        .method(Method::GET)
        .uri("/chat")
        .header("host", "h")
        .header("upgrade", "WebSocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key1", "4 @1  46546xW%0l 1 5")
        .header("sec-websocket-key2", "12998 5 Y3 1  .P00");
    let (status, reason) = refusal(hixie76);
    assert_eq!(status, 426);
    assert!(reason.contains("legacy"), "{reason}");
}

#[test]
fn http2_refusals_follow_rfc_8441() {
    assert_eq!(
        refusal(http2(Some("webtransport"))),
        (
            400,
            "extended CONNECT :protocol is not websocket".to_owned()
        )
    );
    assert_eq!(refusal(http2(None)).0, 400);
    let no_version = Request::builder()
        .method(Method::CONNECT)
        .uri("https://example.com/chat")
        .version(Version::HTTP_2)
        .extension(hyper::ext::Protocol::from("websocket"));
    assert_eq!(refusal(no_version).0, 426);
    // An HTTP/2 GET on a WebSocket route is a plain request.
    let get = Request::builder()
        .method(Method::GET)
        .uri("https://example.com/chat")
        .version(Version::HTTP_2);
    assert_eq!(refusal(get).0, 426);
}

#[test]
fn the_routes_origin_policy_refuses_with_403() {
    let upgrade = check(http11().header("origin", "https://evil.example")).expect("checked");
    let response = upgrade
        .options(WebSocketOptions::default().allowed_origins(OriginPolicy::SameOrigin))
        .on_upgrade(|| Quiet);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn a_request_hyper_cannot_upgrade_is_refused_not_dropped() {
    // Built by hand: no `OnUpgrade` in its extensions.
    let response = check(http11()).expect("checked").on_upgrade(|| Quiet);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn the_offered_protocols_are_read_in_order() {
    let upgrade =
        check(http11().header("sec-websocket-protocol", "superchat, , chat")).expect("ok");
    assert_eq!(upgrade.offered_protocols(), ["superchat", "chat"]);
}

#[test]
fn a_426_names_the_version_it_speaks() {
    let response = wrong_version()
        .map(|_| ())
        .expect_err("refused")
        .into_response();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-version")
            .map(|v| v.as_bytes()),
        Some(&b"13"[..])
    );
}

//! Fuzzes permessage-deflate negotiation (`handshake::negotiate`): the first byte picks
//! the server's `DeflateConfig` (bit 0: server_no_context_takeover, bit 1:
//! client_no_context_takeover, bits 2-4 and 5-7: 15 minus the server's and the client's
//! window bits; 0 is the default config), the rest is read as text (lossy UTF-8) and split on LF
//! into several `Sec-WebSocket-Extensions` header values. Whatever the bytes, nothing
//! may panic, and an agreement must keep the RFC 7692 rules: its answer, read back as an
//! offer by a default (most permissive) config, gives the same agreement; it names
//! `client_max_window_bits` only if the input did; it honours the config.
//!
//! The `deflate_offer` target and the seed replay test (`tests/fuzz_seeds.rs`) share
//! this body.

use ringws::handshake::{negotiate, DeflateConfig};

pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let config = DeflateConfig {
        server_no_context_takeover: first & 1 != 0,
        client_no_context_takeover: first & 2 != 0,
        server_max_window_bits: 15 - ((first >> 2) & 7),
        client_max_window_bits: 15 - ((first >> 5) & 7),
    };
    let text = String::from_utf8_lossy(rest);
    let headers: Vec<&str> = text.split('\n').collect();
    let Some(agreement) = negotiate(&headers, &config) else {
        // Declined as a whole: so was every header on its own.
        assert!(headers.iter().all(|h| negotiate([h], &config).is_none()));
        return;
    };
    // The first header with an acceptable offer decides.
    assert_eq!(
        headers.iter().find_map(|h| negotiate([h], &config)),
        Some(agreement)
    );

    let value = agreement.response_value();
    assert!(value.starts_with("permessage-deflate"), "{value:?}");
    assert!(
        value.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
        "{value:?}"
    );
    let mut line = Vec::new();
    agreement.write_response_header(&mut line);
    assert_eq!(
        line,
        format!("Sec-WebSocket-Extensions: {value}\r\n").into_bytes()
    );

    // Round trip: the answer is itself an acceptable offer, and means the same.
    assert_eq!(
        negotiate([value.as_str()], &DeflateConfig::default()),
        Some(agreement),
        "{value:?}"
    );

    // client_max_window_bits only in answer to an offer of it.
    if !text.contains("client_max_window_bits") {
        assert!(!value.contains("client_max_window_bits"), "{value:?}");
        assert_eq!(agreement.client_max_window_bits(), 15);
    }

    // The config is honoured; window bits in range; zlib gets at least 9.
    let (server, client) = (
        agreement.server_max_window_bits(),
        agreement.client_max_window_bits(),
    );
    assert!((8..=config.server_max_window_bits).contains(&server));
    assert!(client == 15 || (8..=config.client_max_window_bits).contains(&client));
    assert_eq!(agreement.compress_window_bits(), server.max(9));
    assert_eq!(agreement.decompress_window_bits(), client.max(9));
    assert!(!config.server_no_context_takeover || agreement.server_no_context_takeover());
    assert!(!config.client_no_context_takeover || agreement.client_no_context_takeover());
    assert_eq!(
        value.contains("server_no_context_takeover"),
        agreement.server_no_context_takeover()
    );
    assert_eq!(
        value.contains("client_no_context_takeover"),
        agreement.client_no_context_takeover()
    );
}

//! The `Sec-WebSocket-Accept` computation: base64(sha1(key + GUID)), on the stack.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client key before hashing.
pub const WEBSOCKET_GUID: &[u8; 36] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + GUID)), 28 ASCII bytes.
///
/// `key` is the `Sec-WebSocket-Key` value as sent, trimmed. No allocation.
///
/// ```
/// let accept = ringws::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 base64 bytes, so this cannot fail.
    let written = STANDARD.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(written, 28);
    out
}

/// A computed `Sec-WebSocket-Accept` value, kept on the stack.
///
/// ```
/// use ringws::handshake::AcceptKey;
///
/// let accept = AcceptKey::new(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept.as_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptKey([u8; 28]);

impl AcceptKey {
    /// Computes the accept value for a `Sec-WebSocket-Key` (see [`accept_key`]).
    pub fn new(key: &[u8]) -> Self {
        Self(accept_key(key))
    }

    /// The value as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; 28] {
        &self.0
    }

    /// The value as a `str` (base64 is always ASCII).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl core::fmt::Debug for AcceptKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("AcceptKey").field(&self.as_str()).finish()
    }
}

impl core::fmt::Display for AcceptKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when `key` is base64 that decodes to exactly 16 bytes (RFC 6455 4.2.1 item 5).
pub(crate) fn is_valid_key(key: &str) -> bool {
    if key.len() != 24 {
        return false;
    }
    let mut decoded = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_example() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let k = AcceptKey::new(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(k.to_string(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            format!("{k:?}"),
            "AcceptKey(\"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\")"
        );
        assert_eq!(k.as_bytes(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn hybi_draft_example() {
        // The hybi-07/08 drafts use the same computation (draft-ietf-hybi-thewebsocketprotocol-08 1.3).
        assert_eq!(
            &accept_key(b"x3JJHMbDL1EzLkh9GBhXDw=="),
            b"HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ=")); // short
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZSE=")); // 17 bytes
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZ!==")); // bad symbol
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZR==")); // non-canonical trailing bits
        assert!(!is_valid_key("éééééééééééé")); // 24 bytes of UTF-8, not base64
    }
}

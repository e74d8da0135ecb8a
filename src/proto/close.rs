//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use super::decode::ProtocolError;
use std::fmt;

/// A close status code.
///
/// ```
/// use ringws::proto::CloseCode;
///
/// assert!(CloseCode::NORMAL.is_allowed_on_wire());
/// assert!(CloseCode(4000).is_allowed_on_wire());
/// assert!(!CloseCode::NO_STATUS.is_allowed_on_wire());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (e.g. invalid UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXT: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame: 1000-1003, 1007-1011 and
    /// 3000-4999. This matches the Autobahn testsuite (cases 7.7.x valid, 7.9.x
    /// invalid: 0, 999, 1004-1006, 1012-1016, 1100, 2000, 2999).
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> Self {
        c.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A parsed close frame payload: a status code and a UTF-8 reason (maybe empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason text, at most 123 bytes.
    pub reason: &'a str,
}

/// Parses a close payload: empty → `Ok(None)`; 1 byte → 1002; a code not allowed on
/// the wire → 1002; a reason that is not UTF-8 → 1007.
pub fn parse_close_payload(p: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    let (code, reason) = match p {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::protocol("close payload of 1 byte")),
        [a, b, reason @ ..] => (CloseCode(u16::from_be_bytes([*a, *b])), reason),
    };
    if !code.is_allowed_on_wire() {
        return Err(ProtocolError::protocol("invalid close code"));
    }
    let reason = simdutf8::basic::from_utf8(reason)
        .map_err(|_| ProtocolError::invalid_utf8("close reason is not UTF-8"))?;
    Ok(Some(CloseFrame { code, reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autobahn_code_lists() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(c).is_allowed_on_wire(), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(c).is_allowed_on_wire(), "{c}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(
            parse_close_payload(&[3]).unwrap_err().code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xED]).unwrap_err().code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8, 0xCE]).unwrap_err().code,
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            parse_close_payload(b"\x0f\xa0bye").unwrap(),
            Some(CloseFrame {
                code: CloseCode(4000),
                reason: "bye"
            })
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8]).unwrap(),
            Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: ""
            })
        );
    }
}

//! Validators and ranges for static files, sans-I/O: the `ETag` and `Last-Modified` of
//! a file from its size and modification time, `If-None-Match` / `If-Modified-Since`
//! (→ 304), `If-Range`, and single `Range: bytes=` requests (→ 206 or 416).
//!
//! The caller (`runtime/files.rs`) supplies the file's size and mtime; nothing here
//! reads a clock or a file.

use super::Request;

/// What a static file request gets, once the file exists and the method is GET/HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial {
        /// First byte served.
        start: u64,
        /// Last byte served (inclusive).
        end: u64,
    },
    /// 416: no byte of the file is in the requested range.
    Unsatisfiable,
}

/// A file's validators: its entity tag and modification time (whole seconds since the
/// Unix epoch, which is what `Last-Modified` can say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// `"<len hex>-<mtime ns hex>"`, quotes included.
    pub(crate) etag: String,
    /// Seconds since the Unix epoch.
    pub(crate) modified: u64,
}

impl Validators {
    /// The validators of a file of `len` bytes modified `mtime_ns` nanoseconds after the
    /// Unix epoch.
    pub(crate) fn new(len: u64, mtime_ns: u128) -> Validators {
        Validators {
            etag: format!("\"{len:x}-{mtime_ns:x}\""),
            modified: (mtime_ns / 1_000_000_000) as u64,
        }
    }
}

/// Decides the answer for a GET or HEAD of a file of `len` bytes (RFC 9110 §13.2.2
/// order: `If-None-Match`, else `If-Modified-Since`; then `Range`, which only a GET
/// honours, subject to `If-Range`).
pub(crate) fn plan(request: &Request<'_>, validators: &Validators, len: u64) -> Plan {
    if let Some(tags) = request.header_str("if-none-match") {
        if etag_list_matches(tags, &validators.etag) {
            return Plan::NotModified;
        }
    } else if let Some(since) = request.header_str("if-modified-since") {
        if parse_http_date(since).is_some_and(|since| validators.modified <= since) {
            return Plan::NotModified;
        }
    }
    if request.method() != "GET" {
        return Plan::Full;
    }
    let Some(range) = request.header_str("range") else {
        return Plan::Full;
    };
    if let Some(condition) = request.header_str("if-range") {
        let condition = condition.trim();
        let current = if condition.starts_with('"') {
            condition == validators.etag
        } else {
            parse_http_date(condition) == Some(validators.modified)
        };
        if !current {
            return Plan::Full;
        }
    }
    parse_range(range, len)
}

/// Whether an `If-None-Match` list (or `*`) matches `etag` (weak comparison).
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag.trim_start_matches("W/")
    })
}

/// A `Range` header against a file of `len` bytes: one `bytes=` range gives
/// [`Plan::Partial`] or [`Plan::Unsatisfiable`]; several ranges, another unit or a
/// malformed header give [`Plan::Full`] (a server may ignore a range it won't serve).
pub(crate) fn parse_range(header: &str, len: u64) -> Plan {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Plan::Full;
    };
    if spec.contains(',') {
        return Plan::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Plan::Full;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                Plan::Unsatisfiable
            } else {
                let start = len.saturating_sub(suffix);
                Plan::Partial {
                    start,
                    end: len - 1,
                }
            }
        }
        // `a-`: from a to the end.
        (false, Some(start), None) if last.trim().is_empty() => {
            if start >= len {
                Plan::Unsatisfiable
            } else {
                Plan::Partial {
                    start,
                    end: len - 1,
                }
            }
        }
        // `a-b`.
        (false, Some(start), Some(end)) if start <= end => {
            if start >= len {
                Plan::Unsatisfiable
            } else {
                Plan::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => Plan::Full,
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats seconds since the Unix epoch as an HTTP date (IMF-fixdate):
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses an IMF-fixdate (the only format a server may send; the obsolete RFC 850
/// and asctime forms are treated as absent). Dates before 1970 give `None`.
pub(crate) fn parse_http_date(text: &str) -> Option<u64> {
    let mut parts = text.trim().split_ascii_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || !(1970..=9999).contains(&year)
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{header_storage, parse_request, Parse};

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for secs in [
            0,
            1,
            59,
            86_399,
            86_400,
            784_111_777,
            951_782_400,
            4_102_444_800,
        ] {
            assert_eq!(parse_http_date(&http_date(secs)), Some(secs), "{secs}");
        }
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 99999999999999 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn etags_come_from_size_and_mtime() {
        let v = Validators::new(0x1234, 1_700_000_000_123_456_789);
        assert_eq!(v.etag, "\"1234-17979cfe3d85cd15\"");
        assert_eq!(v.modified, 1_700_000_000);
        assert!(etag_list_matches(
            "\"x\", W/\"1234-17979cfe3d85cd15\"",
            &v.etag
        ));
        assert!(etag_list_matches("*", &v.etag));
        assert!(!etag_list_matches("\"1234-0\"", &v.etag));
    }

    #[test]
    fn ranges() {
        let cases = [
            ("bytes=0-4", 10, Plan::Partial { start: 0, end: 4 }),
            ("bytes=5-", 10, Plan::Partial { start: 5, end: 9 }),
            ("bytes=-3", 10, Plan::Partial { start: 7, end: 9 }),
            ("bytes=-30", 10, Plan::Partial { start: 0, end: 9 }),
            ("bytes=8-100", 10, Plan::Partial { start: 8, end: 9 }),
            (" bytes= 2 - 3 ", 10, Plan::Partial { start: 2, end: 3 }),
            ("bytes=10-", 10, Plan::Unsatisfiable),
            ("bytes=10-20", 10, Plan::Unsatisfiable),
            ("bytes=-0", 10, Plan::Unsatisfiable),
            ("bytes=0-", 0, Plan::Unsatisfiable),
            ("bytes=-5", 0, Plan::Unsatisfiable),
            ("bytes=0-1,4-5", 10, Plan::Full),
            ("bytes=5-2", 10, Plan::Full),
            ("bytes=a-b", 10, Plan::Full),
            ("bytes=-", 10, Plan::Full),
            ("bytes=+1-2", 10, Plan::Full),
            ("items=0-1", 10, Plan::Full),
            ("bytes=99999999999999999999-", 10, Plan::Full),
        ];
        for (header, len, expected) in cases {
            assert_eq!(parse_range(header, len), expected, "{header:?} of {len}");
        }
    }

    fn plan_for(head: &str, validators: &Validators) -> Plan {
        let buf = format!("{head}\r\n\r\n");
        let mut headers = header_storage();
        let Ok(Parse::Complete { request, .. }) = parse_request(buf.as_bytes(), &mut headers, 8192)
        else {
            panic!("bad test request {head:?}");
        };
        plan(&request, validators, 100)
    }

    #[test]
    fn conditional_requests() {
        let v = Validators::new(100, 784_111_777_000_000_000);
        let etag = v.etag.clone();
        let date = http_date(v.modified);
        let cases = [
            (
                format!("GET / HTTP/1.1\r\nIf-None-Match: {etag}"),
                Plan::NotModified,
            ),
            (
                format!("HEAD / HTTP/1.1\r\nIf-None-Match: {etag}"),
                Plan::NotModified,
            ),
            (
                "GET / HTTP/1.1\r\nIf-None-Match: \"old\"".into(),
                Plan::Full,
            ),
            // If-None-Match wins over If-Modified-Since.
            (
                format!("GET / HTTP/1.1\r\nIf-None-Match: \"old\"\r\nIf-Modified-Since: {date}"),
                Plan::Full,
            ),
            (
                format!("GET / HTTP/1.1\r\nIf-Modified-Since: {date}"),
                Plan::NotModified,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\nIf-Modified-Since: {}",
                    http_date(v.modified + 9)
                ),
                Plan::NotModified,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\nIf-Modified-Since: {}",
                    http_date(v.modified - 1)
                ),
                Plan::Full,
            ),
            (
                "GET / HTTP/1.1\r\nIf-Modified-Since: yesterday".into(),
                Plan::Full,
            ),
            (
                "GET / HTTP/1.1\r\nRange: bytes=0-9".into(),
                Plan::Partial { start: 0, end: 9 },
            ),
            ("HEAD / HTTP/1.1\r\nRange: bytes=0-9".into(), Plan::Full),
            (
                format!("GET / HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: {etag}"),
                Plan::Partial { start: 0, end: 9 },
            ),
            (
                "GET / HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: \"old\"".into(),
                Plan::Full,
            ),
            (
                format!("GET / HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: {date}"),
                Plan::Partial { start: 0, end: 9 },
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(plan_for(&head, &v), expected, "{head:?}");
        }
    }
}

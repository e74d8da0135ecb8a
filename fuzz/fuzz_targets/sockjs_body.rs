//! Fuzzes the SockJS client-message parsers (xhr_send, jsonp_send with both content
//! types, websocket messages) and `quote`: nothing may panic, and a quoted string reads
//! back as itself, alone or in an array.
#![no_main]

#[path = "common/sockjs_body.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

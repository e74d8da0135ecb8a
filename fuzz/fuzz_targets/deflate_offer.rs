//! Fuzzes permessage-deflate negotiation: arbitrary `Sec-WebSocket-Extensions` values
//! under a config picked by the first byte. Nothing may panic; an agreement's answer
//! must read back as the same agreement and follow RFC 7692 §7.
#![no_main]

#[path = "common/deflate_offer.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

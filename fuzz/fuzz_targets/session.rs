//! Drives one connection (the HTTP front and the open session) with bytes, clock ticks
//! and handler actions decoded from the input; see `common/session.rs`.
#![no_main]

#[path = "common/session.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

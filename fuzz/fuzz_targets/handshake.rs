//! Fuzzes the sans-I/O handshake: request parsing, upgrade validation and the answers.
//! Whatever the bytes, nothing may panic and every answer must be a well-formed head.
#![no_main]

#[path = "common/handshake.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

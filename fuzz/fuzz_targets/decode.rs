//! Feeds arbitrary bytes, split at a fuzz-chosen point, to a server-role decoder
//! (masked client frames). The body is shared with `decode_client`: see
//! `common/decode.rs`.
#![no_main]

#[path = "common/decode.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use ringws::proto::Role;

fuzz_target!(|data: &[u8]| common::run(Role::Server, data));

//! Feeds arbitrary bytes, split at a fuzz-chosen point, to a client-role decoder (the
//! one ringws's loadtest and outgoing connections use on server frames). The body is
//! shared with `decode`: see `common/decode.rs`.
#![no_main]

#[path = "common/decode.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use ringws::proto::Role;

fuzz_target!(|data: &[u8]| common::run(Role::Client, data));

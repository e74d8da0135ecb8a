//! Feeds arbitrary bytes, split at a fuzz-chosen point, to a hixie-75/76 decoder with
//! small limits. It must never panic, never loop, consume every byte it is offered
//! unless it reported an event, an error or a close, and only ever return valid UTF-8
//! within the limit.
#![no_main]

#[path = "common/hixie.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

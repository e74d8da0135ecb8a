//! The permessage-deflate codec: arbitrary compressed bytes inflated in arbitrary
//! chunks under a cap (no panic, never over cap + 1), or plaintext messages round-tripped
//! through the deflater and the inflater with hibernation; see `common/inflate.rs`.
#![no_main]

#[path = "common/inflate.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

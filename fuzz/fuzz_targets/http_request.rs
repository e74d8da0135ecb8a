//! Fuzzes the HTTP/1.x request head parser and what the server reads from a parsed
//! head: `Content-Length` and keep-alive. Nothing may panic; a complete head lies
//! within the input, and an error's status is a 4xx/5xx.
#![no_main]

#[path = "common/http_request.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data));

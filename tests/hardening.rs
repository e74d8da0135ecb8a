//! Server hardening: the idle timeout with automatic pings, the connection limit and
//! graceful shutdown with a deadline. Every wait is bounded by socket read timeouts.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{echo_server_with, raw_upgrade, send_frame};
use ringws::proto::{Decoder, Event, Limits, OpCode, Role};

/// What the server sent, pings included.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Ping,
    Pong,
    Close(Option<u16>, String),
    Eof,
}

/// A client-role reader that reports pings too (the common reader skips them).
struct Reader {
    decoder: Decoder,
    buffer: Vec<u8>,
    start: usize,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            decoder: Decoder::new(Role::Client, Limits::default()),
            buffer: Vec::new(),
            start: 0,
        }
    }

    fn next(&mut self, stream: &mut TcpStream) -> Got {
        loop {
            let (consumed, event) = self
                .decoder
                .decode(&mut self.buffer[self.start..])
                .expect("server sent a valid frame");
            self.start += consumed;
            let got = match event {
                Some(Event::Text(text)) => Some(Got::Text(text.to_owned())),
                Some(Event::Ping(_)) => Some(Got::Ping),
                Some(Event::Pong(_)) => Some(Got::Pong),
                Some(Event::Close(frame)) => {
                    Some(frame.map_or(Got::Close(None, String::new()), |f| {
                        Got::Close(Some(f.code.0), f.reason.to_owned())
                    }))
                }
                _ => None,
            };
            if let Some(got) = got {
                return got;
            }
            if consumed == 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return Got::Eof,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}

const IDLE: Duration = Duration::from_millis(300);

#[test]
fn idle_client_that_answers_pings_stays_open() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = Reader::new();
    let started = Instant::now();
    let mut pings = 0;
    // Several idle timeouts pass; every ping is answered, so the connection lives on.
    while started.elapsed() < IDLE * 5 {
        match reader.next(&mut client) {
            Got::Ping => {
                pings += 1;
                send_frame(&mut client, OpCode::Pong, true, b"");
            }
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 3, "only {pings} pings");
    send_frame(&mut client, OpCode::Text, true, b"still here");
    loop {
        match reader.next(&mut client) {
            Got::Ping => send_frame(&mut client, OpCode::Pong, true, b""),
            got => {
                assert_eq!(got, Got::Text("still here".into()));
                break;
            }
        }
    }
}

#[test]
fn idle_client_that_never_answers_is_closed_with_1001() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(IDLE));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    let mut reader = Reader::new();
    assert_eq!(reader.next(&mut client), Got::Ping);
    assert_eq!(
        reader.next(&mut client),
        Got::Close(Some(1001), "idle timeout".into())
    );
    assert_eq!(reader.next(&mut client), Got::Eof);
}

#[test]
fn zero_idle_timeout_disables_pings() {
    let server = echo_server_with(|b| b.shards(1).idle_timeout(Duration::ZERO));
    let mut client = raw_upgrade(server.local_addr(), "/echo");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte);
    assert!(read.is_err(), "the server sent something: {read:?}");
}

//! The client's framing against a server that splits its byte stream at arbitrary
//! boundaries: batches of echoes cut into small, odd-sized writes are decoded whole
//! and matched in order.

use indicatif::ProgressBar;
use ringws::handshake::accept_key;
use ringws::proto::{encode_close, encode_frame, CloseCode, Decoder, Event, Limits, OpCode, Role};
use ringws_loadtest::client::{Incoming, Protocol, Pumped, WsConn, XorShift};
use ringws_loadtest::echo;
use ringws_loadtest::target::Target;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// An echo server on its own threads that answers each read's frames with one byte
/// stream written in chunks of 1 to 37 bytes, each its own segment (`TCP_NODELAY`, a
/// short pause between chunks), so the client sees frames and headers cut anywhere.
fn splitting_server() -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/echo", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = serve(stream, i as u64);
            });
        }
    });
    Target::parse(&url).expect("url")
}

fn serve(mut s: TcpStream, seed: u64) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("key")
        .trim()
        .to_string();
    let accept = accept_key(key.as_bytes());
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        std::str::from_utf8(&accept).expect("ascii")
    )?;
    let mut dec = Decoder::new(Role::Server, Limits::default());
    let mut rng = XorShift::new(seed);
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut out = Vec::new();
        let mut closed = false;
        let mut pos = 0;
        while pos < n {
            let (used, ev) = dec.decode(&mut buf[pos..n]).expect("valid client frames");
            pos += used;
            match ev {
                Some(Event::Binary(b)) => encode_frame(&mut out, OpCode::Binary, true, b, None),
                Some(Event::Text(t)) => {
                    encode_frame(&mut out, OpCode::Text, true, t.as_bytes(), None)
                }
                Some(Event::Close(_)) => {
                    encode_close(&mut out, Some(CloseCode::NORMAL), "", None);
                    closed = true;
                    break;
                }
                Some(_) => {}
                None if used == 0 => break,
                None => {}
            }
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            let k = (1 + rng.next_u64() % 37).min(rest.len() as u64) as usize;
            s.write_all(&rest[..k])?;
            rest = &rest[k..];
            std::thread::sleep(Duration::from_micros(50));
        }
        if closed {
            return Ok(());
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn split_batch_of_echoes_arrives_whole_and_in_order() {
    let target = splitting_server();
    // Distinct payloads, sizes across the 7-bit, 16-bit length encodings.
    let sent: Vec<Vec<u8>> = (0..200u32)
        .map(|i| (0..(i * 7 % 300)).map(|j| (i + j) as u8).collect())
        .collect();
    let received = runtime().block_on(async {
        let mut conn = WsConn::connect(
            &target,
            Protocol::Rfc6455,
            XorShift::new(1),
            Duration::from_secs(5),
        )
        .await
        .expect("connect");
        // One batch, one write.
        for m in &sent {
            conn.queue(OpCode::Binary, m).expect("queue");
        }
        conn.flush().await.expect("flush");
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < sent.len() {
            let mut on = |inc: Incoming<'_>| {
                if let Incoming::Binary(b) = inc {
                    got.push(b.to_vec());
                }
            };
            let pumped = tokio::time::timeout(Duration::from_secs(5), conn.pump(&mut on))
                .await
                .expect("echoes in time")
                .expect("pump");
            assert_eq!(pumped, Pumped::Open);
        }
        assert!(conn.close(Duration::from_secs(2)).await);
        got
    });
    assert_eq!(received.len(), sent.len());
    for (i, (r, s)) in received.iter().zip(&sent).enumerate() {
        assert_eq!(r, s, "message {i}");
    }
}

#[test]
fn echo_scenario_with_split_echoes() {
    let target = splitting_server();
    for inflight in [1, 16] {
        let opts = echo::EchoOptions {
            target: target.clone(),
            protocol: Protocol::Rfc6455,
            connections: 3,
            size: 150,
            text: false,
            inflight,
            duration: Duration::from_secs(20),
            messages: Some(300),
            warmup: Duration::ZERO,
            threads: 1,
            deflate: None,
            payload: echo::PayloadKind::Alpha,
            variants: 1,
        };
        let r = echo::run(&opts, &ProgressBar::hidden());
        assert_eq!(r.messages, 300, "{r:?}");
        assert_eq!(r.errors.total(), 0, "{r:?}");
        assert_eq!(r.bytes, 300 * 150);
        assert_eq!(r.latency.count, 300);
    }
}

//! The echo server over TLS: `wss://localhost:9443/echo`.
//!
//! `cargo run --example tls_echo -- cert.pem key.pem` serves with your certificate
//! chain and private key (PEM); with no arguments it makes a self-signed certificate for
//! `localhost` and prints it, for a client to trust.

use ringws::{Conn, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builder = Server::builder().bind("127.0.0.1:9443");
    let builder = match args.as_slice() {
        [cert, key] => builder.tls_files(cert, key),
        _ => {
            let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            let certified = rcgen::generate_simple_self_signed(names)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            println!("{}", certified.cert.pem());
            builder.tls(certified.cert.pem(), certified.key_pair.serialize_pem())
        }
    };
    builder.websocket("/echo", || Echo).build()?.run()
}

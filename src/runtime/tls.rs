//! TLS in the shard core: a rustls server session between the socket bytes a backend
//! moves and the plaintext a [`Connection`](crate::connection::Connection) parses.
//!
//! The backends never see TLS: they hand the shard ciphertext in `on_recv` and send the
//! ciphertext `take_send` gives them, exactly as for a plain listener. Per connection the
//! shard keeps a [`TlsSession`]:
//!
//! - inbound, [`TlsSession::receive`] feeds the socket bytes to rustls
//!   (`read_tls` + `process_new_packets`) and appends the decrypted bytes to a buffer the
//!   shard owns and reuses for every connection (the connection unmasks frames in place,
//!   so it needs them mutable, and only for the length of one call);
//! - outbound, [`TlsSession::seal`] encrypts the plaintext the connection queued
//!   (`writer().write_all`), adds `close_notify` once the connection wants to close, and
//!   collects the records (`write_tls`) into the buffer handed to the backend.
//!
//! This uses rustls' buffered `ServerConnection` rather than the unbuffered API. The
//! unbuffered API saves one copy per direction, but it hands out borrowed state machine
//! steps (`process_tls_records` over a caller-owned, caller-compacted input buffer, with
//! encryption into caller-sized output slices that can be too small and must be retried)
//! and leaves record-boundary buffering, handshake-data interleaving and partial writes
//! to the caller. The buffered session does all of that, is fuzzed and widely deployed,
//! and its copies are small next to the cipher work itself. The seam is this module: a
//! later switch changes only [`TlsSession`].

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Builds the server configuration from a PEM certificate chain (leaf first) and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1), with the ring provider, TLS 1.2 and 1.3, and
/// ALPN `http/1.1`. Every failure is an `InvalidInput` error naming what is wrong.
pub(crate) fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> io::Result<Arc<ServerConfig>> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("TLS certificate chain: invalid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "TLS certificate chain: no CERTIFICATE block found in the PEM".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| {
        invalid(format!(
            "TLS private key: no usable PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1): {error}"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("TLS configuration: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| invalid(format!("TLS certificate and private key: {error}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a PEM certificate chain and private key from files, then [`server_config`].
pub(crate) fn server_config_files(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("TLS {what} {}: {error}", path.display()),
            )
        })
    };
    server_config(
        &read(cert, "certificate file")?,
        &read(key, "private key file")?,
    )
}

/// What a batch of received bytes did to the TLS session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Plaintext (possibly none) was appended; the session goes on.
    Open,
    /// The peer sent `close_notify`: no more plaintext will come.
    PeerClosed,
    /// The peer broke the protocol (garbage, a bad handshake, an alert): the session is
    /// over; an alert for the peer may be queued.
    Failed,
}

/// One connection's TLS state (see the module docs).
pub(crate) struct TlsSession {
    conn: ServerConnection,
    /// Ciphertext a partial send left behind: it goes out before anything newer.
    pending: Vec<u8>,
    /// `close_notify` (or a fatal alert) is queued: nothing more will be encrypted.
    closing: bool,
    /// The socket failed: nothing more is worth sending.
    dead: bool,
}

impl TlsSession {
    pub(crate) fn new(config: &Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        // The connection's own outbox enforces the send limits; rustls must never refuse
        // part of a write.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            pending: Vec::new(),
            closing: false,
            dead: false,
        })
    }

    /// Decrypts `data` (bytes from the socket), appending the plaintext to `plain`.
    pub(crate) fn receive(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Received {
        if self.closing || self.dead {
            // Closing already: what the peer still sends changes nothing.
            return Received::Open;
        }
        let mut peer_closed = false;
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "TLS read failed; closing the connection");
                    return self.fail();
                }
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    tracing::debug!(%error, "TLS error; closing the connection");
                    // rustls queued an alert for the peer; `seal` collects it.
                    return self.fail();
                }
            };
            peer_closed |= state.peer_has_closed();
            // Drained after every batch: rustls bounds the plaintext it holds.
            let start = plain.len();
            plain.resize(start + state.plaintext_bytes_to_read(), 0);
            if let Err(error) = self.conn.reader().read_exact(&mut plain[start..]) {
                tracing::debug!(%error, "TLS plaintext read failed; closing the connection");
                plain.truncate(start);
                return self.fail();
            }
        }
        if peer_closed {
            Received::PeerClosed
        } else {
            Received::Open
        }
    }

    fn fail(&mut self) -> Received {
        self.closing = true;
        Received::Failed
    }

    /// Encrypts `plaintext` (emptied, capacity kept) and, when `close` is set, adds
    /// `close_notify` once; appends every record ready to send to `out`, after the
    /// ciphertext a partial send left behind.
    pub(crate) fn seal(&mut self, plaintext: &mut Vec<u8>, close: bool, out: &mut Vec<u8>) {
        if out.is_empty() && !self.pending.is_empty() {
            // The common case after a partial send: reuse its buffer rather than copy
            // (`out`'s own buffer is then kept for the next one). Otherwise `out` stays
            // the caller's, so a lent buffer goes back where it came from.
            std::mem::swap(out, &mut self.pending);
        } else {
            out.append(&mut self.pending);
        }
        if self.dead {
            plaintext.clear();
            out.clear();
            return;
        }
        if !plaintext.is_empty() {
            if !self.closing {
                // Writing to rustls' buffer with no limit set cannot fail.
                let _ = self.conn.writer().write_all(plaintext);
            }
            plaintext.clear();
        }
        if close && !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Keeps the unsent tail of a partial send, to go out first next time.
    pub(crate) fn unsent(&mut self, rest: Vec<u8>) {
        self.pending = rest;
    }

    /// Bytes wait for the socket (records rustls produced, or a partial send's tail).
    pub(crate) fn has_output(&self) -> bool {
        !self.dead && (!self.pending.is_empty() || self.conn.wants_write())
    }

    /// The socket failed: drop whatever was waiting and send nothing more.
    pub(crate) fn socket_failed(&mut self) {
        self.dead = true;
        self.closing = true;
        self.pending = Vec::new();
    }

    /// `close_notify` or an alert was queued (or the socket failed): once `take_send`
    /// has handed those bytes over, the socket may close.
    pub(crate) fn close_queued(&self) -> bool {
        self.closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let error = server_config(b"nonsense", b"nonsense")
            .err()
            .map(|e| e.to_string());
        let message = error.unwrap_or_default();
        assert!(message.contains("certificate chain"), "{message}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let missing = Path::new("/nonexistent/ringws-cert.pem");
        let message = server_config_files(missing, missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("/nonexistent/ringws-cert.pem"),
            "{message}"
        );
    }
}

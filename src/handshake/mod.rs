//! The WebSocket opening handshake, sans-I/O. (Filled in by the handshake work.)

//! HTTP/1.1 request parsing and response writing, sans-I/O. (Filled in by the handshake work.)

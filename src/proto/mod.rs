//! RFC 6455 framing, sans-I/O. (Filled in by the proto work.)

//! Outgoing connections on the ring: a socket, a `Connect` op whose address the driver
//! owns until the completion, then an ordinary connection in the table.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use io_uring::{opcode, types};

use super::{ConnIo, Driver};
use crate::runtime::core::{ShardCore, Token};
use crate::runtime::uring::ops::{self, Op};

impl Driver<'_> {
    /// Starts the outgoing connections the core asks for (step 2 of the protocol).
    pub(super) fn start_connects<C: ShardCore>(&mut self, core: &mut C) {
        core.take_connects(&mut self.connects);
        let connects = std::mem::take(&mut self.connects);
        for &(token, addr) in &connects {
            if let Err(error) = self.start_connect(token, addr) {
                core.on_connected(token, Err(error), Instant::now());
            }
        }
        self.connects = connects;
        self.connects.clear();
    }

    /// Serves the sockets the core adopted (handed over with their connections open)
    /// like accepted ones; while the shard stops they are closed at once.
    pub(super) fn start_adopted<C: ShardCore>(&mut self, core: &mut C) {
        let mut adopted = Vec::new();
        core.take_adopted(&mut adopted);
        for (token, fd) in adopted {
            if self.finishing {
                drop(fd);
                core.on_closed(token);
                continue;
            }
            let idx = self.install(ConnIo::new(token, fd));
            if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                conn.paused = !core.wants_read(token);
            }
            self.arm_recv(idx);
            self.again.push(token);
        }
    }

    fn start_connect(&mut self, token: Token, addr: SocketAddr) -> io::Result<()> {
        if self.finishing {
            return Err(io::Error::other("the shard is stopping"));
        }
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if let Err(e) = socket.set_tcp_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY failed on outgoing socket");
        }
        let fd = OwnedFd::from(socket);
        let sockaddr = Box::new(socket2::SockAddr::from(addr));
        let e = opcode::Connect::new(
            types::Fd(fd.as_raw_fd()),
            sockaddr.as_ptr().cast::<libc::sockaddr>(),
            sockaddr.len(),
        )
        .build()
        .user_data(ops::encode(Op::Connect, Some(token)));
        let mut conn = ConnIo::new(token, fd);
        // Moving the Box into the table does not move the address it points at.
        conn.connecting = Some(sockaddr);
        self.install(conn);
        // SAFETY: the address is owned by `conn.connecting` until the connect's
        // completion (`on_connect_cqe`); the connection is not removed while it is in
        // flight, and error paths leak it rather than free it.
        unsafe { self.push(e) };
        Ok(())
    }

    pub(super) fn on_connect_cqe<C: ShardCore>(
        &mut self,
        core: &mut C,
        d: ops::Decoded,
        res: i32,
        now: Instant,
    ) {
        let finishing = self.finishing;
        let Some(conn) = self.live(d) else {
            tracing::warn!(
                index = d.index,
                res,
                "connect completion for an unknown slot"
            );
            return;
        };
        conn.connecting = None;
        conn.cancel_sent = false;
        let token = conn.token;
        if res < 0 || finishing {
            self.conns[d.index] = None;
            if !finishing {
                core.on_connected(token, Err(io::Error::from_raw_os_error(-res)), now);
            }
            return;
        }
        core.on_connected(token, Ok(()), now);
        if let Some(conn) = self.live(d) {
            conn.paused = !core.wants_read(token);
        }
        self.arm_recv(d.index);
        self.again.push(token);
    }
}

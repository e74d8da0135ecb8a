//! Listening sockets that come from outside the process: systemd socket activation
//! (`LISTEN_FDS`), a predecessor's hand-over over a Unix socket (`SCM_RIGHTS`), and how
//! a set of such sockets is spread over the shards. The public side is
//! `ringws::handover` (`src/server/handover.rs`).
//!
//! A handed-over socket is the same kernel socket as the sender's (one open file
//! description, two descriptors), so its accept queue is shared: whatever the old
//! process has not accepted, the new one accepts. Neither side binds anything.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use socket2::{Domain, SockRef, Type};

/// The most descriptors one `SCM_RIGHTS` message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Which listeners each of `shards` shards serves, given `listeners` sockets: with at
/// least as many sockets as shards, shard `j` serves every socket `i` with
/// `i % shards == j` (so every socket is served once); with fewer, shard `j` serves
/// socket `j % listeners` (a socket is then served by several shards, through
/// duplicated descriptors, and each shard still has one).
pub(crate) fn plan(listeners: usize, shards: usize) -> Vec<Vec<usize>> {
    let shards = shards.max(1);
    if listeners == 0 {
        return vec![Vec::new(); shards];
    }
    if listeners >= shards {
        (0..shards)
            .map(|j| (j..listeners).step_by(shards).collect())
            .collect()
    } else {
        (0..shards).map(|j| vec![j % listeners]).collect()
    }
}

/// Spreads `listeners` over `shards` shards as [`plan`] says: a socket served by
/// several shards goes to the last of them as it is and to the others as duplicated
/// descriptors (the same socket, the same queue).
pub(crate) fn spread(
    listeners: Vec<TcpListener>,
    shards: usize,
) -> io::Result<Vec<Vec<TcpListener>>> {
    let plan = plan(listeners.len(), shards);
    let mut uses_left = vec![0usize; listeners.len()];
    for &i in plan.iter().flatten() {
        uses_left[i] += 1;
    }
    let mut originals: Vec<Option<TcpListener>> = listeners.into_iter().map(Some).collect();
    plan.iter()
        .map(|indices| {
            indices
                .iter()
                .map(|&i| {
                    uses_left[i] -= 1;
                    if uses_left[i] == 0 {
                        Ok(originals[i].take().expect("a socket's last use takes it"))
                    } else {
                        originals[i].as_ref().expect("not taken yet").try_clone()
                    }
                })
                .collect()
        })
        .collect()
}

/// Checks that `fd` is a listening TCP socket (IPv4 or IPv6, `SOCK_STREAM`,
/// `SO_ACCEPTCONN`).
pub(crate) fn check_listener(fd: BorrowedFd<'_>) -> io::Result<()> {
    let socket = SockRef::from(&fd);
    let what = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {} {why}", fd.as_raw_fd()),
        )
    };
    let domain = socket.domain().map_err(|_| what("is not a socket"))?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(what("is not an IPv4 or IPv6 socket"));
    }
    if socket.r#type()? != Type::STREAM {
        return Err(what("is not a stream socket"));
    }
    if !socket.is_listener()? {
        return Err(what("is not listening"));
    }
    Ok(())
}

/// Readies sockets given to `Builder::listeners`: at least one, each a listening TCP
/// socket, non-blocking (a flag of the open file, so shared with a predecessor that
/// holds the same socket; ours sets it too).
pub(crate) fn adopt(listeners: Vec<TcpListener>) -> io::Result<Vec<TcpListener>> {
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Builder::listeners: no sockets",
        ));
    }
    for listener in &listeners {
        use std::os::fd::AsFd;
        check_listener(listener.as_fd())?;
        listener.set_nonblocking(true)?;
    }
    Ok(listeners)
}

/// How many descriptors systemd passed this process, from the values of `LISTEN_PID`
/// and `LISTEN_FDS` (sd_listen_fds(3)): none when `LISTEN_PID` is unset or names
/// another process (a variable inherited from a parent is not ours).
pub(crate) fn parse_listen_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    pid: u32,
) -> io::Result<usize> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let Some(listen_pid) = listen_pid else {
        return Ok(0);
    };
    let listen_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_PID={listen_pid:?} is not a process id")))?;
    if listen_pid != pid {
        return Ok(0);
    }
    let Some(listen_fds) = listen_fds else {
        return Ok(0);
    };
    let n: usize = listen_fds
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_FDS={listen_fds:?} is not a count")))?;
    if n > 4096 {
        return Err(invalid(format!("LISTEN_FDS={n} is implausibly many")));
    }
    Ok(n)
}

/// Takes the sockets systemd passed (see `ringws::handover::listen_fds`). Runs once per
/// process: later calls find the variables gone and return nothing.
pub(crate) fn listen_fds() -> io::Result<Vec<TcpListener>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let pid = std::process::id();
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let listen_fds = std::env::var("LISTEN_FDS").ok();
    let n = parse_listen_env(listen_pid.as_deref(), listen_fds.as_deref(), pid)?;
    if listen_pid.is_some() {
        // Not for children: they would read another process's descriptors.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if n == 0 || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    let mut listeners = Vec::with_capacity(n);
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + n as RawFd {
        // SAFETY: F_GETFD reads the descriptor's flags and touches no memory; an fd
        // that is not open fails with EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS: descriptor {fd} is not open"),
            ));
        }
        // SAFETY: `fd` is open (checked above) and stays open for this borrow: nothing
        // in this process closes descriptors it does not own, and it is owned by no one
        // yet.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        check_listener(borrowed)
            .map_err(|error| io::Error::new(error.kind(), format!("LISTEN_FDS: {error}")))?;
        // SAFETY: systemd passed descriptors 3..3+LISTEN_FDS to this very process
        // (LISTEN_PID is ours); `fd` is open and a listening TCP socket (checked
        // above), and nothing else in the process owns it: the TAKEN flag makes this
        // the only call that takes them, and the variables are gone for later readers.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // systemd leaves them inheritable; a child of ours must not keep them.
        SockRef::from(&owned).set_cloexec(true)?;
        listeners.push(TcpListener::from(owned));
    }
    Ok(listeners)
}

/// Sends `bytes` with `fds` attached (`SCM_RIGHTS`), in one `sendmsg`. The receiver
/// gets its own descriptors of the same open files; ours stay open.
pub(crate) fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors: one message carries at most {MAX_FDS}",
                fds.len()
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors need a byte to ride on",
        ));
    }
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    // u64 words: aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at `control`, which has room for one header and
        // `payload` bytes of data (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and in
        // bounds, and CMSG_DATA has `payload` writable bytes behind it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            let data = libc::CMSG_DATA(header).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (the caller's bytes, read only) and `control`,
        // both alive for the call.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            if sent as usize != bytes.len() {
                // A few dozen bytes on a fresh Unix socket: the kernel takes them whole.
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"));
            }
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Receives into `buf`, taking the descriptors attached (`SCM_RIGHTS`) into `fds`,
/// close-on-exec (`MSG_CMSG_CLOEXEC`). Returns the bytes read (0: the peer closed).
pub(crate) fn recv_with_fds(
    stream: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let space = {
        // SAFETY: CMSG_SPACE only computes a size.
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<libc::c_int>()) as u32) as usize }
    };
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;
    let read = loop {
        // SAFETY: `msg` points at `iov` (the caller's writable buffer) and `control`,
        // both alive for the call and of the lengths given.
        let read = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if read >= 0 {
            break read as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    // SAFETY: after a successful recvmsg, `msg.msg_control`/`msg_controllen` describe
    // the control messages the kernel wrote into `control`; CMSG_FIRSTHDR/NXTHDR walk
    // them within those bounds. Each SCM_RIGHTS entry holds descriptors the kernel
    // installed in this process for us alone, so each is owned exactly once here.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<libc::c_int>();
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors were cut off (more than one message carries)",
        ));
    }
    Ok(read)
}

/// The user id of the process at the other end of `stream` (`SO_PEERCRED`).
pub(crate) fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all-zero is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live, writable and of the size given.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn every_socket_is_served_and_every_shard_serves() {
        assert_eq!(plan(1, 1), vec![vec![0]]);
        assert_eq!(plan(4, 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(plan(3, 2), vec![vec![0, 2], vec![1]]);
        assert_eq!(plan(2, 4), vec![vec![0], vec![1], vec![0], vec![1]]);
        assert_eq!(plan(1, 3), vec![vec![0], vec![0], vec![0]]);
        for listeners in 1..9 {
            for shards in 1..9 {
                let plan = plan(listeners, shards);
                assert_eq!(plan.len(), shards);
                assert!(plan.iter().all(|s| !s.is_empty()), "{listeners}/{shards}");
                let mut seen: Vec<usize> = plan.concat();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen, (0..listeners).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn spread_duplicates_only_what_is_shared() {
        let sockets: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let raw: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
        let shards = spread(sockets, 3).expect("spread");
        let port = |l: &TcpListener| l.local_addr().unwrap().port();
        assert_eq!(shards.len(), 3);
        assert_eq!(port(&shards[0][0]), ports[0]);
        assert_eq!(port(&shards[1][0]), ports[1]);
        assert_eq!(port(&shards[2][0]), ports[0]);
        // The originals moved to their last shard; the first shard's is a duplicate.
        assert_ne!(shards[0][0].as_raw_fd(), raw[0]);
        assert_eq!(shards[1][0].as_raw_fd(), raw[1]);
        assert_eq!(shards[2][0].as_raw_fd(), raw[0]);
    }

    #[test]
    fn the_environment_names_our_descriptors_only() {
        assert_eq!(parse_listen_env(None, Some("2"), 7).unwrap(), 0);
        assert_eq!(parse_listen_env(Some("8"), Some("2"), 7).unwrap(), 0);
        assert_eq!(parse_listen_env(Some("7"), Some("2"), 7).unwrap(), 2);
        assert_eq!(parse_listen_env(Some("7"), None, 7).unwrap(), 0);
        assert!(parse_listen_env(Some("x"), Some("2"), 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("-1"), 7).is_err());
        assert!(parse_listen_env(Some("7"), Some("99999"), 7).is_err());
    }

    #[test]
    fn only_listening_tcp_sockets_pass() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        check_listener(listener.as_fd()).expect("a listener");
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        assert!(check_listener(stream.as_fd()).is_err());
        let (unix, _) = UnixStream::pair().expect("pair");
        assert!(check_listener(unix.as_fd()).is_err());
        let file = std::fs::File::open("/dev/null").expect("open");
        assert!(check_listener(file.as_fd()).is_err());
    }

    #[test]
    fn descriptors_cross_a_unix_socket_and_share_the_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        // A connection queued before the hand-over...
        let _queued = std::net::TcpStream::connect(addr).expect("connect");
        let (a, b) = UnixStream::pair().expect("pair");
        send_with_fds(&a, b"L1\n", &[listener.as_fd()]).expect("send");
        drop(listener); // ...survives the sender closing its descriptor.
        let mut fds = Vec::new();
        let mut buf = [0u8; 16];
        let n = recv_with_fds(&b, &mut buf, &mut fds).expect("recv");
        assert_eq!(&buf[..n], b"L1\n");
        assert_eq!(fds.len(), 1);
        // SAFETY: F_GETFD only reads the flags of a descriptor we own.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        let received = TcpListener::from(fds.pop().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr);
        let (_, peer) = received
            .accept()
            .expect("the queued connection is still there");
        assert_eq!(peer.ip(), addr.ip());
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
    }
}

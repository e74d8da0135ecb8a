//! Test helper: make `io_uring_setup` fail with EPERM in a child process, the way
//! Docker's default seccomp profile does, so the io_uring probe and the fallback to the
//! epoll backend can be tested on a machine that has io_uring.
//!
//! Use it from `std::os::unix::process::CommandExt::pre_exec`:
//!
//! ```ignore
//! unsafe { cmd.pre_exec(seccomp::deny_io_uring_setup) };
//! ```
//!
//! It allocates nothing and only makes two system calls, so it is safe to run between
//! fork and exec.
#![allow(dead_code)]

use std::io;

// <linux/audit.h>: EM_* | __AUDIT_ARCH_64BIT (0x8000_0000) | __AUDIT_ARCH_LE (0x4000_0000).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64 (EM_X86_64 = 62)
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_COMPAT: u32 = 0x4000_0003; // AUDIT_ARCH_I386 (EM_386 = 3)
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64 (EM_AARCH64 = 183)
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_COMPAT: u32 = 0x4000_0028; // AUDIT_ARCH_ARM (EM_ARM = 40)

/// x32 system calls reach the filter as AUDIT_ARCH_X86_64 with this bit set in `nr`.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const X32_SYSCALL_BIT: u32 = 0;

/// io_uring_setup is 425 on every architecture (the unified numbers from 5.1 on), for
/// native and compat (i386, arm) callers alike.
const NR_IO_URING_SETUP: u32 = libc::SYS_io_uring_setup as u32;

// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// Sets `PR_SET_NO_NEW_PRIVS` and installs a seccomp filter under which `io_uring_setup`
/// fails with EPERM (native, compat and x32 calls) and every other system call is
/// allowed.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn deny_io_uring_setup() -> io::Result<()> {
    let ld_w_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // Jump offsets are relative to the next instruction.
    let filter: [libc::sock_filter; 8] = [
        /* 0 */ stmt(ld_w_abs, OFF_ARCH),
        /* 1 */ jeq(AUDIT_ARCH_NATIVE, 1, 0), // -> 3 : 2
        /* 2 */ jeq(AUDIT_ARCH_COMPAT, 0, 3), // -> 3 : 6 (another arch: allow)
        /* 3 */ stmt(ld_w_abs, OFF_NR),
        /* 4 */ jeq(NR_IO_URING_SETUP, 2, 0), // -> 7 : 5
        /* 5 */ jeq(NR_IO_URING_SETUP | X32_SYSCALL_BIT, 1, 0), // -> 7 : 6
        /* 6 */ stmt(ret, libc::SECCOMP_RET_ALLOW),
        /* 7 */ stmt(ret, libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32)),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, both alive for the duration of the call; the
    // kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

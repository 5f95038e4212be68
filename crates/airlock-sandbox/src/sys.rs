//! Thin wrappers around the raw Linux system calls the sandbox needs.
//!
//! Every `unsafe` block of the crate that talks to the kernel directly lives here (plus
//! the libpython loader in `embed.rs`), each with a comment saying why it is sound, so
//! the isolation code in `helper.rs` and `isolate.rs` reads as plain, checked Rust.
//! Most of these functions are called between `fork()` and `exec()`/return-to-Python
//! in a single-threaded process, so they avoid locks and keep allocation small.
#![allow(unsafe_code)] // the raw system calls; every block has a SAFETY note

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a libc `-1`-on-error return value into an `io::Result`.
pub(crate) fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_i(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

pub(crate) fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

/// `prctl(2)` with one argument.
pub(crate) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: prctl with integer arguments does not touch our memory.
    cvt_i(unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

pub(crate) fn set_pdeathsig(sig: libc::c_int) -> io::Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong).map(drop)
}

pub(crate) fn set_dumpable(yes: bool) -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, u64::from(yes)).map(drop)
}

pub(crate) fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop)
}

pub(crate) fn no_new_privs_set() -> bool {
    prctl(libc::PR_GET_NO_NEW_PRIVS, 0)
        .map(|v| v == 1)
        .unwrap_or(false)
}

pub(crate) fn getppid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

pub(crate) fn getpid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

pub(crate) fn geteuid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn getegid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getegid() }
}

/// Leaves the process immediately, without running atexit handlers or unwinding (the
/// only correct way to leave a forked child that must not run its parent's cleanup).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Drops supplementary groups and switches real/effective/saved ids to `uid`/`gid`.
pub(crate) fn drop_to(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain integer syscalls. Order matters: groups and gid first, while we
    // still have CAP_SETGID, then uid (which drops every capability).
    unsafe {
        cvt_i(libc::setgroups(0, std::ptr::null()))?;
        cvt_i(libc::setresgid(gid, gid, gid))?;
        cvt_i(libc::setresuid(uid, uid, uid))?;
    }
    Ok(())
}

pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: integer argument only.
    cvt_i(unsafe { libc::unshare(flags) }).map(drop)
}

pub(crate) fn write_file(path: &str, contents: &str) -> io::Result<()> {
    std::fs::write(path, contents)
}

/// Maps `uid`/`gid` to themselves in the user namespace the caller just created.
pub(crate) fn map_self(uid: u32, gid: u32) -> io::Result<()> {
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    Ok(())
}

pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe a live byte slice.
    cvt_i(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `mount(2)`. `None` arguments are passed as NULL.
pub(crate) fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cpath).transpose()?;
    let target = cpath(target)?;
    let fstype = fstype.map(cstring).transpose()?;
    let data = data.map(cstring).transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    cvt_i(unsafe {
        libc::mount(
            p(&src),
            target.as_ptr(),
            p(&fstype),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    })
    .map(drop)
}

/// Mount attributes for `mount_setattr(2)`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` (Linux 5.12+): sets attributes on a mount, optionally recursively.
pub(crate) fn mount_setattr(target: &Path, set: u64, recursive: bool) -> io::Result<()> {
    let target = cpath(target)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: path is NUL-terminated; attr is a valid `struct mount_attr` of the given size.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let n = cpath(new_root)?;
    let o = cpath(put_old)?;
    // SAFETY: both are NUL-terminated strings alive for the call.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) }).map(drop)
}

pub(crate) fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: NUL-terminated string alive for the call.
    cvt_i(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

/// `fork(2)`.
///
/// # Safety
/// The caller must be single-threaded (the helper and the zygote are), otherwise the child
/// could inherit locks held by other threads.
pub(crate) unsafe fn fork() -> io::Result<i32> {
    // SAFETY: delegated to the caller (single-threaded process).
    cvt_i(unsafe { libc::fork() })
}

/// `waitpid(2)`, retrying on EINTR. Returns `(pid, raw wait status)`.
pub(crate) fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((r, status));
    }
}

pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; on success the kernel returns a new fd that we own.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn pidfd_send_signal(pidfd: &impl AsRawFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments; NULL siginfo is allowed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Closes every fd in `[first, last]`.
pub(crate) fn close_range(first: u32, last: u32) {
    if first > last {
        return;
    }
    // SAFETY: closing fds we no longer use; callers only pass ranges that contain no fd
    // owned by a live Rust object that will later be used.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if r == -1 {
        for fd in first..=last.min(4096) {
            // SAFETY: as above (fallback for kernels without close_range).
            unsafe { libc::close(fd as RawFd) };
        }
    }
}

/// Closes every fd >= 3 except those listed.
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&f| f >= 3)
        .map(|&f| f as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 3u32;
    for k in keep {
        if k > next {
            close_range(next, k - 1);
        }
        next = k + 1;
    }
    close_range(next, u32::MAX);
}

pub(crate) fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: integer fds; dup2 atomically replaces `new`.
    cvt_i(unsafe { libc::dup2(old, new) }).map(drop)
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: callers only close raw fds they own and will not use again.
    unsafe { libc::close(fd) };
}

pub(crate) fn pipe_cloexec() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    cvt_i(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// Writes all of `buf` to a raw fd, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: pointer/length describe a live slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads until EOF (or error) from a raw fd, at most `cap` bytes.
pub(crate) fn read_to_end(fd: RawFd, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < cap {
        // SAFETY: buf is a valid writable buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}

pub(crate) fn setrlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: lim is a valid rlimit struct.
    cvt_i(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Takes ownership of an fd number handed over by the parent process.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process.
pub(crate) unsafe fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(crate) fn set_signal_default(sig: libc::c_int) {
    // SAFETY: installing SIG_DFL has no memory-safety implications.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Removes every capability from the bounding set. Capabilities already gone are
/// skipped, so a process without CAP_SETPCAP succeeds when its set is already empty
/// (the container tier's helper empties it while it is still root).
pub(crate) fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64u64 {
        match prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong) {
            Ok(0) => continue,
            Ok(_) => {}
            // The first capability number the kernel does not know.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
        prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)?;
    }
    Ok(())
}

/// Drops every capability: bounding set, ambient set, then effective/permitted/inheritable.
pub(crate) fn drop_all_caps() -> io::Result<()> {
    drop_bounding_set()?;
    // SAFETY: integer-only prctl.
    cvt_i(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    let hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data point to properly laid out structs for capability v3.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// Landlock ABI version of the running kernel (0 when unsupported).
pub(crate) fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a NULL attr and size 0 this only queries the ABI version.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        0
    } else {
        r as i32
    }
}

/// Sends `data` plus `fds` (SCM_RIGHTS) as one message on a SOCK_SEQPACKET socket.
pub(crate) fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(data)];
    let cmsgs = if fds.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    loop {
        match sendmsg::<()>(sock, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Receives one message (and up to 8 fds) from a SOCK_SEQPACKET socket.
/// Returns `Ok(None)` at end of stream. Received fds are close-on-exec.
pub(crate) fn recv_with_fds(
    sock: RawFd,
    max: usize,
    flags: nix::sys::socket::MsgFlags,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; max];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock,
            &mut iov,
            Some(&mut cmsg),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        for fd in list {
                            // SAFETY: the kernel just installed these fds for us; nobody else owns them.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                let n = msg.bytes;
                let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
                if n == 0 && fds.is_empty() {
                    return Ok(None);
                }
                if truncated {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "message too large",
                    ));
                }
                buf.truncate(n);
                return Ok(Some((buf, fds)));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// A non-blocking SOCK_SEQPACKET (or SOCK_STREAM) unix socketpair, close-on-exec.
pub(crate) fn socketpair(seqpacket: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let ty = if seqpacket {
        SockType::SeqPacket
    } else {
        SockType::Stream
    };
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
}

pub(crate) fn set_nonblocking(fd: RawFd, yes: bool) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments.
    let flags = cvt_i(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if yes {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt_i(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(drop)
}

/// Human name of a signal, for error messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL: illegal instruction",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT: aborted",
        libc::SIGBUS => "SIGBUS: bus error",
        libc::SIGFPE => "SIGFPE: arithmetic exception",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV: invalid memory reference",
        libc::SIGPIPE => "SIGPIPE: broken pipe",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU: CPU time limit exceeded",
        libc::SIGXFSZ => "SIGXFSZ: file size limit exceeded",
        libc::SIGSYS => "SIGSYS: bad system call",
        _ => "signal",
    }
}

/// Brings the loopback interface of the calling process's network namespace up
/// (`SIOCSIFFLAGS` with `IFF_UP`). Needs CAP_NET_ADMIN over that namespace, which the
/// supervisor has in the user namespace it created.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() with integer arguments; the fd is owned right away.
    let fd =
        cvt_i(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface name and writes ifr_flags in `req`, a live,
    // correctly sized ifreq.
    cvt_i(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) })?;
    // SAFETY: the kernel filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, a live ifreq naming "lo" with the new flags.
    cvt_i(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) })?;
    Ok(())
}

/// A listening TCP socket on `ip`:`port` in the calling process's network namespace
/// (close-on-exec, blocking; the receiver sets its own mode).
pub(crate) fn tcp_listen(ip: std::net::Ipv4Addr, port: u16, backlog: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket() with integer arguments; the fd is owned right away.
    let fd =
        cvt_i(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: SO_REUSEADDR takes a c_int; pointer and length describe `one`.
    cvt_i(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: pointer and length describe a live sockaddr_in.
    cvt_i(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    // SAFETY: listen() with integer arguments on our own socket.
    cvt_i(unsafe { libc::listen(sock.as_raw_fd(), backlog) })?;
    Ok(sock)
}

/// The local port of a bound IPv4 socket.
pub(crate) fn local_port(fd: RawFd) -> io::Result<u16> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: pointer and length describe a live, writable sockaddr_in.
    cvt_i(unsafe {
        libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len)
    })?;
    Ok(u16::from_be(addr.sin_port))
}

/// The real-time signal by which the server tells an execution's reaper to stop every
/// process of the execution (while the script waits in `llm.complete`) or to let them
/// go on. Sent with a siginfo of code `SI_QUEUE` whose value is 1 (stop) or 0
/// (continue); real-time signals queue in order, so the last one sent wins. A script
/// cannot send such a siginfo (seccomp refuses `rt_sigqueueinfo`, `rt_tgsigqueueinfo`
/// and `pidfd_send_signal` with a siginfo), and plain `kill` arrives as `SI_USER`,
/// which the reaper ignores.
pub(crate) const FREEZE_SIGNAL: libc::c_int = 40;

/// `si_code` of a signal sent with `sigqueue(3)`-style information (Linux value).
const SI_QUEUE: libc::c_int = -1;

/// The part of a `SI_QUEUE` siginfo the freeze signal uses, laid out as the kernel's
/// 128-byte `siginfo_t` on 64-bit Linux.
#[repr(C)]
struct QueuedInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
    _rest: [u8; 96],
}

const _: () = assert!(std::mem::size_of::<QueuedInfo>() == 128);

/// Tells the reaper behind `pidfd` to stop (`true`) or continue (`false`) its execution.
pub(crate) fn send_freeze(pidfd: &impl AsRawFd, frozen: bool) -> io::Result<()> {
    let info = QueuedInfo {
        signo: FREEZE_SIGNAL,
        errno: 0,
        code: SI_QUEUE,
        _pad: 0,
        pid: 0,
        uid: 0,
        value: usize::from(frozen),
        _rest: [0; 96],
    };
    // SAFETY: `info` is a valid, fully initialised 128-byte siginfo that outlives the
    // call; the other arguments are integers.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            FREEZE_SIGNAL,
            &info as *const QueuedInfo,
            0,
        )
    })
    .map(drop)
}

/// Whom the reaper's freeze handler signals: `-1` (every process of its PID namespace
/// but itself) or `-pgid` (the script's process group, without a PID namespace).
static FREEZE_TARGET: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_freeze_signal(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    let target = FREEZE_TARGET.load(std::sync::atomic::Ordering::Relaxed);
    if target == 0 || info.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid 128-byte siginfo to an SA_SIGINFO handler.
    let info = unsafe { &*(info as *const QueuedInfo) };
    if info.code != SI_QUEUE {
        return;
    }
    let action = if info.value == 1 {
        libc::SIGSTOP
    } else {
        libc::SIGCONT
    };
    // SAFETY: kill(2) is async-signal-safe; errno is saved and restored around it.
    unsafe {
        let errno = *libc::__errno_location();
        libc::kill(target, action);
        *libc::__errno_location() = errno;
    }
}

/// Blocks (or unblocks) the freeze signal in this thread, so that one sent between a
/// fork and [`install_freeze_handler`] waits instead of being lost.
pub(crate) fn block_freeze_signals(block: bool) {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; pointers are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, FREEZE_SIGNAL);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// Makes this process (the reaper) stop or continue `target` (as for kill(2): `-1` or
/// `-pgid`) on each [`FREEZE_SIGNAL`] from the server. `SA_RESTART`, so the reaper's
/// `waitpid` is not disturbed.
pub(crate) fn install_freeze_handler(target: i32) -> io::Result<()> {
    FREEZE_TARGET.store(target, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a zeroed sigaction with a valid handler address and an empty mask.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_freeze_signal
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(FREEZE_SIGNAL, &sa, std::ptr::null_mut())
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Tests that attack the real sandbox: every script below tries to escape or to hurt the
//! host, and the test checks it could not (each with a positive control, so a broken
//! probe cannot pass silently).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;
use airlock_sandbox::*;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn cannot_read_files_outside_the_view() {
    let Some(sb) = sandbox(1).await else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let secret = dir.path().join("master.key");
    std::fs::write(&secret, "TOPSECRET-123").unwrap();
    let tmp_secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp_secret.path(), "TOPSECRET-123").unwrap();
    let script = format!(
        r#"
import os
out = {{}}
for p in [{secret:?}, {tmp:?}, "/work/main/Cargo.toml", "/root/.bashrc", "/etc/shadow",
          "/etc/passwd-", "/etc/hostname", "/home", "/root", "/var/lib", "/srv", "/proc/1/root/etc/shadow"]:
    try:
        with open(p, "rb") as f:
            out[p] = "READ:" + f.read(200).decode("latin-1")
    except IsADirectoryError:
        out[p] = "DIR:" + ",".join(os.listdir(p))
    except OSError as e:
        out[p] = type(e).__name__
out["control"] = len(open("/usr/lib/python3.11/os.py").read()) > 1000 if os.path.exists("/usr/lib/python3.11") else True
try:
    out["root_listing"] = sorted(os.listdir("/"))
except OSError as e:
    out["root_listing"] = type(e).__name__
out["exists"] = [p for p in ["/root", "/home", "/work", "/var", "/srv", "/opt", "/mnt", "/boot", "/sys"] if os.path.exists(p)]
set_result(out)
"#,
        secret = secret.display().to_string(),
        tmp = tmp_secret.path().display().to_string()
    );
    let r = result(&sb, &script).await;
    let text = r.to_string();
    assert!(!text.contains("TOPSECRET"), "secret leaked: {text}");
    assert_eq!(r["control"], json!(true));
    for (k, v) in r.as_object().unwrap() {
        if k == "control" || k == "root_listing" || k == "exists" {
            continue;
        }
        let v = v.as_str().unwrap();
        // /etc/hostname is the full tier's synthesized file; nothing else may be
        // readable (in the container tier, not even that).
        if k == "/etc/hostname" && !container() {
            assert_eq!(v, "READ:airlock\n");
        } else {
            assert!(
                !v.starts_with("READ:") && !v.starts_with("DIR:"),
                "{k} reachable: {v}"
            );
        }
    }
    // Listing / is refused by Landlock, and none of the host's data directories exist
    // (in the container tier they exist, unreadable: Landlock does not hide names
    // from stat(), see docs/security.md).
    assert_eq!(r["root_listing"], json!("PermissionError"));
    if !container() {
        assert_eq!(r["exists"], json!([]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cannot_read_other_processes_environment() {
    let Some(sb) = sandbox(1).await else { return };
    let me = std::process::id();
    let script = format!(
        r#"
import os
out = {{}}
for p in ["/proc/1/environ", "/proc/{me}/environ", "/proc/{me}/cmdline"]:
    try:
        out[p] = open(p, "rb").read().decode("latin-1")
    except OSError as e:
        out[p] = "ERR:" + type(e).__name__
try:
    out["pids"] = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
except OSError as e:
    out["pids"] = type(e).__name__
set_result(out)
"#
    );
    let r = result(&sb, &script).await;
    assert!(r[format!("/proc/{me}/environ")]
        .as_str()
        .unwrap()
        .starts_with("ERR:"));
    assert!(r[format!("/proc/{me}/cmdline")]
        .as_str()
        .unwrap()
        .starts_with("ERR:"));
    let init_env = r["/proc/1/environ"].as_str().unwrap();
    assert!(
        init_env.starts_with("ERR:") || !init_env.contains("CARGO"),
        "{init_env}"
    );
    if container() {
        // No PID namespace: the process table is there, but Landlock refuses /proc
        // (only the script's own /proc/self is readable).
        assert_eq!(r["pids"], json!("PermissionError"));
        assert!(r["/proc/1/environ"].as_str().unwrap().starts_with("ERR:"));
    } else {
        // Only the reaper (1) and the script (2) exist in the execution's PID namespace.
        assert_eq!(r["pids"], json!([1, 2]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_has_only_expected_keys() {
    let Some(sb) = sandbox(1).await else { return };
    let mut j = job("import os\nset_result(dict(os.environ))");
    j.env
        .insert("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into());
    let o = run_job(&sb, j).await;
    let env = o.result.unwrap();
    let mut keys: Vec<&str> = env
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut want: Vec<&str> = BASE_ENV.iter().map(|(k, _)| *k).collect();
    want.push("HTTPS_PROXY");
    if container() {
        // HOME and TMPDIR name the execution's scratch directory.
        want.push("TMPDIR");
        assert_eq!(env["HOME"], env["TMPDIR"]);
        assert_ne!(env["HOME"], json!("/tmp"));
    }
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(env["TZ"], json!("UTC"));
    assert_eq!(env["PYTHONHASHSEED"], json!("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cannot_write_outside_scratch() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import os
out = {}
for p in ["/etc/evil", "/usr/evil", "/work/evil", "/evil", "/proc/sys/kernel/hostname", "/dev/evil", "/usr/lib/python3.11/os.py", "/proc/self/oom_score_adj", "../evil"]:
    try:
        with open(p, "a") as f:
            f.write("x")
        out[p] = "WROTE"
    except OSError as e:
        out[p] = type(e).__name__
if os.getcwd() != "/tmp":
    try:
        open("/tmp/evil", "w")
        out["/tmp/evil"] = "WROTE"
    except OSError as e:
        out["/tmp/evil"] = type(e).__name__
with open("ok", "w") as f:
    f.write("fine")
out["tmp"] = open(os.path.join(os.environ["HOME"], "ok")).read()
out["cwd"] = os.getcwd()
set_result(out)
"#,
    )
    .await;
    assert_eq!(r["tmp"], json!("fine"));
    if container() {
        assert!(r["cwd"].as_str().unwrap().contains("/slot-0/x"), "{r}");
    } else {
        assert_eq!(r["cwd"], json!("/tmp"));
    }
    for (k, v) in r.as_object().unwrap() {
        assert_ne!(v, &json!("WROTE"), "{k} was writable");
    }
    assert!(!std::path::Path::new("/work/evil").exists());
    assert!(!std::path::Path::new("/evil").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn cannot_reach_host_loopback() {
    let Some(sb) = sandbox(1).await else { return };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let uport = udp.local_addr().unwrap().port();
    let tcp2 = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    tcp2.set_nonblocking(true).unwrap();
    let port2 = tcp2.local_addr().unwrap().port();
    let script = format!(
        r#"
import socket
out = {{}}
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    out["tcp"] = "CONNECTED"
except OSError as e:
    out["tcp"] = type(e).__name__ + ":" + str(e.errno)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"ping", ("127.0.0.1", {uport}))
    out["udp"] = "SENT"
except OSError as e:
    out["udp"] = type(e).__name__
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 8080)); s.listen()
    out["bind"] = "BOUND"
except OSError as e:
    out["bind"] = type(e).__name__
try:
    socket.create_connection(("127.0.0.2", {port2}), timeout=2)
    out["other_loopback"] = "CONNECTED"
except OSError as e:
    out["other_loopback"] = type(e).__name__
set_result(out)
"#
    );
    let r = result(&sb, &script).await;
    assert!(!r["tcp"].as_str().unwrap().starts_with("CONNECTED"), "{r}");
    assert_ne!(r["bind"], json!("BOUND"), "{r}");
    assert_ne!(r["other_loopback"], json!("CONNECTED"), "{r}");
    assert!(tcp.accept().is_err(), "the listener saw a connection");
    assert!(
        tcp2.accept().is_err(),
        "the 127.0.0.2 listener saw a connection"
    );
    let mut buf = [0u8; 16];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "the UDP socket received a datagram"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_packet_and_netlink_sockets_are_refused() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import socket
out = {}
for name, args in [("raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ("raw6", (socket.AF_INET6, socket.SOCK_RAW, 58)),
                   ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0)),
                   ("netlink", (socket.AF_NETLINK, socket.SOCK_RAW, 0)),
                   ("vsock", (40, socket.SOCK_STREAM, 0)),
                   ("inet_packet_type", (socket.AF_INET, 10, 0))]:
    try:
        socket.socket(*args)
        out[name] = "OPENED"
    except OSError as e:
        out[name] = e.errno
# What only the container tier refuses (it shares the container's network and has no
# mount view to hide unix sockets behind): every socket but TCP over IPv4/IPv6.
for name, args in [("unix", (socket.AF_UNIX, socket.SOCK_STREAM)),
                   ("unix_dgram", (socket.AF_UNIX, socket.SOCK_DGRAM)),
                   ("udp", (socket.AF_INET, socket.SOCK_DGRAM)),
                   ("udp6", (socket.AF_INET6, socket.SOCK_DGRAM)),
                   ("icmp_dgram", (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)),
                   ("sctp", (socket.AF_INET, socket.SOCK_STREAM, 132)),
                   ("mptcp", (socket.AF_INET, socket.SOCK_STREAM, 262))]:
    try:
        socket.socket(*args).close()
        out[name] = "OPENED"
    except OSError as e:
        out[name] = e.errno
a, b = socket.socketpair()
out["socketpair_control"] = "ok"
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, socket.IPPROTO_TCP)
out["tcp_control"] = "ok"
set_result(out)
"#,
    )
    .await;
    for k in [
        "raw",
        "raw6",
        "packet",
        "netlink",
        "vsock",
        "inet_packet_type",
    ] {
        assert_eq!(r[k], json!(libc::EPERM), "{k}: {r}");
    }
    assert_eq!(r["socketpair_control"], json!("ok"));
    assert_eq!(r["tcp_control"], json!("ok"));
    if container() {
        for k in [
            "unix",
            "unix_dgram",
            "udp",
            "udp6",
            "icmp_dgram",
            "sctp",
            "mptcp",
        ] {
            assert_eq!(r[k], json!(libc::EPERM), "{k}: {r}");
        }
    } else {
        // The full tier's own network namespace has nothing to reach over them.
        assert_eq!(r["unix"], json!("OPENED"), "{r}");
        assert_eq!(r["udp"], json!("OPENED"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ptrace_and_process_vm_are_refused() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def err(rc):
    return "OK" if rc != -1 else ctypes.get_errno()
out["traceme"] = err(libc.ptrace(0, 0, None, None))
out["attach_1"] = err(libc.ptrace(16, 1, None, None))
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(64)
local = iovec(ctypes.cast(buf, ctypes.c_void_p), 64)
remote = iovec(0x400000, 64)
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(iovec), ctypes.c_ulong, ctypes.POINTER(iovec), ctypes.c_ulong, ctypes.c_ulong]
libc.process_vm_readv.restype = ctypes.c_ssize_t
out["vm_readv"] = err(libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
out["vm_readv_self"] = err(libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
set_result(out)
"#,
    )
    .await;
    for k in ["traceme", "attach_1", "vm_readv", "vm_readv_self"] {
        assert_eq!(r[k], json!(libc::EPERM), "{k}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unshare_mount_chroot_are_refused() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return "OK" if rc != -1 else ctypes.get_errno()
out = {}
out["unshare_user"] = err(libc.unshare(0x10000000))
out["unshare_net"] = err(libc.unshare(0x40000000))
out["mount"] = err(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None))
out["umount_proc"] = err(libc.umount2(b"/proc", 2))
out["setns"] = err(libc.setns(0, 0))
out["chroot"] = err(libc.chroot(b"/tmp"))
out["keyctl"] = err(libc.syscall(250, 0, 0, 0, 0))
out["bpf"] = err(libc.syscall(321, 0, 0, 0))
out["io_uring"] = err(libc.syscall(425, 1, 0))
out["userfaultfd"] = err(libc.syscall(323, 0))
out["perf"] = err(libc.syscall(298, 0, 0, 0, 0, 0))
buf = ctypes.create_string_buffer(64)
out["modify_ldt"] = err(libc.syscall(154, 0, buf, 64))
out["personality"] = err(libc.personality(0x0040000))
out["clone_newuser"] = err(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))
out["getpid_control"] = libc.syscall(39) == os.getpid()
set_result(out)
"#,
    )
    .await;
    let eperm = json!(libc::EPERM);
    for k in [
        "unshare_user",
        "unshare_net",
        "mount",
        "umount_proc",
        "setns",
        "chroot",
        "keyctl",
        "bpf",
        "io_uring",
        "userfaultfd",
        "perf",
        "modify_ldt",
        "personality",
        "clone_newuser",
    ] {
        assert_eq!(r[k], eperm, "{k}: {r}");
    }
    assert_eq!(r["getpid_control"], json!(true));
    // x32 syscall numbers: ENOSYS from the sandbox's filter, unless an outer profile
    // kills foreign ABIs first (deploy/seccomp.json does, with SIGSYS).
    let o = run(
        &sb,
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nrc = libc.syscall(0x40000000 + 39)\nset_result(ctypes.get_errno() if rc == -1 else 'OK')\n",
    )
    .await;
    let killed = o.error.as_deref() == Some("killed by signal 31 (SIGSYS: bad system call)");
    assert!(
        o.result == Some(json!(libc::ENOSYS)) || killed,
        "{:?} {:?}",
        o.result,
        o.error
    );
}

/// The container tier shares the container's process table and IPC: a script may not
/// leave its process group (the reaper ends the execution through it), listen for
/// connections, or use SysV IPC objects that would outlive it.
#[tokio::test(flavor = "multi_thread")]
async fn container_tier_refuses_group_changes_listening_and_sysv_ipc() {
    if !container() {
        eprintln!("SKIPPED: container tier only (AIRLOCK_TEST_SANDBOX_TIER=container)");
        return;
    }
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return "OK" if rc != -1 else ctypes.get_errno()
out = {}
out["setsid"] = err(libc.setsid())
out["setpgid"] = err(libc.setpgid(0, 0))
s = socket.socket()
try:
    s.listen()
    out["listen"] = "LISTENING"
except OSError as e:
    out["listen"] = e.errno
try:
    s.bind(("127.0.0.1", 0))
    out["bind"] = "BOUND"
except OSError as e:
    out["bind"] = e.errno
out["shmget"] = err(libc.shmget(0, 4096, 0o1600))
out["msgget"] = err(libc.msgget(0, 0o1600))
out["semget"] = err(libc.semget(0, 1, 0o1600))
out["fastopen"] = err(libc.sendto(s.fileno(), b"x", 1, 0x20000000, None, 0))
out["pgid_control"] = os.getpgid(0) == os.getpid()
set_result(out)
"#,
    )
    .await;
    for k in [
        "setsid", "setpgid", "listen", "shmget", "msgget", "semget", "fastopen",
    ] {
        assert_eq!(r[k], json!(libc::EPERM), "{k}: {r}");
    }
    // Landlock refuses every TCP bind.
    assert_eq!(r["bind"], json!(libc::EACCES), "{r}");
    assert_eq!(r["pgid_control"], json!(true), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_bomb_is_contained() {
    let Some(sb) = sandbox(1).await else { return };
    let mut j = job(r#"
import os, time
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    except OSError:
        break
set_result(n)
"#);
    j.timeout = Duration::from_secs(10);
    let o = run_job(&sb, j).await;
    assert_eq!(o.status, OutcomeStatus::Completed, "{:?}", o.error);
    let forked = o.result.unwrap().as_u64().unwrap();
    assert!(forked < 64, "forked {forked} processes");
    // The host can still start processes and the slot still works.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert_eq!(result(&sb, "set_result(2)").await, json!(2));
    // And a real, endless fork bomb ends by timeout.
    let mut j = job(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    );
    j.timeout = Duration::from_secs(2);
    let o = run_job(&sb, j).await;
    assert_eq!(o.status, OutcomeStatus::Timeout);
    assert_eq!(result(&sb, "set_result(3)").await, json!(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_reports_the_memory_limit() {
    let mut cfg = config(1);
    cfg.limits.memory_bytes = 256 << 20;
    let Some(sb) = start(cfg).await else { return };
    let o = run(&sb, "x = bytearray(1 << 30)\nset_result(len(x))").await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert_eq!(o.error_type.as_deref(), Some("MemoryError"));
    assert!(
        o.error
            .as_deref()
            .unwrap()
            .contains("memory limit (256 MiB) exceeded"),
        "{:?}",
        o.error
    );
    let o = run(&sb, "a = []\nwhile True:\n    a.append(' ' * (1 << 20))").await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert!(
        o.error.as_deref().unwrap().contains("memory"),
        "{:?}",
        o.error
    );
    assert_eq!(
        result(&sb, "set_result(len(bytearray(1 << 20)))").await,
        json!(1 << 20)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_times_out_and_cpu_limit_applies() {
    let mut cfg = config(1);
    cfg.limits.cpu_seconds = 1;
    let Some(sb) = start(cfg).await else { return };
    let mut j = job("import time\nwhile True:\n    time.sleep(0.1)");
    j.timeout = Duration::from_millis(700);
    let o = run_job(&sb, j).await;
    assert_eq!(o.status, OutcomeStatus::Timeout);
    assert_eq!(o.error.as_deref(), Some("wall-clock timeout after 0.7 s"));
    assert!(o.duration < Duration::from_secs(3));
    let mut j = job("while True:\n    pass");
    j.timeout = Duration::from_secs(15);
    let o = run_job(&sb, j).await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert_eq!(o.error.as_deref(), Some("CPU time limit exceeded (1 s)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_fill_is_bounded_by_scratch() {
    let mut cfg = config(1);
    cfg.limits.scratch_bytes = 8 << 20;
    let Some(sb) = start(cfg).await else { return };
    if container() {
        // A plain directory has no size of its own: the reaper measures it and ends
        // the execution once it holds more than the limit.
        let o = run(
            &sb,
            "i = 0\nwhile True:\n    with open('fill%d' % i, 'wb') as f:\n        f.write(b'x' * (1 << 20))\n    i += 1\n",
        )
        .await;
        assert_eq!(o.status, OutcomeStatus::Error, "{o:?}");
        // Ended by the reaper, or, where the scratch filesystem is smaller than what
        // the script manages to write before the next measurement (a container's
        // 64 MB /dev/shm), by ENOSPC: either way the execution ends, not the server.
        let error = o.error.as_deref().unwrap_or_default();
        assert!(
            error == "scratch space limit (8 MiB) exceeded: the execution was ended"
                || error.contains("[Errno 28] No space left on device"),
            "{error}"
        );
        assert_eq!(
            result(&sb, "import os\nset_result(os.listdir('.'))").await,
            json!([])
        );
        return;
    }
    let r = result(
        &sb,
        r#"
import errno
n = 0
try:
    with open("/tmp/fill", "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
            n += 65536
except OSError as e:
    err = e.errno
set_result({"written": n, "errno": err})
"#,
    )
    .await;
    assert_eq!(r["errno"], json!(libc::ENOSPC), "{r}");
    assert!(r["written"].as_u64().unwrap() <= 8 << 20, "{r}");
    // The next execution gets a fresh, empty /tmp.
    assert_eq!(
        result(&sb, "import os\nset_result(os.listdir('/tmp'))").await,
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn output_flood_is_truncated() {
    let mut cfg = config(1);
    cfg.limits.output_bytes = 1000;
    let Some(sb) = start(cfg).await else { return };
    let o = run(
        &sb,
        "import sys\nfor _ in range(2000):\n    print('y' * 5000)\n    sys.stderr.write('e' * 5000)\nset_result('done')",
    )
    .await;
    assert_eq!(o.status, OutcomeStatus::Completed);
    assert_eq!(o.stdout.len(), 1000);
    assert_eq!(o.stderr.len(), 1000);
    assert!(o.stdout_truncated && o.stderr_truncated);
    assert_eq!(o.result, Some(json!("done")));
    let o = run(&sb, "print('small')").await;
    assert_eq!(o.stdout, b"small\n");
    assert!(!o.stdout_truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn segfault_names_the_signal() {
    let Some(sb) = sandbox(1).await else { return };
    let o = run(&sb, "import ctypes\nctypes.string_at(0)").await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert_eq!(
        o.error.as_deref(),
        Some("killed by signal 11 (SIGSEGV: invalid memory reference)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_parents_and_zygote_does_not_escape() {
    let Some(sb) = sandbox(1).await else { return };
    let zygotes = sb.zygote_pids().await;
    let script = format!(
        r#"
import os, signal
out = {{}}
for name, pid in [("init", 1), ("ppid", os.getppid()), ("zygote", {z}), ("server", {me}), ("all", -1)]:
    try:
        os.kill(pid, signal.SIGKILL)
        out[name] = "SENT"
    except OSError as e:
        out[name] = type(e).__name__
set_result(out)
"#,
        z = zygotes[0],
        me = std::process::id()
    );
    let o = run(&sb, &script).await;
    if let Some(r) = &o.result {
        assert_ne!(r["zygote"], json!("SENT"));
        assert_ne!(r["server"], json!("SENT"));
    }
    // The zygote survived and the sandbox still works.
    assert_eq!(sb.zygote_pids().await, zygotes);
    assert_eq!(result(&sb, "set_result('alive')").await, json!("alive"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_executions_cannot_reach_each_other() {
    let Some(sb) = sandbox(2).await else { return };
    let a = r#"
import os, socket, time
out = {"pid": os.getpid()}
ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ab.bind("\0airlock-test-abstract")
ab.listen()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect("\0airlock-test-abstract")
out["own_abstract"] = "ok"
open("/tmp/marker-a", "w").write("a")
open("/dev/shm/marker-a", "w").write("a")
named = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
named.bind("/tmp/named.sock")
named.listen()
time.sleep(3)
set_result(out)
"#;
    let b = r#"
import os, socket, time
time.sleep(1)
out = {}
try:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\0airlock-test-abstract")
    out["abstract"] = "CONNECTED"
except OSError as e:
    out["abstract"] = type(e).__name__
try:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("/tmp/named.sock")
    out["named"] = "CONNECTED"
except OSError as e:
    out["named"] = type(e).__name__
out["tmp"] = os.listdir("/tmp")
out["shm"] = os.listdir("/dev/shm")
out["pids"] = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
set_result(out)
"#;
    if container() {
        return concurrent_container_executions(&sb).await;
    }
    let (ra, rb) = tokio::join!(result(&sb, a), result(&sb, b));
    assert_eq!(ra["own_abstract"], json!("ok"));
    assert_eq!(rb["abstract"], json!("ConnectionRefusedError"));
    assert_eq!(rb["named"], json!("FileNotFoundError"));
    assert_eq!(rb["tmp"], json!([]));
    assert_eq!(rb["shm"], json!([]));
    assert_eq!(rb["pids"], json!([1, 2]));
}

/// The container tier's version: no unix sockets at all, each execution's scratch
/// directory invisible to the other, the process table and /dev/shm out of reach, and
/// the other execution's proxy port refused (each spare has its own).
async fn concurrent_container_executions(sb: &Sandbox) {
    let a = r#"
import os, socket, time
out = {"cwd": os.getcwd()}
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    out["unix"] = "OPENED"
except OSError as e:
    out["unix"] = e.errno
open("marker-a", "w").write("a")
time.sleep(3)
out["own"] = os.listdir(".")
set_result(out)
"#;
    let b = r#"
import os, time
time.sleep(1)
out = {"cwd": os.getcwd()}
def ls(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return type(e).__name__
out["own"] = ls(".")
out["parent"] = ls("..")
out["shm"] = ls("/dev/shm")
out["tmp"] = ls("/tmp")
out["proc"] = ls("/proc")
set_result(out)
"#;
    let (ra, rb) = tokio::join!(result(sb, a), result(sb, b));
    assert_eq!(ra["unix"], json!(libc::EPERM), "{ra}");
    assert_eq!(ra["own"], json!(["marker-a"]), "{ra}");
    assert_ne!(ra["cwd"], rb["cwd"]);
    assert_eq!(rb["own"], json!([]), "{rb}");
    for k in ["parent", "shm", "tmp", "proc"] {
        assert_eq!(rb[k], json!("PermissionError"), "{k}: {rb}");
    }
    // Both scratch directories are gone once their executions are over (their
    // supervisors remove them after the outcome is out, off its critical path).
    for r in [&ra, &rb] {
        let cwd = std::path::Path::new(r["cwd"].as_str().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cwd.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!cwd.exists(), "{} left behind", cwd.display());
    }
}

/// Without a PID namespace nothing ends a script's leftovers for free: the container
/// tier's reaper kills the script's whole process group when the script ends, daemons
/// that double-forked included, and nothing outlives the execution.
#[tokio::test(flavor = "multi_thread")]
async fn leftover_processes_die_with_the_execution() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import os, time
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        while True:
            time.sleep(0.05)
    os._exit(0)
os.wait()
pid = int(os.read(r, 32))
set_result({"daemon": pid, "alive": os.kill(pid, 0) is None, "ns_pid": os.getpid()})
"#,
    )
    .await;
    assert_eq!(r["alive"], json!(true), "{r}");
    if !container() {
        // The full tier's PID namespace ends with its reaper; pids are namespaced.
        assert!(r["ns_pid"].as_u64().unwrap() < 10, "{r}");
        return;
    }
    let pid = r["daemon"].as_u64().unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| s.contains("State:\tZ"))
            .unwrap_or(true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(), "the daemon {pid} outlived its execution");
    assert_eq!(result(&sb, "set_result(1)").await, json!(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_are_only_the_jobs() {
    let Some(sb) = sandbox(1).await else { return };
    let mut j = job("import airlock\nset_result({'keys': settings.keys(), 'a': settings.get('API_KEY'), 'b': airlock.settings.get('OTHER', 'dflt')})");
    j.settings.insert("API_KEY".into(), "k-123".into());
    let o = run_job(&sb, j).await;
    assert_eq!(
        o.result,
        Some(json!({"keys": ["API_KEY"], "a": "k-123", "b": "dflt"}))
    );
    // The next job in the same slot does not see the previous job's settings.
    assert_eq!(result(&sb, "set_result(settings.keys())").await, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spares_rehearsal_leaves_nothing_for_the_job() {
    // Warm spares run a made-up job on /dev/null before the real one arrives: none of
    // its settings, output, globals or random state may reach the real job.
    let Some(sb) = sandbox(1).await else { return };
    for _ in 0..2 {
        let mut j = job(r#"
import sys, random
print("job output")
set_result({"keys": settings.keys(), "rehearsal": settings.get("AIRLOCK_REHEARSAL"),
            "main": sorted(k for k in globals() if not k.startswith("__")),
            "is_main": sys.modules["__main__"].__dict__ is globals(),
            "random": random.random()})
"#);
        j.settings.insert("API_KEY".into(), "k-123".into());
        let o = run_job(&sb, j).await;
        assert_eq!(o.status, OutcomeStatus::Completed, "{o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "job output\n");
        assert_eq!(o.stderr, b"");
        let r = o.result.unwrap();
        assert_eq!(r["keys"], json!(["API_KEY"]));
        assert_eq!(r["rehearsal"], json!(null));
        assert_eq!(
            r["main"],
            json!(["airlock", "llm", "random", "set_result", "settings", "sys"])
        );
        assert_eq!(r["is_main"], json!(true));
        // random.seed(0), as documented, whatever the rehearsal drew.
        assert_eq!(r["random"], json!(0.8444218515250481));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_larger_than_the_socket_buffer_arrives_whole() {
    // The start of the job frame is written before the hand-over; the driver writes the
    // rest. 900 KB of padding between two statements: both must run.
    let Some(sb) = sandbox(1).await else { return };
    let pad = format!("# {}\n", "p".repeat(1000)).repeat(900);
    let script =
        format!("a = 1\n{pad}set_result([a, len(open('/proc/self/cmdline').read()) >= 0])\n");
    assert!(script.len() > 900_000);
    assert_eq!(result(&sb, &script).await, json!([1, true]));
}

#[tokio::test(flavor = "multi_thread")]
async fn set_result_rejects_non_json() {
    let Some(sb) = sandbox(1).await else { return };
    let o = run(&sb, "set_result(float('nan'))").await;
    assert_eq!(o.error_type.as_deref(), Some("ValueError"));
    assert!(o.error.as_deref().unwrap().contains("NaN"), "{:?}", o.error);
    let o = run(&sb, "set_result(object())").await;
    assert_eq!(o.error_type.as_deref(), Some("TypeError"));
    assert!(o
        .error
        .as_deref()
        .unwrap()
        .contains("not JSON-serializable"));
    let o = run(&sb, "set_result(1)\nset_result({'last': True})").await;
    assert_eq!(o.result, Some(json!({"last": true})));
}

#[tokio::test(flavor = "multi_thread")]
async fn traceback_points_at_the_script() {
    let Some(sb) = sandbox(1).await else { return };
    let o = run(&sb, "x = 1\n\ndef f():\n    return {}['missing']\nf()\n").await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert_eq!(o.error_type.as_deref(), Some("KeyError"));
    assert_eq!(
        o.error.as_deref(),
        Some(
            "Traceback (most recent call last):\n  File \"<script>\", line 5, in <module>\n    f()\n  File \"<script>\", line 4, in f\n    return {}['missing']\n           ~~^^^^^^^^^^^\nKeyError: 'missing'\n"
        )
    );
    let o = run(&sb, "def broken(:\n  pass").await;
    assert_eq!(o.error_type.as_deref(), Some("SyntaxError"));
    assert!(o
        .error
        .as_deref()
        .unwrap()
        .contains("File \"<script>\", line 1"));
    let o = run(&sb, "import sys\nsys.exit(3)").await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert_eq!(o.error_type.as_deref(), Some("SystemExit"));
    let o = run(&sb, "import sys\nprint('bye')\nsys.exit(0)").await;
    assert_eq!(o.status, OutcomeStatus::Completed);
    assert_eq!(o.stdout, b"bye\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_round_trip_pauses_the_timeout() {
    let Some(sb) = sandbox(1).await else { return };
    let mut j = job("a = llm.complete('what is 2+2?', model='small')\nb = llm.complete('again')\nset_result([a, b])");
    j.timeout = Duration::from_secs(1);
    let mut ex = sb.run(j).await.unwrap();
    let mut answers = vec!["four", "4"].into_iter();
    let outcome = loop {
        match ex.next_event().await {
            Event::LlmRequest {
                request_id,
                prompt,
                model,
            } => {
                assert!(
                    prompt == "what is 2+2?" && model == "small"
                        || prompt == "again" && model == "default"
                );
                // Longer than the whole timeout: must not count.
                tokio::time::sleep(Duration::from_millis(1200)).await;
                ex.respond_llm(&request_id, answers.next().unwrap())
                    .await
                    .unwrap();
            }
            Event::Finished(o) => break o,
        }
    };
    assert_eq!(
        outcome.status,
        OutcomeStatus::Completed,
        "{:?}",
        outcome.error
    );
    assert_eq!(outcome.result, Some(json!(["four", "4"])));
    assert!(ex.respond_llm("1", "late").await.is_err());
    let o = run(&sb, "llm.complete('x' * (300 * 1024))").await;
    assert_eq!(o.error_type.as_deref(), Some("ValueError"));
    let o = run(&sb, "llm.complete('x', model='m' * 201)").await;
    assert_eq!(o.error_type.as_deref(), Some("ValueError"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_and_the_command_line_show_no_host_path() {
    use std::os::unix::fs::PermissionsExt;
    let host = tempfile::tempdir().unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(host.path().join("data.txt"), "visible").unwrap();
    std::fs::set_permissions(
        host.path().join("data.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut cfg = config(1);
    cfg.mounts.push(ReadonlyMount {
        host: host.path().to_path_buf(),
        inside: "/airlock/test".into(),
    });
    let Some(sb) = start(cfg).await else { return };
    if container() {
        return container_mounts_are_host_paths(&sb, host.path()).await;
    }
    let r = result(
        &sb,
        r#"
out = {"data": open("/airlock/test/data.txt").read()}
try:
    open("/airlock/test/new.txt", "w")
    out["write"] = "OK"
except OSError as e:
    out["write"] = type(e).__name__
out["mountinfo"] = open("/proc/self/mountinfo").read()
out["cmdline"] = [open("/proc/%s/cmdline" % p, "rb").read().decode("latin-1") for p in ("1", "self")]
set_result(out)
"#,
    )
    .await;
    assert_eq!(r["data"], json!("visible"), "{r}");
    assert!(r["write"] != json!("OK"), "{r}");
    let text = r.to_string();
    let host_path = host.path().to_string_lossy().to_string();
    assert!(!text.contains(&host_path), "{host_path} visible: {text}");
    let helper = helper()[0].to_string_lossy().to_string();
    assert!(!text.contains(&helper), "{helper} visible: {text}");
    assert!(
        r["mountinfo"].as_str().unwrap().contains(" /airlock/test "),
        "{text}"
    );
    assert_eq!(
        r["cmdline"][0],
        json!(format!("airlock-sandbox\0{HELPER_ARG}\0")),
        "{text}"
    );
    // A mount point outside /airlock/ is refused.
    let mut bad = config(1);
    bad.mounts.push(ReadonlyMount {
        host: host.path().to_path_buf(),
        inside: "/usr/lib/x".into(),
    });
    assert!(matches!(Sandbox::start(bad).await, Err(Error::Config(_))));
}

/// The container tier cannot mount: a mount's neutral path in a job's `python_paths`
/// and environment is rewritten to the host path, which is readable and not writable,
/// and other processes' command lines stay out of reach.
async fn container_mounts_are_host_paths(sb: &Sandbox, host: &std::path::Path) {
    let mut j = job(r#"
import os
d = os.environ["DATA_DIR"]
out = {"dir": d, "data": open(os.path.join(d, "data.txt")).read()}
try:
    open(os.path.join(d, "new.txt"), "w")
    out["write"] = "OK"
except OSError as e:
    out["write"] = type(e).__name__
def cmdline(p):
    try:
        return open("/proc/%s/cmdline" % p, "rb").read().decode("latin-1")
    except OSError as e:
        return type(e).__name__
out["cmdline"] = [cmdline(p) for p in ("1", "self")]
set_result(out)
"#);
    j.env.insert("DATA_DIR".into(), "/airlock/test".into());
    let r = result_of(sb, j).await;
    assert_eq!(r["dir"], json!(host.to_string_lossy()), "{r}");
    assert_eq!(r["data"], json!("visible"), "{r}");
    assert_eq!(r["write"], json!("PermissionError"), "{r}");
    assert_eq!(
        r["cmdline"],
        json!([
            "PermissionError",
            format!("airlock-sandbox\0{HELPER_ARG}\0")
        ]),
        "{r}"
    );
}

/// Answers every LLM request after `delay` with `answer`, returning the ids seen.
async fn answer_all(ex: &mut Execution, delay: Duration, answer: &str) -> (Vec<String>, Outcome) {
    let mut ids = Vec::new();
    loop {
        match ex.next_event().await {
            Event::LlmRequest { request_id, .. } => {
                tokio::time::sleep(delay).await;
                ids.push(request_id.clone());
                ex.respond_llm(&request_id, answer).await.unwrap();
            }
            Event::Finished(o) => return (ids, o),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_for_the_llm_gives_no_thread_or_process_extra_time() {
    let Some(sb) = sandbox(1).await else { return };
    // A thread and a child process tick every 10 ms while the main thread waits for
    // the LLM; the answer comes 1.5 s later. Were they running, ~150 ticks each.
    let mut j = job(r#"
import os, subprocess, threading, time
ticks = [0]
def tick():
    while True:
        ticks[0] += 1
        time.sleep(0.01)
threading.Thread(target=tick, daemon=True).start()
child = subprocess.Popen(["/bin/sh", "-c", "while :; do echo x >> ticks; sleep 0.01; done"])
def child_ticks():
    try:
        with open("ticks") as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0
# Both must be ticking before the pause (a loaded machine may start the shell late).
deadline = time.monotonic() + 5
while (ticks[0] <= 10 or child_ticks() <= 10) and time.monotonic() < deadline:
    time.sleep(0.01)
before = (ticks[0], child_ticks())
llm.complete("pause")
after = (ticks[0], child_ticks())
time.sleep(0.3)
again = (ticks[0], child_ticks())
child.kill()
set_result({"thread": [before[0], after[0], again[0]], "child": [before[1], after[1], again[1]]})
"#);
    j.timeout = Duration::from_secs(10);
    let mut ex = sb.run(j).await.unwrap();
    let (ids, o) = answer_all(&mut ex, Duration::from_millis(1500), "ok").await;
    assert_eq!(ids, vec!["1".to_string()]);
    assert_eq!(o.status, OutcomeStatus::Completed, "{:?}", o.error);
    let r = o.result.unwrap();
    for who in ["thread", "child"] {
        let t: Vec<i64> = serde_json::from_value(r[who].clone()).unwrap();
        // Ticking before and after the pause (so the measurement is real) ...
        assert!(t[0] > 5 && t[2] - t[1] > 5, "{who}: {r}");
        // ... but not during it (a few ticks of slack for the moment the signal takes).
        assert!(t[1] - t[0] < 20, "{who} ran during the pause: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_cannot_resume_itself_during_the_pause() {
    let Some(sb) = sandbox(1).await else { return };
    // Three processes try, without pause, to continue each other and to make PID 1
    // continue them (plain signals, and a queued signal with a forged siginfo), while
    // each counts how often it got to run.
    let mut j = job(r#"
import ctypes, os, signal, subprocess, sys, time
child = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
refused = {}
info = (ctypes.c_int * 32)(40, 0, -1, 0, 0, 0, 0, 0)
while True:
    for name, call in (("cont_all", lambda: os.kill(-1, signal.SIGCONT)),
                       ("cont_init", lambda: os.kill(1, signal.SIGCONT)),
                       ("plain_40", lambda: os.kill(1, 40))):
        try:
            call()
        except OSError as e:
            refused[name] = e.errno
    if libc.syscall(129, 1, 40, info) == -1:
        refused["queued_40"] = ctypes.get_errno()
    n += 1
    # Written whole and renamed into place: a reader never sees a half-written file.
    tmp = "ticks-%s.tmp" % sys.argv[1]
    with open(tmp, "w") as f:
        f.write("%d %s" % (n, ",".join("%s:%s" % kv for kv in sorted(refused.items()))))
    os.replace(tmp, "ticks-%s" % sys.argv[1])
    time.sleep(0.005)
"""
kids = [subprocess.Popen([sys.executable, "-c", child, str(i)]) for i in range(3)]
def ticks():
    out = []
    for i in range(3):
        try:
            out.append(open("ticks-%d" % i).read())
        except OSError:
            out.append("0 ")
    return out
# Every child must be running before the pause (a loaded machine starts them late).
deadline = time.monotonic() + 5
while time.monotonic() < deadline and min(int(t.split(" ")[0]) for t in ticks()) <= 10:
    time.sleep(0.01)
before = ticks()
llm.complete("pause")
after = ticks()
for k in kids:
    k.kill()
set_result({"before": before, "after": after})
"#);
    j.timeout = Duration::from_secs(20);
    let mut ex = sb.run(j).await.unwrap();
    let (_, o) = answer_all(&mut ex, Duration::from_millis(1500), "ok").await;
    assert_eq!(
        o.status,
        OutcomeStatus::Completed,
        "{:?} {}",
        o.error,
        String::from_utf8_lossy(&o.stderr)
    );
    let r = o.result.unwrap();
    for i in 0..3 {
        let parse = |v: &serde_json::Value| -> i64 {
            v.as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (b, a) = (parse(&r["before"][i]), parse(&r["after"][i]));
        assert!(b > 5, "child {i} never ran: {r}");
        // ~300 runs in 1.5 s were it not stopped; a few for the moment the stop takes.
        assert!(a - b < 30, "child {i} ran during the pause: {r}");
        // Every attempt was refused (EPERM): SIGCONT by seccomp, anything sent to PID 1
        // by Landlock's signal scoping, the forged queued signal by seccomp.
        assert!(
            r["after"][i]
                .as_str()
                .unwrap()
                .ends_with(" cont_all:1,cont_init:1,plain_40:1,queued_40:1"),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_chosen_request_id_never_leaves_the_sandbox() {
    let Some(sb) = sandbox(1).await else { return };
    let j = job(r#"
import airlock
airlock._channel.send({"type": "llm_request", "request_id": "hunter2-secret", "prompt": "hi", "model": "default"})
msg = airlock._channel.recv()
set_result(msg)
"#);
    let mut ex = sb.run(j).await.unwrap();
    let (ids, o) = answer_all(&mut ex, Duration::ZERO, "answer").await;
    // The server names the request itself; the worker gets its own id back.
    assert_eq!(ids, vec!["1".to_string()]);
    assert_eq!(o.status, OutcomeStatus::Completed, "{:?}", o.error);
    assert_eq!(
        o.result,
        Some(json!({"type": "llm_response", "request_id": "hunter2-secret", "response": "answer"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_enforces_the_prompt_limit_on_raw_frames() {
    let Some(sb) = sandbox(1).await else { return };
    let j = job(r#"
import airlock
airlock._channel.send({"type": "llm_request", "request_id": "1", "prompt": "x" * (4 * 1024 * 1024), "model": "default"})
airlock._channel.recv()
"#);
    let mut ex = sb.run(j).await.unwrap();
    let (ids, o) = answer_all(&mut ex, Duration::ZERO, "answer").await;
    assert!(ids.is_empty(), "a 4 MiB prompt reached the runner");
    assert_eq!(o.status, OutcomeStatus::Error);
    let err = o.error.unwrap_or_default();
    assert!(err.contains("prompt"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_work_and_clone3_is_enosys() {
    let Some(sb) = sandbox(1).await else { return };
    let r = result(
        &sb,
        r#"
import ctypes, threading, subprocess
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.syscall(435, None, 0)
out = {"clone3": ctypes.get_errno() if rc == -1 else "OK"}
box = []
t = threading.Thread(target=lambda: box.append(sum(range(1000))))
t.start(); t.join()
out["thread"] = box
out["subprocess"] = subprocess.run(["/bin/sh", "-c", "echo hi"], capture_output=True).stdout.decode()
set_result(out)
"#,
    )
    .await;
    assert_eq!(
        r,
        json!({"clone3": libc::ENOSYS, "thread": [499500], "subprocess": "hi\n"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn privileges_are_dropped() {
    let cfg = config(1);
    let uid_base = cfg.uid_base;
    let Some(sb) = start(cfg).await else { return };
    let r = result(
        &sb,
        r#"
import os
f = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
set_result({k: f[k].strip() for k in ["NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "CapAmb", "Seccomp"]} | {"uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid()})
"#,
    )
    .await;
    assert_eq!(r["NoNewPrivs"], json!("1"));
    assert_eq!(r["Seccomp"], json!("2"));
    for k in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(r[k], json!("0000000000000000"), "{k}");
    }
    assert_ne!(r["uid"], json!(0));
    assert_ne!(r["euid"], json!(0));
    if is_root() {
        assert_eq!(r["uid"], json!(uid_base));
        assert!(sb.layers().uid_drop);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_are_a_worker_error() {
    let Some(sb) = sandbox(1).await else { return };
    let o = run(
        &sb,
        "import os\nos.write(3, b'\\x00\\x00\\x00\\x05hello')\nimport time\ntime.sleep(5)",
    )
    .await;
    assert_eq!(o.status, OutcomeStatus::Error);
    assert!(
        o.error
            .as_deref()
            .unwrap()
            .starts_with("protocol violation"),
        "{:?}",
        o.error
    );
    let o = run(
        &sb,
        "import os\nos.write(3, b'\\xff\\xff\\xff\\xff')\nimport time\ntime.sleep(5)",
    )
    .await;
    assert!(
        o.error.as_deref().unwrap().contains("exceeds"),
        "{:?}",
        o.error
    );
    assert_eq!(result(&sb, "set_result(5)").await, json!(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_an_execution_kills_its_tree() {
    let Some(sb) = sandbox(1).await else { return };
    let ex = sb
        .run(job(
            "import os, time\nos.fork()\nwhile True:\n    time.sleep(1)",
        ))
        .await
        .unwrap();
    let mut pid = None;
    for _ in 0..100 {
        pid = ex.pid();
        if pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = pid.expect("pid reported");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(ex);
    let mut gone = false;
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "reaper {pid} still alive after drop");
    assert_eq!(result(&sb, "set_result(6)").await, json!(6));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_zygote_is_replaced() {
    let Some(sb) = sandbox(2).await else { return };
    let before = sb.zygote_pids().await;
    assert_eq!(before.len(), 2);
    // Our own child process, by its pid (no `kill` binary needed: a minimal image has none).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..4 {
        assert_eq!(result(&sb, &format!("set_result({i})")).await, json!(i));
    }
    let after = sb.zygote_pids().await;
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn determinism_and_preimports() {
    let Some(sb) = sandbox(1).await else { return };
    let script = "import random, time\nset_result({'r': random.random(), 'h': hash('abc'), 'tz': time.strftime('%Z'), 'enc': __import__('sys').getfilesystemencoding(), 'hr': __import__('sys').flags.hash_randomization})";
    let a = result(&sb, script).await;
    let b = result(&sb, script).await;
    assert_eq!(a, b);
    assert_eq!(a["tz"], json!("UTC"));
    assert_eq!(a["enc"], json!("utf-8"));
    assert_eq!(a["hr"], json!(0), "PYTHONHASHSEED=0 must be in effect");
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_mode_applies_the_same_layers() {
    let mut cfg = config(1);
    cfg.force_cold = true;
    let Some(sb) = start(cfg).await else { return };
    assert_eq!(sb.layers().mode, "cold");
    assert!(sb.layers().missing().is_empty() || !sb.layers().uid_drop);
    let secret = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(secret.path(), "TOPSECRET").unwrap();
    let r = result(
        &sb,
        &r#"
import os, socket
f = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
try:
    open("@SECRET@")
    w = "READ"
except OSError as e:
    w = type(e).__name__
try:
    pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
except OSError as e:
    pids = type(e).__name__
set_result({"nnp": f["NoNewPrivs"].strip(), "sec": f["Seccomp"].strip(), "cap": f["CapEff"].strip(),
            "pids": pids, "work": w, "keys": settings.keys()})
"#
        .replace("@SECRET@", &secret.path().to_string_lossy()),
    )
    .await;
    // The container tier has no mount view: the host file exists, unreadable.
    let (pids, work) = if container() {
        (json!("PermissionError"), "PermissionError")
    } else {
        (json!([1, 2]), "FileNotFoundError")
    };
    assert_eq!(
        r,
        json!({"nnp": "1", "sec": "2", "cap": "0000000000000000", "pids": pids, "work": work, "keys": []})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_shims_and_missing_interpreters() {
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("python3");
    std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
    for python in [shim, dir.path().join("missing")] {
        let mut cfg = config(1);
        cfg.python = python;
        match Sandbox::start(cfg).await {
            Err(Error::Config(msg)) => assert!(msg.contains("python"), "{msg}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_across_processes_is_bounded_by_the_slot_cgroup() {
    let mut cfg = config(1);
    cfg.limits.memory_bytes = 256 << 20;
    let Some(sb) = start(cfg).await else { return };
    if !sb.layers().cgroup {
        eprintln!(
            "SKIPPED: no cgroup memory limit here: {:?}",
            sb.layers().notes
        );
        return;
    }
    let mut j = job(r#"
import os, time
kids = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (150 << 20)   # 150 MiB, touched
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
res = []
for pid in kids:
    _, st = os.waitpid(pid, 0)
    res.append(os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st))
set_result(res)
"#);
    j.timeout = Duration::from_secs(30);
    let o = run_job(&sb, j).await;
    match o.status {
        OutcomeStatus::Completed => {
            let killed = o
                .result
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| **v == json!(9))
                .count();
            assert!(killed >= 1, "6 x 150 MiB fitted in a 256 MiB execution");
        }
        _ => assert!(
            o.error.as_deref().unwrap_or("").contains("memory limit"),
            "{:?}",
            o.error
        ),
    }
    assert_eq!(result(&sb, "set_result(7)").await, json!(7));
}

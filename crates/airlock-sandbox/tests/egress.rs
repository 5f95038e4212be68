//! Egress plumbing, attacked through the real helper and real Python: a job with
//! `network` gets `lo` up in its own namespace and a listener on 127.0.0.1:PROXY_PORT
//! that the *server* holds; the script can connect there and nowhere else (no other
//! port, no bind, no raw sockets, no host loopback, no UDP out of its namespace). A job
//! without `network` has no listener and no working loopback at all.
//!
//! In the container tier (`AIRLOCK_TEST_SANDBOX_TIER=container`) the listener is the
//! spare's own, on the shared loopback at a port of its own, and Landlock lets the
//! script connect to that port alone; every probe below still targets loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use airlock_sandbox::*;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Serves the execution's listener like a (very small) proxy would: each connection
/// gets one line read and `echo:<line>` written back. `stop()` says how many it accepted.
struct Echo {
    task: tokio::task::JoinHandle<()>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    port: u16,
}

impl Echo {
    fn stop(self) -> usize {
        self.task.abort();
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn serve_echo(pending: PendingProxy) -> Echo {
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let std_listener = pending.listener().await.expect("egress listener");
    let addr = std_listener.local_addr().unwrap();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    if !container() {
        assert_eq!(addr.port(), PROXY_PORT);
    }
    let task = tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        while let Ok((sock, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut line = String::new();
                let _ = BufReader::new(r).read_line(&mut line).await;
                let _ = w
                    .write_all(format!("echo:{}\n", line.trim()).as_bytes())
                    .await;
            });
        }
    });
    Echo {
        task,
        accepted,
        port: addr.port(),
    }
}

const ATTACKS: &str = r#"
import ctypes, os, socket, struct, subprocess, shutil
out = {}
# The proxy's port: in the container tier each execution has its own.
PROXY = int(os.environ.get("HTTP_PROXY", "http://127.0.0.1:%d" % @PROXY@).rsplit(":", 1)[1])
def attempt(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = "ERR:" + (type(e).__name__)
def proxy():
    s = socket.create_connection(("127.0.0.1", PROXY), timeout=5)
    s.sendall(b"hello\n")
    return s.makefile().readline().strip()
attempt("proxy", proxy)
attempt("host_tcp", lambda: socket.create_connection(("127.0.0.1", @HOST_TCP@), timeout=2) and "CONNECTED")
attempt("other_port", lambda: socket.create_connection(("127.0.0.1", 8080), timeout=2) and "CONNECTED")
attempt("v6_proxy_port", lambda: socket.create_connection(("::1", PROXY), timeout=2) and "CONNECTED")
attempt("other_address", lambda: socket.create_connection(("127.0.0.2", 443), timeout=2) and "CONNECTED")
attempt("other_address_proxy_port", lambda: socket.create_connection(("127.0.0.2", PROXY), timeout=2) and "CONNECTED")
def bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port)); s.listen()
    return "BOUND"
attempt("bind_proxy_port", lambda: bind(PROXY))
attempt("bind_other", lambda: bind(9999))
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"ping", ("127.0.0.1", @HOST_UDP@))
    return "SENT"
attempt("udp", udp)
def dns():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1)
    u.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01", ("127.0.0.2", 53))
    return u.recv(512) and "ANSWERED"
attempt("dns", dns)
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP) and "OPENED")
# ctypes: the raw syscalls, bypassing Python's socket module entirely.
libc = ctypes.CDLL(None, use_errno=True)
def c_connect(port):
    fd = libc.socket(2, 1, 0)
    addr = struct.pack("!HH4s8x", 2, port, bytes([127, 0, 0, 1]))
    addr = struct.pack("=H", 2) + addr[2:]
    r = libc.connect(fd, addr, len(addr))
    return "CONNECTED" if r == 0 else "ERRNO:%d" % ctypes.get_errno()
attempt("ctypes_host_tcp", lambda: c_connect(@HOST_TCP@))
attempt("ctypes_proxy", lambda: c_connect(PROXY))
curl = shutil.which("curl")
if curl:
    r = subprocess.run([curl, "-sS", "--max-time", "3", "--noproxy", "*", "http://127.0.0.1:%d/" % @HOST_TCP@],
                       capture_output=True)
    out["curl_direct"] = r.returncode
else:
    out["curl_direct"] = "NO_CURL"
out["env"] = {k: os.environ.get(k) for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy"]}
set_result(out)
"#;

fn attacks(host_tcp: u16, host_udp: u16) -> String {
    ATTACKS
        .replace("@PROXY@", &PROXY_PORT.to_string())
        .replace("@HOST_TCP@", &host_tcp.to_string())
        .replace("@HOST_UDP@", &host_udp.to_string())
}

fn host_listeners() -> (std::net::TcpListener, std::net::UdpSocket) {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    (tcp, udp)
}

fn assert_host_saw_nothing(tcp: &std::net::TcpListener, udp: &std::net::UdpSocket) {
    assert!(tcp.accept().is_err(), "the host listener saw a connection");
    let mut buf = [0u8; 16];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "the host UDP socket received a datagram"
    );
}

fn failed(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("ERR:") || s.starts_with("ERRNO:"))
}

async fn network_job_reaches_only_the_proxy(sb: &Sandbox) {
    let (tcp, udp) = host_listeners();
    let mut j = job(&attacks(
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    ));
    j.network = true;
    j.timeout = Duration::from_secs(30);
    let mut ex = sb.run(j).await.expect("run");
    let served = serve_echo(ex.take_proxy().expect("a network job has a listener")).await;
    assert!(ex.take_proxy().is_none(), "the listener is taken once");
    let o = match ex.next_event().await {
        Event::Finished(o) => o,
        other => panic!("unexpected event {other:?}"),
    };
    assert_eq!(
        o.status,
        OutcomeStatus::Completed,
        "{:?} {}",
        o.error,
        String::from_utf8_lossy(&o.stderr)
    );
    let r = o.result.unwrap();
    assert_eq!(r["proxy"], json!("echo:hello"), "{r}");
    assert_eq!(r["ctypes_proxy"], json!("CONNECTED"), "{r}");
    for k in [
        "host_tcp",
        "other_port",
        "v6_proxy_port",
        "other_address",
        "other_address_proxy_port",
        "bind_proxy_port",
        "bind_other",
        "dns",
        "raw",
        "ctypes_host_tcp",
    ] {
        assert!(failed(&r[k]), "{k} did not fail: {r}");
    }
    // Landlock refuses connects to any port but the proxy's with EACCES.
    assert_eq!(
        r["ctypes_host_tcp"],
        json!(format!("ERRNO:{}", libc::EACCES)),
        "{r}"
    );
    match &r["curl_direct"] {
        Value::String(s) if s == "NO_CURL" => {
            eprintln!("SKIPPED (part): curl is not installed; direct curl not attacked")
        }
        code => assert_ne!(code, &json!(0), "curl reached the host: {r}"),
    }
    let url = format!("http://127.0.0.1:{}", served.port);
    assert_eq!(
        r["env"],
        json!({"HTTP_PROXY": url, "HTTPS_PROXY": url, "ALL_PROXY": url, "http_proxy": url,
               "https_proxy": url, "all_proxy": url, "NO_PROXY": "", "no_proxy": ""})
    );
    assert_host_saw_nothing(&tcp, &udp);
    // The proxy saw exactly the two connections the script made to it.
    drop(ex);
    assert_eq!(served.stop(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn network_job_can_reach_only_the_proxy_listener() {
    let Some(sb) = sandbox(1).await else { return };
    network_job_reaches_only_the_proxy(&sb).await;
    // The slot's next execution (fresh namespace) is back to no network.
    let o = run(
        &sb,
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 3128), timeout=2)\n    set_result('CONNECTED')\nexcept OSError as e:\n    set_result(e.errno)\n",
    )
    .await;
    // Landlock allows no connect at all to a job without network (in the container
    // tier its port would not be 3128 either, and nobody serves it).
    assert_eq!(o.result, Some(json!(libc::EACCES)));
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_mode_network_job_can_reach_only_the_proxy_listener() {
    let mut cfg = config(1);
    cfg.force_cold = true;
    let Some(sb) = start(cfg).await else { return };
    network_job_reaches_only_the_proxy(&sb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_without_network_has_no_listener_and_no_loopback() {
    let Some(sb) = sandbox(1).await else { return };
    let (tcp, udp) = host_listeners();
    let mut ex = sb
        .run(job(&attacks(
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        )))
        .await
        .expect("run");
    assert!(ex.take_proxy().is_none());
    let o = match ex.next_event().await {
        Event::Finished(o) => o,
        other => panic!("unexpected event {other:?}"),
    };
    let r = o.result.expect("result");
    // Landlock refuses every connect (in the full tier lo is down as well; in the
    // container tier 3128 is not the spare's port either).
    assert_eq!(r["proxy"], json!("ERR:PermissionError"), "{r}");
    assert_eq!(
        r["ctypes_proxy"],
        json!(format!("ERRNO:{}", libc::EACCES)),
        "{r}"
    );
    for k in ["host_tcp", "other_address", "bind_other", "udp", "raw"] {
        assert!(failed(&r[k]), "{k} did not fail: {r}");
    }
    assert_eq!(
        r["env"],
        json!({"HTTP_PROXY": null, "HTTPS_PROXY": null, "ALL_PROXY": null, "http_proxy": null,
               "https_proxy": null, "all_proxy": null, "NO_PROXY": null, "no_proxy": null})
    );
    assert_host_saw_nothing(&tcp, &udp);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_network_jobs_get_separate_listeners() {
    let Some(sb) = sandbox(2).await else { return };
    let script = "import os, socket\nport = int(os.environ['HTTP_PROXY'].rsplit(':', 1)[1])\ns = socket.create_connection(('127.0.0.1', port), timeout=5)\ns.sendall(b'x\\n')\nset_result(s.makefile().readline().strip())\n";
    let mut a = job(script);
    a.network = true;
    let mut b = a.clone();
    b.script = script.replace("b'x", "b'y");
    let mut ea = sb.run(a).await.unwrap();
    let mut eb = sb.run(b).await.unwrap();
    let sa = serve_echo(ea.take_proxy().unwrap()).await;
    let sb_ = serve_echo(eb.take_proxy().unwrap()).await;
    if container() {
        assert_ne!(sa.port, sb_.port, "two executions share a proxy port");
    }
    let (oa, ob) = tokio::join!(ea.next_event(), eb.next_event());
    let (Event::Finished(oa), Event::Finished(ob)) = (oa, ob) else {
        panic!("unexpected events")
    };
    assert_eq!(oa.result, Some(json!("echo:x")), "{:?}", oa.error);
    assert_eq!(ob.result, Some(json!("echo:y")), "{:?}", ob.error);
    drop((ea, eb));
    assert_eq!((sa.stop(), sb_.stop()), (1, 1));
}

/// Serves one listener: each connection gets one line read and `<tag>:<line>` back.
fn serve_tagged(l: std::net::TcpListener, tag: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(l).unwrap();
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut line = String::new();
                let _ = BufReader::new(r).read_line(&mut line).await;
                let _ = w
                    .write_all(format!("{tag}:{}\n", line.trim()).as_bytes())
                    .await;
            });
        }
    })
}

const TCP_SCRIPT: &str = r#"
import os, socket
out = {}
def ask(host, port):
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"ping\n")
        return s.makefile().readline().strip()
    except OSError as e:
        return "ERR:%s" % type(e).__name__
out["db"] = ask("db.internal", 5432)
out["cache"] = ask("cache.internal", 3128)
out["loopback"] = ask("127.0.0.1", 6379)
out["other_port"] = ask("127.0.0.1", 8080)
try:
    out["resolved"] = socket.gethostbyname("db.internal")
except OSError as e:
    out["resolved"] = "ERR:%s" % type(e).__name__
try:
    out["hosts"] = open("/etc/hosts").read()
except OSError as e:
    out["hosts"] = "ERR:%s" % type(e).__name__
try:
    open("/etc/hosts", "a").write("6.6.6.6 db.internal\n")
    out["hosts_write"] = "WROTE"
except OSError as e:
    out["hosts_write"] = "ERR:%s" % type(e).__name__
try:
    out["staging"] = os.listdir("/run/airlock")
except OSError as e:
    out["staging"] = "ERR:%s" % type(e).__name__
set_result(out)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tcp_destinations_are_reached_under_their_own_name_and_port() {
    let Some(sb) = sandbox(1).await else { return };
    tcp_destinations(&sb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_mode_tcp_destinations_are_reached_under_their_own_name_and_port() {
    let mut cfg = config(1);
    cfg.force_cold = true;
    let Some(sb) = start(cfg).await else { return };
    tcp_destinations(&sb).await;
}

async fn tcp_destinations(sb: &Sandbox) {
    let mut j = job(TCP_SCRIPT);
    j.network = true;
    j.timeout = Duration::from_secs(30);
    j.tcp = vec![
        TcpForward {
            host: "db.internal".into(),
            port: 5432,
        },
        // A name on the proxy's own port: its address is not the proxy's.
        TcpForward {
            host: "cache.internal".into(),
            port: PROXY_PORT,
        },
        TcpForward {
            host: "127.0.0.1".into(),
            port: 6379,
        },
    ];
    let mut ex = sb.run(j).await.expect("run");
    let listeners = ex
        .take_proxy()
        .expect("a network job has listeners")
        .listeners()
        .await
        .expect("egress listeners");
    let proxy = serve_tagged(listeners.proxy, "proxy");
    assert_eq!(listeners.tcp.len(), 3);
    let mut tasks = vec![proxy];
    if container() {
        for l in &listeners.tcp {
            let e = l
                .as_ref()
                .expect_err("no TCP listener in the container tier");
            assert!(e.contains("full sandbox tier"), "{e}");
        }
    } else {
        let addrs: Vec<String> = listeners
            .tcp
            .iter()
            .map(|l| {
                l.as_ref()
                    .expect("listener")
                    .local_addr()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            addrs,
            ["127.0.2.1:5432", "127.0.2.2:3128", "127.0.0.1:6379"],
            "names get addresses of their own, loopback addresses are kept"
        );
        for (l, tag) in listeners.tcp.into_iter().zip(["db", "cache", "redis"]) {
            tasks.push(serve_tagged(l.unwrap(), tag));
        }
    }
    let o = match ex.next_event().await {
        Event::Finished(o) => o,
        other => panic!("unexpected event {other:?}"),
    };
    for t in tasks {
        t.abort();
    }
    assert_eq!(
        o.status,
        OutcomeStatus::Completed,
        "{:?} {}",
        o.error,
        String::from_utf8_lossy(&o.stderr)
    );
    let r = o.result.unwrap();
    if container() {
        assert_eq!(r["db"], json!("ERR:gaierror"), "{r}");
        assert_eq!(r["loopback"], json!("ERR:PermissionError"), "{r}");
        return;
    }
    assert_eq!(r["db"], json!("db:ping"), "{r}");
    assert_eq!(r["cache"], json!("cache:ping"), "{r}");
    assert_eq!(r["loopback"], json!("redis:ping"), "{r}");
    assert_eq!(r["resolved"], json!("127.0.2.1"), "{r}");
    // Landlock: the job's ports only.
    assert_eq!(r["other_port"], json!("ERR:PermissionError"), "{r}");
    assert_eq!(
        r["hosts"],
        json!(
            "127.0.2.1 db.internal\n127.0.2.2 cache.internal\n127.0.0.1 localhost\n::1 localhost\n"
        ),
        "{r}"
    );
    assert!(failed(&r["hosts_write"]), "{r}");
    // Where the file was made is in no Landlock list (and empty again).
    assert_eq!(r["staging"], json!("ERR:PermissionError"), "{r}");

    // The slot's next execution (a fresh namespace) has the view's own /etc/hosts.
    let o = run(sb, "set_result(open('/etc/hosts').read())").await;
    assert_eq!(
        o.result,
        Some(json!("127.0.0.1 localhost\n::1 localhost\n")),
        "{:?}",
        o.error
    );
}

/// The job-time connect ruleset is a second Landlock layer: files still move between
/// the script's own directories (a layer that handled no file access would refuse that
/// with EXDEV, which broke installers), and still cannot move out of them.
#[tokio::test(flavor = "multi_thread")]
async fn files_move_between_the_scripts_directories_with_and_without_network() {
    let Some(sb) = sandbox(1).await else { return };
    let script = "import os\nos.makedirs('b')\nopen('x', 'w').write('1')\nos.rename('x', 'b/x')\ntry:\n    os.rename('b/x', '/etc/x')\n    moved_out = 'MOVED'\nexcept OSError as e:\n    moved_out = 'ERR'\nset_result([os.listdir('b'), moved_out])\n";
    for network in [false, true] {
        let mut j = job(script);
        j.network = network;
        let mut ex = sb.run(j).await.unwrap();
        let _listeners = ex.take_proxy();
        let o = match ex.next_event().await {
            Event::Finished(o) => o,
            other => panic!("unexpected event {other:?}"),
        };
        assert_eq!(
            o.result,
            Some(json!([["x"], "ERR"])),
            "network={network}: {:?}",
            o.error
        );
    }
}

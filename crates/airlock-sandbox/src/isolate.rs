//! Per-execution isolation, run in a process freshly forked from the slot's zygote.
//!
//! The zygote (warm Python, or the helper's Rust loop in cold mode) forks a *spare*
//! before the job exists, and the child calls [`airlock_isolate`]. The spare isolates
//! itself completely, then waits for the job's file descriptors, so a job only pays for
//! the hand-over. That call turns one process into three:
//!
//! * **C, the supervisor** (outside the new PID namespace): creates the execution's user,
//!   PID, mount, network, IPC, UTS and cgroup namespaces, forks R, hands the server a
//!   pidfd of R, and reports the final status. If the server closes its end of the
//!   status socket (execution dropped, server dead) C kills R. A spare dies with its
//!   zygote; once its job has come, C no longer needs the zygote (a parked execution
//!   outlives it).
//! * **R, the reaper** (PID 1 of the new PID namespace): mounts a fresh /proc, a
//!   size-capped tmpfs at /tmp and /dev/shm, forks S, reaps everything, and exits when S
//!   exits, which makes the kernel kill whatever the script left behind. Python is never
//!   PID 1 (it would ignore SIGTERM/SIGXCPU).
//! * **S, the script process**: stdio and the control socket on fixed fds, rlimits,
//!   Landlock, no_new_privs, all capabilities dropped, seccomp — and only then returns
//!   to Python (warm mode) or execs the interpreter (cold mode).
//!
//! Only S ever returns from this function, fully isolated but before any job exists; it
//! then calls [`airlock_await_job`], which blocks until the job's file descriptors
//! arrive. In between, warm mode rehearses a job on /dev/null (see `_worker.py`) so the
//! copy-on-write faults of a job's code path are paid while the slot is idle.
//! Failures fail closed: a layer that cannot be applied and is not in `allow_missing`
//! ends the execution with a setup error.
#![allow(unsafe_code)] // the FFI entry points called from Python and the fork sequence of each execution; every block has a SAFETY note

use crate::config::{Layer, LayerReport, Limits, Tier};
use crate::plan::LandlockPaths;
use crate::sys;
use seccompiler::BpfProgram;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::OnceLock;

/// The per-slot plan, fixed before the zygote starts and inherited by every fork.
pub(crate) struct ChildPlan {
    pub uid: u32,
    pub gid: u32,
    pub limits: Limits,
    pub landlock: LandlockPaths,
    pub landlock_abi: i32,
    pub seccomp: Vec<BpfProgram>,
    pub allow_missing: BTreeSet<Layer>,
    /// The slot-level layers (fs view etc.), so an execution can tell whether /proc and
    /// /tmp are the view's mount points.
    pub fs_view: bool,
    pub tier: Tier,
    /// Container tier: the slot's scratch directory (see [`crate::plan::HelperConfig`]).
    pub scratch: Option<std::path::PathBuf>,
}

pub(crate) static PLAN: OnceLock<ChildPlan> = OnceLock::new();

/// Fixed fd numbers in the script process.
pub(crate) const PROTO_FD: RawFd = 3;
/// The pipe S reports its layers and set-up errors on (to R, then C).
const REPORT_FD: RawFd = 4;
/// The socket S receives the job's fds on (from the server, or from C with egress).
const JOB_FD: RawFd = 5;

/// Set by S when every layer is on, taken by [`await_job`]: the layers to report.
static ISOLATED: std::sync::Mutex<Option<LayerReport>> = std::sync::Mutex::new(None);

/// The request the zygote passes when it forks a spare: the spare's end of a
/// SOCK_SEQPACKET pair on which the server hands over the job, and both ends of the
/// pair that carries the job's control socket and output pipes to S (`job_s` is S's;
/// the server holds `job_srv` too, the zygote announced it).
#[derive(Debug, Deserialize)]
pub(crate) struct IsolateRequest {
    pub spare: RawFd,
    pub zygote_pid: i32,
    pub job_srv: RawFd,
    pub job_s: RawFd,
    /// Container tier: the spare's own proxy listener on the shared loopback (made by
    /// the zygote before the fork, its port announced with the spare) and its port.
    #[serde(default)]
    pub proxy_fd: Option<RawFd>,
    #[serde(default)]
    pub proxy_port: Option<u16>,
}

/// What one execution's processes learn from their supervisor.
struct ExecPlan {
    /// Container tier: the execution's scratch directory (its working directory).
    scratch: Option<std::path::PathBuf>,
    /// The one TCP port a connect may reach.
    proxy_port: Option<u16>,
}

/// The job's file descriptors as received by the supervisor, and what the job asks of
/// the execution's namespaces. Without egress the server sends S its fds itself and C
/// gets only the status socket (`for_s` is `None`).
struct JobFds {
    status: OwnedFd,
    /// Control socket, stdout, stderr: for C to hand to S once egress is set up.
    for_s: Option<[OwnedFd; 3]>,
    /// The job wants egress: bring `lo` up and hand the server a listener on
    /// 127.0.0.1:[`crate::PROXY_PORT`] (the only way out, through the server's proxy).
    network: bool,
    /// The job's TCP destinations: a listener each, at the address the name gets in
    /// the execution's /etc/hosts (or at the loopback address listed).
    tcp: Vec<TcpEntry>,
}

/// One TCP destination as the server names it in the job (see [`crate::TcpForward`]).
#[derive(Debug, Clone, Deserialize)]
struct TcpEntry {
    host: String,
    port: u16,
}

/// The first address of the loopback block that names of TCP destinations get (one
/// each, in order: 127.0.2.1, 127.0.2.2, ...).
const TCP_NAME_NET: [u8; 3] = [127, 0, 2];

/// Entry point called (through ctypes, by address) in the process the zygote just forked.
///
/// Returns 0 in the fully isolated script process, before its job exists; the supervisor
/// and reaper never return.
///
/// # Safety
/// `req` must point to `len` readable bytes. Must be called in a single-threaded process.
#[no_mangle]
pub unsafe extern "C" fn airlock_isolate(req: *const u8, len: usize) -> libc::c_int {
    // SAFETY: caller guarantees req/len describe a readable buffer.
    let bytes = unsafe { std::slice::from_raw_parts(req, len) }.to_vec();
    // A panic must never unwind into Python's C frames.
    match std::panic::catch_unwind(move || isolate(&bytes)) {
        Ok(()) => 0,
        Err(_) => sys::exit_now(121),
    }
}

/// Second entry point, called by the script process once [`airlock_isolate`] returned:
/// blocks until the job's fds arrive and puts them in place. Returns 0; exits if the
/// spare is never used.
///
/// # Safety
/// Must be called once, in the process where [`airlock_isolate`] returned.
#[no_mangle]
pub unsafe extern "C" fn airlock_await_job() -> libc::c_int {
    match std::panic::catch_unwind(await_job) {
        Ok(()) => 0,
        Err(_) => sys::exit_now(121),
    }
}

/// Runs the three-process split. Returns only in the script process.
pub(crate) fn isolate(req: &[u8]) {
    let Some(plan) = PLAN.get() else {
        sys::exit_now(120);
    };
    let req: IsolateRequest = match serde_json::from_slice(req) {
        Ok(r) => r,
        Err(_) => sys::exit_now(119),
    };
    supervisor(plan, &req);
}

fn allowed(plan: &ChildPlan, layer: Layer) -> bool {
    plan.allow_missing.contains(&layer)
}

/// Sends one JSON message (plus optional fds) on the status socket; best effort.
fn status_send(fd: RawFd, value: &serde_json::Value, fds: &[RawFd]) {
    let _ = sys::send_with_fds(fd, value.to_string().as_bytes(), fds);
}

const NS_FLAGS: [(libc::c_int, Layer); 5] = [
    (libc::CLONE_NEWPID, Layer::PidNs),
    (libc::CLONE_NEWNS, Layer::MountNs),
    (libc::CLONE_NEWNET, Layer::NetNs),
    (libc::CLONE_NEWIPC, Layer::IpcNs),
    (libc::CLONE_NEWUTS, Layer::UtsNs),
];

/// Blocks until the server hands over a job (on the socket the zygote announced for this
/// spare). `None` if the zygote and the server both let go of the spare.
fn wait_for_job(spare: RawFd) -> Option<JobFds> {
    let (msg, fds) =
        sys::recv_with_fds(spare, 32 * 1024, nix::sys::socket::MsgFlags::empty()).ok()??;
    // The server's message: `{"type":"run","network":..,"tcp":[{"host":..,"port":..}]}`.
    #[derive(Deserialize)]
    struct Control {
        #[serde(default)]
        network: bool,
        #[serde(default)]
        tcp: Vec<TcpEntry>,
    }
    let Control { network, tcp } = serde_json::from_slice(&msg).unwrap_or(Control {
        network: false,
        tcp: Vec::new(),
    });
    let mut it = fds.into_iter();
    match (it.next(), it.next(), it.next(), it.next(), it.next()) {
        (Some(status), None, None, None, None) => Some(JobFds {
            status,
            for_s: None,
            network,
            tcp,
        }),
        (Some(proto), Some(status), Some(stdout), Some(stderr), None) => Some(JobFds {
            status,
            for_s: Some([proto, stdout, stderr]),
            network,
            tcp,
        }),
        _ => None,
    }
}

/// Egress for a job that asked for it: `lo` up in the execution's own (empty) network
/// namespace and a listener on 127.0.0.1:PROXY_PORT, plus one per TCP destination,
/// passed to the server with SCM_RIGHTS before the script starts (the destinations'
/// names written into the execution's /etc/hosts). The script never holds a listener:
/// S was forked before they existed. Only with a private network namespace: without
/// one the ports would be on the host's loopback. Returns the ports S may connect to.
fn setup_egress(
    status: RawFd,
    net_ns: bool,
    mount_ns: bool,
    listener: Option<(&OwnedFd, u16)>,
    tcp: &[TcpEntry],
) -> Vec<u16> {
    if let Some((fd, port)) = listener {
        // Container tier: the spare's listener on the shared loopback already exists
        // (Landlock lets the script connect to its port and no other). The supervisor
        // keeps its own descriptor until the execution is over, so the port cannot be
        // taken by anyone else while the script runs.
        let none: Vec<serde_json::Value> = tcp
            .iter()
            .map(|_| serde_json::json!({"error": "tcp:// destinations need the full sandbox tier (an execution's own network namespace)"}))
            .collect();
        status_send(
            status,
            &serde_json::json!({"type": "proxy", "port": port, "tcp": none}),
            &[fd.as_raw_fd()],
        );
        return vec![port];
    }
    let result = if !net_ns {
        Err("the execution has no private network namespace".to_string())
    } else {
        sys::loopback_up()
            .map_err(|e| format!("bringing lo up: {e}"))
            .and_then(|()| {
                sys::tcp_listen(std::net::Ipv4Addr::LOCALHOST, crate::PROXY_PORT, 128)
                    .map_err(|e| format!("listening on 127.0.0.1:{}: {e}", crate::PROXY_PORT))
            })
    };
    let proxy = match result {
        Ok(l) => l,
        Err(e) => {
            status_send(
                status,
                &serde_json::json!({"type": "proxy", "error": e}),
                &[],
            );
            return Vec::new();
        }
    };
    let mut ports = vec![crate::PROXY_PORT];
    let mut listeners: Vec<Result<(OwnedFd, bool), String>> = Vec::new();
    // One address per name (a name with several ports has a listener per port there).
    let mut names: Vec<(String, std::net::Ipv4Addr)> = Vec::new();
    for e in tcp {
        let named = e.host.parse::<std::net::Ipv4Addr>().is_err();
        let addr = match e.host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => Ok(ip),
            Ok(ip) => Err(format!("{ip} is not a loopback address")),
            Err(_) => match names.iter().find(|(n, _)| *n == e.host) {
                Some((_, ip)) => Ok(*ip),
                None if names.len() >= 254 => Err("too many names".to_string()),
                None => {
                    let [a, b, c] = TCP_NAME_NET;
                    let ip = std::net::Ipv4Addr::new(a, b, c, names.len() as u8 + 1);
                    names.push((e.host.clone(), ip));
                    Ok(ip)
                }
            },
        };
        listeners.push(addr.and_then(|ip| {
            sys::tcp_listen(ip, e.port, 128)
                .map(|fd| (fd, named))
                .map_err(|err| format!("listening on {ip}:{}: {err}", e.port))
        }));
        if !ports.contains(&e.port) {
            ports.push(e.port);
        }
    }
    if !names.is_empty() {
        let written = if mount_ns {
            write_hosts(&names)
        } else {
            Err("the execution has no private mount namespace".to_string())
        };
        if let Err(why) = written {
            for l in listeners.iter_mut() {
                if matches!(l, Ok((_, true))) {
                    *l = Err(format!(
                        "cannot give the name an address in /etc/hosts: {why}"
                    ));
                }
            }
        }
    }
    let mut fds = vec![proxy.as_raw_fd()];
    let results: Vec<serde_json::Value> = listeners
        .iter()
        .map(|l| match l {
            Ok((fd, _)) => {
                fds.push(fd.as_raw_fd());
                serde_json::json!({"ok": true})
            }
            Err(e) => serde_json::json!({"error": e}),
        })
        .collect();
    status_send(
        status,
        &serde_json::json!({"type": "proxy", "port": crate::PROXY_PORT, "tcp": results}),
        &fds,
    );
    // Our copies close here; the server's are the only ones left.
    ports
}

/// Makes `names` the first lines of the execution's /etc/hosts (then `localhost`,
/// unless it is one of them): written on a tmpfs of our own mounted at the view's
/// staging directory, bound read-only over /etc/hosts, and the tmpfs detached again
/// (the bind mount keeps the file), so the script sees the file and nothing where it
/// was made.
fn write_hosts(names: &[(String, std::net::Ipv4Addr)]) -> Result<(), String> {
    let mut entries: String = names.iter().map(|(n, ip)| format!("{ip} {n}\n")).collect();
    if !names.iter().any(|(n, _)| n == "localhost") {
        entries.push_str("127.0.0.1 localhost\n::1 localhost\n");
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(crate::plan::STAGING_DIR);
    let hardening = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        hardening,
        Some("size=64k,nr_inodes=16,mode=0755"),
    )
    .map_err(|e| format!("mount a tmpfs on {}: {e}", dir.display()))?;
    let file = dir.join("hosts");
    let done = std::fs::write(&file, entries)
        .and_then(|()| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("writing {}: {e}", file.display()))
        .and_then(|()| {
            let hosts = Path::new("/etc/hosts");
            sys::mount(Some(&file), hosts, None, libc::MS_BIND, None)
                .and_then(|()| {
                    sys::mount(
                        None,
                        hosts,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | hardening,
                        None,
                    )
                })
                .map_err(|e| format!("binding /etc/hosts: {e}"))
        });
    let _ = sys::umount2(dir, libc::MNT_DETACH);
    done
}

/// Reports a set-up failure once a job (and so a status socket) exists, then exits.
fn setup_fail_after_job(spare: RawFd, msg: String) -> ! {
    if let Some(job) = wait_for_job(spare) {
        status_send(
            job.status.as_raw_fd(),
            &serde_json::json!({"type": "exit", "setup_error": msg}),
            &[],
        );
    }
    sys::exit_now(1)
}

/// C: namespaces, then waits for the job, then supervises R.
fn supervisor(plan: &ChildPlan, req: &IsolateRequest) {
    let spare = req.spare;
    // Python's zygote ignores SIGCHLD (auto-reap); we need wait statuses.
    sys::set_signal_default(libc::SIGCHLD);
    if sys::set_pdeathsig(libc::SIGKILL).is_err() || sys::getppid() != req.zygote_pid {
        sys::exit_now(1);
    }
    let mut keep = vec![spare, req.job_srv, req.job_s];
    keep.extend(req.proxy_fd);
    sys::close_all_except(&keep);
    // SAFETY: these fds were inherited from the zygote for this process alone.
    let (cs_c, cs_s) = unsafe { (sys::own_fd(req.job_srv), sys::own_fd(req.job_s)) };
    // SAFETY: as above (the zygote closed its copy after the fork).
    let listener = req.proxy_fd.map(|fd| unsafe { sys::own_fd(fd) });

    let mut layers = LayerReport {
        tier: plan.tier,
        ..LayerReport::default()
    };
    let exec = match plan.tier {
        Tier::Full => ExecPlan {
            scratch: None,
            proxy_port: None,
        },
        Tier::Container => {
            let Some(port) = req.proxy_port.filter(|_| listener.is_some()) else {
                setup_fail_after_job(
                    spare,
                    "container tier: the spare has no proxy listener".into(),
                );
            };
            let scratch = match make_scratch(plan) {
                Ok(d) => d,
                Err(e) => setup_fail_after_job(spare, format!("scratch directory: {e}")),
            };
            ExecPlan {
                scratch: Some(scratch),
                proxy_port: Some(port),
            }
        }
    };
    // Container tier: if R is killed (the execution dropped), the script and its
    // children come back to C, which ends their group and reaps them.
    if plan.tier == Tier::Container && sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).is_err() {
        setup_fail_after_job(spare, "PR_SET_CHILD_SUBREAPER failed".into());
    }
    // 1. Namespaces (full tier): a fresh user namespace owns all the others.
    let all = libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    match (plan.tier == Tier::Full).then(|| sys::unshare(all)) {
        // Container tier: no namespaces at all; Landlock, seccomp and the uid carry it.
        None => {}
        Some(Ok(())) => {
            for l in [
                Layer::UserNs,
                Layer::PidNs,
                Layer::MountNs,
                Layer::NetNs,
                Layer::IpcNs,
                Layer::UtsNs,
            ] {
                layers.set(l, true);
            }
            if let Err(e) = sys::map_self(plan.uid, plan.gid) {
                setup_fail_after_job(spare, format!("user_ns: writing uid/gid map failed: {e}"));
            }
            let _ = sys::sethostname("airlock");
        }
        Some(Err(e)) => {
            if !allowed(plan, Layer::UserNs) {
                setup_fail_after_job(spare, format!("user_ns: unshare failed: {e}"));
            }
            // Degraded: try each namespace alone (works only with real privileges).
            for (flag, layer) in NS_FLAGS {
                let ok = sys::unshare(flag).is_ok();
                if !ok && !allowed(plan, layer) {
                    setup_fail_after_job(
                        spare,
                        format!("{layer}: unshare failed without a user namespace"),
                    );
                }
                layers.set(layer, ok);
            }
        }
    }

    let pipes = sys::pipe_cloexec().and_then(|a| Ok((a, sys::pipe_cloexec()?)));
    let ((report_r, report_w), (alive_r, alive_w)) = match pipes {
        Ok(p) => p,
        Err(e) => setup_fail_after_job(spare, format!("pipe: {e}")),
    };
    // The job's control socket and output pipes reach S on `cs_s`: from the server
    // directly, or from C (`cs_c`) once egress is set up.

    // SAFETY: this process is single-threaded (forked from a single-threaded zygote).
    let pid = match unsafe { sys::fork() } {
        Ok(p) => p,
        Err(e) => setup_fail_after_job(spare, format!("fork: {e}")),
    };
    if pid == 0 {
        sys::close(report_r);
        sys::close(alive_w);
        sys::close(spare);
        drop(cs_c);
        drop(listener);
        // Returns only in the script process.
        reaper(plan, &exec, layers, report_w, alive_r, cs_s);
        return;
    }
    sys::close(report_w);
    sys::close(alive_r);
    drop(cs_s);

    // The spare is ready; wait for the job. If the zygote goes away, end the tree.
    let Some(job) = wait_for_job(spare) else {
        // SAFETY: pid is our own unreaped child, so it cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        sys::exit_now(0);
    };
    sys::close(spare);
    // From here on the server's status socket bounds this tree's life (a hang-up
    // kills R, below), so the zygote may go: a parked execution outlives it (see
    // `Execution::park`). Until the job came, a spare died with its zygote.
    if sys::set_pdeathsig(0).is_err() {
        // SAFETY: pid is our own unreaped child, so it cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        sys::exit_now(1);
    }
    let status = job.status.as_raw_fd();
    let connect = if job.network {
        let l = listener.as_ref().zip(exec.proxy_port);
        setup_egress(status, layers.net_ns, layers.mount_ns, l, &job.tcp)
    } else {
        Vec::new()
    };
    // Hand S its fds unless the server did (then S may connect nowhere); if S already
    // died in set-up, the report says why.
    if let Some(for_s) = job.for_s {
        let raw = for_s.each_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let msg = serde_json::json!({ "connect": connect }).to_string();
        let _ = sys::send_with_fds(cs_c.as_raw_fd(), msg.as_bytes(), &raw);
    }
    drop(cs_c);

    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: pid is our own unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            status_send(
                status,
                &serde_json::json!({"type": "exit", "setup_error": format!("pidfd_open: {e}")}),
                &[],
            );
            sys::exit_now(1);
        }
    };
    status_send(
        status,
        &serde_json::json!({"type": "started", "pid": pid}),
        &[pidfd.as_raw_fd()],
    );

    // Wait for R to exit, or for the server to hang up (then kill R).
    let mut killed = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: status,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let nfds = if killed { 1 } else { 2 };
        // SAFETY: fds is a valid array of at least `nfds` pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) };
        if r < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            break;
        }
        if !killed && fds[1].revents != 0 {
            // The server never writes here: readable means hang-up or junk. Either way, end.
            let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
            killed = true;
        }
    }
    sys::close(alive_w);
    let reaper_status = sys::waitpid(pid, 0).map(|(_, s)| s).ok();
    let report = sys::read_to_end(report_r, 64 * 1024);
    let mut script_status: Option<i32> = None;
    let mut child_layers: Option<serde_json::Value> = None;
    let mut setup_error: Option<String> = None;
    let mut script_pid: Option<i32> = None;
    let mut limit: Option<String> = None;
    for line in report.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(&line[1..]).to_string();
        match line[0] {
            b'S' => script_status = text.parse().ok(),
            b'L' => child_layers = serde_json::from_str(&text).ok(),
            b'E' => setup_error = Some(text),
            b'P' => script_pid = text.parse().ok(),
            b'X' => limit = Some(text),
            _ => {}
        }
    }
    if let Some(dir) = &exec.scratch {
        // Container tier: nothing of the execution may outlive it. The reaper killed
        // the script's process group when the script ended; if the reaper itself was
        // killed first, that group is ended here (its members cannot leave it: seccomp
        // refuses setsid and setpgid). Only then does the proxy port go and the scratch
        // directory with it.
        if let Some(pgid) = script_pid {
            kill_group(pgid);
        }
        drop(listener);
        remove_tree(dir);
    }
    status_send(
        status,
        &serde_json::json!({
            "type": "exit",
            "reaper": reaper_status.map(wait_json),
            "script": script_status.map(wait_json),
            "layers": child_layers,
            "setup_error": setup_error,
            "limit": limit,
        }),
        &[],
    );
    sys::exit_now(0)
}

/// Container tier: a fresh scratch directory for this execution below the slot's, named
/// after the supervisor's pid (a leftover of a crashed supervisor with that pid is
/// removed first).
fn make_scratch(plan: &ChildPlan) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let base = plan
        .scratch
        .as_ref()
        .ok_or("the slot has no scratch directory")?;
    let dir = base.join(format!("x{}", sys::getpid()));
    if std::fs::symlink_metadata(&dir).is_ok() {
        remove_tree(&dir);
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes a directory tree the script may have made unreadable (the script runs as the
/// same uid, so every entry is ours to chmod). Best effort.
fn remove_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fn open_up(dir: &Path, depth: usize) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if depth > 64 {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&e.path(), depth + 1);
                }
            }
        }
    }
    if std::fs::remove_dir_all(dir).is_err() {
        open_up(dir, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Bytes and entries under `dir` (stops counting at `max_entries`).
fn scratch_usage(dir: &Path, max_entries: u64) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in list.flatten() {
            entries += 1;
            if entries > max_entries {
                return (bytes, entries);
            }
            if let Ok(m) = e.metadata() {
                bytes += m.blocks() * 512;
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    (bytes, entries)
}

/// Sends SIGKILL to a process group until it is gone (bounded), reaping its members as
/// they die: the caller is a child subreaper, so every member whose parent is gone is
/// its child, and a zombie still counts as a member. A group signal reaches every
/// member at once, so a member that forks cannot outrun it.
fn kill_group(pgid: i32) {
    for _ in 0..2000 {
        // SAFETY: kill() with integer arguments.
        if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
            return;
        }
        while let Ok((p, _)) = sys::waitpid(-1, libc::WNOHANG) {
            if p <= 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// How often the container tier's reaper measures the scratch directory.
const SCRATCH_CHECK: libc::c_int = 100;

/// R in the container tier: waits for S while watching the scratch directory's size
/// (a plain directory has no size cap of its own), reaps the orphans that come back to
/// it, and when S ends, kills S's whole process group before it reports. Never returns.
fn container_reap(plan: &ChildPlan, dir: &Path, pid: i32, report_w: RawFd) -> ! {
    let cap = plan.limits.scratch_bytes;
    let max_entries = (cap / 4096).clamp(256, 1 << 20);
    let pidfd = sys::pidfd_open(pid).ok();
    let mut over = false;
    loop {
        match sys::waitpid(-1, libc::WNOHANG) {
            Ok((p, st)) if p == pid => {
                report_line(report_w, b'S', &st.to_string());
                kill_group(pid);
                // Every remaining child is a member of that group: wait for all of them.
                while sys::waitpid(-1, 0).is_ok() {}
                sys::exit_now(0);
            }
            Ok((p, _)) if p > 0 => continue,
            Ok(_) => {}
            Err(_) => sys::exit_now(0),
        }
        if let Some(fd) = &pidfd {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, SCRATCH_CHECK) };
        } else {
            std::thread::sleep(std::time::Duration::from_millis(SCRATCH_CHECK as u64));
        }
        if !over {
            let (bytes, entries) = scratch_usage(dir, max_entries);
            if bytes > cap || entries > max_entries {
                over = true;
                report_line(report_w, b'X', "scratch");
                // The script's exit is reaped (and the rest of its group ended) above.
                // SAFETY: kill() with integer arguments.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
    }
}

/// Encodes a raw wait status as `{"code": n}` or `{"signal": n}`.
pub(crate) fn wait_json(status: i32) -> serde_json::Value {
    if libc::WIFEXITED(status) {
        serde_json::json!({"code": libc::WEXITSTATUS(status)})
    } else if libc::WIFSIGNALED(status) {
        serde_json::json!({"signal": libc::WTERMSIG(status)})
    } else {
        serde_json::json!({"code": -1})
    }
}

fn report_line(fd: RawFd, kind: u8, text: &str) {
    let mut line = Vec::with_capacity(text.len() + 2);
    line.push(kind);
    line.extend_from_slice(text.replace('\n', " ").as_bytes());
    line.push(b'\n');
    let _ = sys::write_all(fd, &line);
}

fn reaper_fail(report_w: RawFd, msg: String) -> ! {
    report_line(report_w, b'E', &msg);
    sys::exit_now(1)
}

fn reaper(
    plan: &ChildPlan,
    exec: &ExecPlan,
    mut layers: LayerReport,
    report_w: RawFd,
    alive_r: RawFd,
    cs: OwnedFd,
) {
    let _ = sys::set_pdeathsig(libc::SIGKILL);
    // Container tier: without a PID namespace, orphans of the script must still come
    // back to R (not to the container's init), so R can end them with the script.
    if plan.tier == Tier::Container && sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).is_err() {
        reaper_fail(report_w, "PR_SET_CHILD_SUBREAPER failed".into());
    }
    // If C died before PDEATHSIG was armed, its end of the alive pipe is closed.
    let mut pfd = libc::pollfd {
        fd: alive_r,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
        sys::exit_now(1);
    }

    // 2. Per-execution mounts: fresh /proc for the new PID namespace, capped scratch.
    // Each is attempted on its own. A failure refuses the execution unless the
    // operator allowed fs_view to be missing; even then the outer /proc (the
    // zygote's view of the host) is never left visible: it is covered with an
    // empty read-only tmpfs, or the execution is refused.
    let mut fs_view_ok = true;
    if layers.mount_ns {
        let none = libc::MS_NOSUID | libc::MS_NODEV;
        let mut degrade = |what: String, layers: &mut LayerReport| {
            if !allowed(plan, Layer::FsView) {
                reaper_fail(report_w, format!("fs_view: {what}"));
            }
            fs_view_ok = false;
            layers.notes.push(format!("fs_view: {what}"));
        };
        if let Err(e) = sys::mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        ) {
            degrade(format!("make / private: {e}"), &mut layers);
        }
        if layers.pid_ns {
            if let Err(e) = sys::mount(
                Some(Path::new("proc")),
                Path::new("/proc"),
                Some("proc"),
                none | libc::MS_NOEXEC,
                None,
            ) {
                if let Err(e2) = sys::mount(
                    Some(Path::new("tmpfs")),
                    Path::new("/proc"),
                    Some("tmpfs"),
                    none | libc::MS_NOEXEC | libc::MS_RDONLY,
                    Some("size=4k,mode=555"),
                ) {
                    reaper_fail(
                        report_w,
                        format!(
                            "fs_view: mount /proc: {e}; hiding the outer /proc failed too: {e2}"
                        ),
                    );
                }
                degrade(
                    format!("mount /proc: {e} (an empty /proc is shown instead)"),
                    &mut layers,
                );
            }
        }
        let inodes = (plan.limits.scratch_bytes / 4096).clamp(256, 1 << 20);
        let opts = format!(
            "size={},nr_inodes={inodes},mode=1777",
            plan.limits.scratch_bytes
        );
        for (dir, extra) in [("/tmp", 0), ("/dev/shm", libc::MS_NOEXEC)] {
            if let Err(e) = sys::mount(
                Some(Path::new("tmpfs")),
                Path::new(dir),
                Some("tmpfs"),
                none | extra,
                Some(&opts),
            ) {
                degrade(format!("mount {dir}: {e}"), &mut layers);
            }
        }
    }

    // Freeze requests that arrive before R's handlers exist wait for them.
    sys::block_freeze_signals(true);
    // SAFETY: single-threaded process.
    let pid = match unsafe { sys::fork() } {
        Ok(p) => p,
        Err(e) => reaper_fail(report_w, format!("fork: {e}")),
    };
    if pid == 0 {
        sys::block_freeze_signals(false);
        sys::close(alive_r);
        // S: the only process that returns (up to `airlock_isolate`, then into Python).
        script_process(plan, exec, layers, fs_view_ok, report_w, cs);
        return;
    }
    // The supervisor ends S's process group by this pid if R does not get to it.
    report_line(report_w, b'P', &pid.to_string());
    // R: while the script waits in `llm.complete`, the server asks R to stop every
    // process of the execution (and to let them go on once the answer is there), so no
    // thread runs while the wall clock is paused (see `sys::FREEZE_SIGNAL`). With a PID namespace that is all of
    // it but R; without one, S's process group (S is a session leader).
    let target = if layers.pid_ns { -1 } else { -pid };
    if let Err(e) = sys::install_freeze_handler(target) {
        // Without the handlers a pause would let the script run unbounded: end it.
        report_line(report_w, b'E', &format!("freeze handlers: {e}"));
        // SAFETY: pid is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        sys::exit_now(125);
    }
    sys::block_freeze_signals(false);
    // R: nothing of R is interesting to the script; make /proc/1 unreadable to it.
    drop(cs);
    let _ = sys::set_dumpable(false);
    sys::close_all_except(&[report_w]);
    if let Some(dir) = &exec.scratch {
        container_reap(plan, dir, pid, report_w);
    }
    loop {
        match sys::waitpid(-1, 0) {
            Ok((p, st)) if p == pid => {
                report_line(report_w, b'S', &st.to_string());
                sys::exit_now(0);
            }
            Ok(_) => {}
            Err(_) => sys::exit_now(0),
        }
    }
}

fn script_fail(report_w: RawFd, msg: String) -> ! {
    report_line(report_w, b'E', &msg);
    sys::exit_now(125)
}

/// S: stdio, rlimits, Landlock, no_new_privs, capabilities, seccomp, in that order.
fn script_process(
    plan: &ChildPlan,
    exec: &ExecPlan,
    mut layers: LayerReport,
    fs_view_ok: bool,
    report_w: RawFd,
    cs: OwnedFd,
) {
    let _ = sys::set_pdeathsig(libc::SIGKILL);
    // SAFETY: setsid has no memory effects; a new session detaches from any terminal.
    unsafe { libc::setsid() };
    if plan.tier == Tier::Container {
        // The container tier's zygote is not dumpable (see the helper); the script may
        // read its own /proc/self like in the full tier. Nothing outside its Landlock
        // domain can be reached from it, and nothing in the domain is more than it.
        let _ = sys::set_dumpable(true);
    }

    // Fixed fds: 0/1/2 = /dev/null (1/2 become the output pipes once the job arrives),
    // 3 = control socket (later), 4 = report pipe, 5 = socket the job arrives on.
    // SAFETY: the path is a NUL-terminated literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        script_fail(report_w, "open /dev/null failed".into());
    }
    let (report_fd, job_fd) = (REPORT_FD, JOB_FD);
    // Move every kept fd above the fixed range first so dup2 never clobbers one.
    let hi = |fd: RawFd| -> RawFd {
        // SAFETY: F_DUPFD_CLOEXEC returns a new fd >= 100 or -1.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
        if n < 0 {
            script_fail(report_w, "fcntl(F_DUPFD) failed".into());
        }
        n
    };
    let (n, r, j) = (hi(null), hi(report_w), hi(cs.as_raw_fd()));
    drop(cs);
    // fd 3 holds /dev/null until the job arrives, so received fds never land on 0-5.
    for (from, to) in [
        (n, 0),
        (n, 1),
        (n, 2),
        (n, PROTO_FD),
        (r, report_fd),
        (j, job_fd),
    ] {
        if sys::dup2(from, to).is_err() {
            script_fail(r, "dup2 failed".into());
        }
    }
    // Neither internal fd may survive an exec (cold mode).
    for fd in [report_fd, job_fd] {
        // SAFETY: fcntl with integer arguments.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    sys::close_all_except(&[PROTO_FD, report_fd, job_fd]);
    let report_w = report_fd;

    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0o077) };
    // The working directory: /tmp (the execution's own tmpfs), or in the container
    // tier the execution's scratch directory (the worker points HOME and TMPDIR at it).
    let cwd = exec
        .scratch
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("/tmp"));
    if std::env::set_current_dir(&cwd).is_err() && exec.scratch.is_some() {
        script_fail(report_w, "cannot enter the scratch directory".into());
    }

    // Under a cgroup memory limit the OOM killer should pick the script, not the zygote.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");

    // 3. Resource limits.
    let l = &plan.limits;
    let limits: [(libc::__rlimit_resource_t, u64, u64); 9] = [
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_AS, l.memory_bytes, l.memory_bytes),
        (libc::RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1),
        (libc::RLIMIT_NPROC, l.max_processes, l.max_processes),
        (libc::RLIMIT_NOFILE, l.max_open_files, l.max_open_files),
        (libc::RLIMIT_FSIZE, l.max_file_bytes, l.max_file_bytes),
        (libc::RLIMIT_MEMLOCK, 64 * 1024, 64 * 1024),
        (libc::RLIMIT_MSGQUEUE, 0, 0),
        (libc::RLIMIT_RTPRIO, 0, 0),
    ];
    let mut rl_ok = true;
    for (res, soft, hard) in limits {
        if let Err(err) = sys::setrlimit(res, soft, hard) {
            rl_ok = false;
            if !allowed(plan, Layer::Rlimits) {
                script_fail(report_w, format!("rlimits: setrlimit({res}) failed: {err}"));
            }
        }
    }
    layers.rlimits = rl_ok;

    // 4. no_new_privs (needed by Landlock and seccomp without CAP_SYS_ADMIN).
    layers.no_new_privs = sys::set_no_new_privs().is_ok() && sys::no_new_privs_set();
    if !layers.no_new_privs && !allowed(plan, Layer::NoNewPrivs) {
        script_fail(report_w, "no_new_privs: prctl failed".into());
    }

    // 5. Landlock.
    layers.landlock_abi = plan.landlock_abi;
    // The proxy port is the one TCP connect allowed, and only inside a private network
    // namespace (where 127.0.0.1 is the execution's own loopback, up only with egress).
    // In the container tier it is the spare's own port on the shared loopback (Landlock
    // rules name ports, not addresses; see docs/security.md).
    // In the full tier the ports are known only with the job (its TCP destinations):
    // connect is restricted then, by a second ruleset, before the script starts.
    let connect = match plan.tier {
        Tier::Full => crate::landlock_rules::Connect::AtJob,
        Tier::Container => crate::landlock_rules::Connect::Only(exec.proxy_port),
    };
    let mut paths = plan.landlock.clone();
    if let Some(dir) = &exec.scratch {
        paths.read_write.push(dir.clone());
        // Made here, so it names this process's own /proc directory.
        paths.read.push("/proc/self".into());
    }
    match crate::landlock_rules::apply(&paths, plan.landlock_abi, connect) {
        Ok(out) => {
            layers.landlock = out.fs;
            layers.landlock_net = out.net;
            layers.landlock_scope = out.scope;
        }
        Err(err) => {
            if !allowed(plan, Layer::Landlock) {
                script_fail(report_w, format!("landlock: {err}"));
            }
        }
    }
    // Connect rules still to come (`await_job`) count as on here; that call fails the
    // execution if they cannot be applied.
    let net_at_job = connect_at_job(plan, &layers);
    for (on, layer) in [
        (layers.landlock, Layer::Landlock),
        (layers.landlock_net || net_at_job, Layer::LandlockNet),
        (layers.landlock_scope, Layer::LandlockScope),
    ] {
        if !on && !allowed(plan, layer) {
            script_fail(
                report_w,
                format!(
                    "{layer}: not supported by this kernel (Landlock ABI {})",
                    plan.landlock_abi
                ),
            );
        }
    }

    // 6. Capabilities (full set inside our user namespace until now).
    layers.cap_drop = match sys::drop_all_caps() {
        Ok(()) => true,
        Err(err) => {
            if !allowed(plan, Layer::CapDrop) {
                script_fail(report_w, format!("cap_drop: {err}"));
            }
            false
        }
    };

    // 7. seccomp, last: it forbids mount/unshare/... which nothing after this needs.
    layers.seccomp = match crate::seccomp::install(&plan.seccomp) {
        Ok(()) => true,
        Err(err) => {
            if !allowed(plan, Layer::Seccomp) {
                script_fail(report_w, format!("seccomp: {err}"));
            }
            false
        }
    };
    layers.fs_view = plan.fs_view && fs_view_ok;

    // Fully isolated; the job comes later, in `await_job`.
    *ISOLATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(layers);
}

/// Whether S restricts TCP connect only once the job is there ([`await_job`]): in the
/// full tier, when the spare-time ruleset (which then handled bind only) is on and
/// the kernel has network rules.
fn connect_at_job(plan: &ChildPlan, layers: &LayerReport) -> bool {
    plan.tier == Tier::Full && layers.landlock && plan.landlock_abi >= 4
}

/// S, once isolated: waits for the job (control socket, stdout, stderr), restricts TCP
/// connect to the ports its supervisor names (full tier), puts its fds in place and
/// reports the layers.
pub(crate) fn await_job() {
    let Some(mut layers) = ISOLATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        // Not an isolated script process (or called twice): never run a job here.
        sys::exit_now(118);
    };
    let (msg, fds) = match sys::recv_with_fds(JOB_FD, 4096, nix::sys::socket::MsgFlags::empty()) {
        Ok(Some((msg, fds))) if fds.len() == 3 => (msg, fds),
        _ => sys::exit_now(0),
    };
    sys::close(JOB_FD);
    // From the supervisor: `{"connect":[ports]}`; from the server (a job without
    // egress): `job`, and no port at all.
    #[derive(Deserialize, Default)]
    struct FromSupervisor {
        #[serde(default)]
        connect: Vec<u16>,
    }
    let ports = serde_json::from_slice::<FromSupervisor>(&msg)
        .unwrap_or_default()
        .connect;
    if let Some(plan) = PLAN.get().filter(|p| connect_at_job(p, &layers)) {
        match crate::landlock_rules::restrict_connect(plan.landlock_abi, &ports) {
            Ok(on) => layers.landlock_net = on,
            Err(e) if allowed(plan, Layer::LandlockNet) => {
                layers.notes.push(format!("landlock_net: {e}"));
            }
            Err(e) => script_fail(REPORT_FD, format!("landlock_net: {e}")),
        }
    }
    for (fd, to) in fds.iter().zip([PROTO_FD, 1, 2]) {
        if sys::dup2(fd.as_raw_fd(), to).is_err() {
            script_fail(REPORT_FD, "dup2 of job fds failed".into());
        }
    }
    drop(fds);
    report_line(
        REPORT_FD,
        b'L',
        &serde_json::to_string(&layers).unwrap_or_default(),
    );
    sys::close(REPORT_FD);
}

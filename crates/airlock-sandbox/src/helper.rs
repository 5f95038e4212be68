//! The slot helper: the server's own binary re-executed with [`HELPER_ARG`].
//!
//! The server is a multi-threaded tokio process, where forking and then allocating is
//! unsafe, so every slot is launched through this small single-threaded program. It
//! drops to the slot's unprivileged uid, arms the parent-death signal, sets
//! no_new_privs, enters fresh user/mount/net/IPC/UTS namespaces, builds a minimal
//! read-only root (system paths, a few /etc files, a venv) and pivots into it, clears
//! the environment, and then becomes the zygote: it loads libpython and runs the
//! zygote loop (warm mode), or forks and execs a fresh interpreter per job (cold mode).
#![allow(unsafe_code)] // fork/exec of the zygote before any thread exists; every block has a SAFETY note

use crate::config::{Layer, LayerReport, Tier};
use crate::isolate::{ChildPlan, PLAN};
use crate::plan::{HelperConfig, ViewEntry};
use crate::sys;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The argument that makes a binary run [`helper_main`].
pub const HELPER_ARG: &str = "--airlock-sandbox-helper";

/// The environment every execution starts with (job env is added on top).
pub const BASE_ENV: &[(&str, &str)] = &[
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONHASHSEED", "0"),
    ("TZ", "UTC"),
];

pub(crate) const WORKER_SRC: &str = include_str!("../../../python/airlock/_worker.py");
pub(crate) const SDK_SRC: &str = include_str!("../../../python/airlock/__init__.py");

/// True when this process was started as a sandbox helper (first argument is
/// [`HELPER_ARG`]). Call before starting any runtime or thread.
pub fn is_helper_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == HELPER_ARG)
}

/// Runs the slot helper. Never returns. Must be called before any thread is started.
pub fn helper_main() -> ! {
    let ctrl = match take_control_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("airlock-sandbox-helper: {e}");
            sys::exit_now(2)
        }
    };
    let code = match run(ctrl) {
        Ok(code) => code,
        Err(e) => {
            let msg = serde_json::json!({"type": "fatal", "error": e});
            let _ = sys::send_with_fds(ctrl, msg.to_string().as_bytes(), &[]);
            eprintln!("airlock-sandbox-helper: {e}");
            1
        }
    };
    sys::exit_now(code)
}

/// The control socket arrives as stdin; move it to a high fd and put /dev/null on 0.
fn take_control_fd() -> Result<RawFd, String> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates fd 0 to a new fd >= 10.
    let ctrl = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 10) };
    if ctrl < 0 {
        return Err("no control socket on stdin".into());
    }
    // SAFETY: NUL-terminated literal path.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null >= 0 {
        let _ = sys::dup2(null, 0);
        let _ = sys::dup2(null, 1);
        if null > 2 {
            sys::close(null);
        }
    }
    Ok(ctrl)
}

fn run(ctrl: RawFd) -> Result<i32, String> {
    let (msg, _) = sys::recv_with_fds(ctrl, 4 << 20, nix::sys::socket::MsgFlags::empty())
        .map_err(|e| format!("reading config: {e}"))?
        .ok_or("control socket closed before config")?;
    let cfg: HelperConfig = serde_json::from_slice(&msg).map_err(|e| format!("bad config: {e}"))?;
    let allow: BTreeSet<Layer> = cfg.allow_missing.iter().copied().collect();
    let mut report = LayerReport {
        tier: cfg.tier,
        mode: if cfg.cold {
            "cold".into()
        } else {
            "warm".into()
        },
        ..Default::default()
    };

    // 1. Unprivileged per-slot uid (only possible as root). In the container tier the
    // script process has no user namespace in which to drop its capability bounding
    // set later (that needs CAP_SETPCAP), so the helper empties it now, while root.
    if cfg.tier == Tier::Container && sys::geteuid() == 0 && cfg.drop_uid {
        sys::drop_bounding_set().map_err(|e| format!("cap_drop: bounding set: {e}"))?;
    }
    if sys::geteuid() == 0 && cfg.drop_uid {
        sys::drop_to(cfg.uid, cfg.gid).map_err(|e| format!("uid_drop: {e}"))?;
        report.uid_drop = true;
    } else {
        report.notes.push(format!(
            "uid_drop: server is not root (uid {}); executions run as the server's uid",
            sys::geteuid()
        ));
        if !allow.contains(&Layer::UidDrop) {
            return Err("uid_drop: server is not root and uid_drop is not allowed missing".into());
        }
    }
    let (uid, gid) = (sys::geteuid(), sys::getegid());
    // After a uid change the kernel clears "dumpable"; /proc/self/uid_map needs it.
    sys::set_dumpable(true).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    // Armed after the uid change (which clears it), then checked against a race.
    sys::set_pdeathsig(libc::SIGKILL).map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if sys::getppid() != cfg.server_pid {
        return Err("server exited during start-up".into());
    }
    sys::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;

    // 2. Slot namespaces and the read-only root (full tier only).
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    let mut fs_view = false;
    let slot_ns = match cfg.tier {
        Tier::Full => Some(sys::unshare(flags)),
        Tier::Container => {
            // Nothing of this slot may be read through /proc by anyone but root: the
            // zygote and every process forked from it are not dumpable (their /proc
            // entries belong to root), and a script cannot change that (no
            // capabilities, and Landlock keeps it out of other processes' /proc).
            sys::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
            None
        }
    };
    match slot_ns {
        None => {}
        Some(r) => match r {
            Ok(()) => {
                sys::map_self(uid, gid).map_err(|e| format!("user_ns: uid map: {e}"))?;
                let _ = sys::sethostname("airlock");
                match build_root(&cfg.view) {
                    Ok(()) => fs_view = true,
                    Err(e) if allow.contains(&Layer::FsView) => {
                        report.notes.push(format!("fs_view: {e}"))
                    }
                    Err(e) => return Err(format!("fs_view: {e}")),
                }
            }
            Err(e) => {
                report
                    .notes
                    .push(format!("slot namespaces unavailable: {e}"));
                if !allow.contains(&Layer::UserNs) || !allow.contains(&Layer::FsView) {
                    return Err(format!("user_ns: unshare failed: {e}"));
                }
            }
        },
    }
    report.fs_view = fs_view;
    report.landlock_abi = sys::landlock_abi();

    // 3. Environment: exactly BASE_ENV.
    // SAFETY: single-threaded process; clearenv then setenv cannot race with readers.
    unsafe { libc::clearenv() };
    for (k, v) in BASE_ENV {
        std::env::set_var(k, v);
    }

    // 4. The per-execution plan, inherited by every fork.
    let _ = PLAN.set(ChildPlan {
        uid,
        gid,
        limits: cfg.limits.clone(),
        landlock: cfg.landlock.clone(),
        landlock_abi: report.landlock_abi,
        seccomp: crate::seccomp::filters(cfg.tier)
            .map_err(|e| format!("seccomp filters do not build: {e}"))?,
        allow_missing: allow,
        fs_view,
        tier: cfg.tier,
        scratch: cfg.scratch.clone(),
    });

    let hello = serde_json::json!({"type": "hello", "layers": report, "pid": sys::getpid()});
    sys::send_with_fds(ctrl, hello.to_string().as_bytes(), &[])
        .map_err(|e| format!("hello: {e}"))?;

    let paths = serde_json::to_string(&cfg.python_paths).unwrap_or_else(|_| "[]".into());
    let preimport = serde_json::to_string(&cfg.preimport).unwrap_or_else(|_| "[]".into());
    if cfg.cold {
        cold_loop(ctrl, &cfg, &paths)
    } else {
        let lib = cfg
            .python
            .libpython
            .clone()
            .ok_or("warm mode needs libpython")?;
        let addr = (crate::isolate::airlock_isolate as *const () as usize).to_string();
        let await_addr = (crate::isolate::airlock_await_job as *const () as usize).to_string();
        let argv = [
            cfg.python.executable.to_string_lossy().as_ref(),
            "-s",
            "-S",
            "-c",
            WORKER_SRC,
            "zygote",
            &ctrl.to_string(),
            &addr,
            &await_addr,
            SDK_SRC,
            &paths,
            &preimport,
            cfg.tier.name(),
        ]
        .iter()
        .map(|s| CString::new(*s).map_err(|_| "NUL in argument".to_string()))
        .collect::<Result<Vec<_>, _>>()?;
        crate::embed::run_python(&lib, &argv)
    }
}

/// Cold mode: the helper itself forks per job; the script process execs a fresh
/// interpreter after every layer is applied.
fn cold_loop(ctrl: RawFd, cfg: &HelperConfig, paths: &str) -> Result<i32, String> {
    let argv: Vec<CString> = [
        cfg.python.executable.to_string_lossy().as_ref(),
        "-s",
        "-S",
        "-c",
        WORKER_SRC,
        "run",
        SDK_SRC,
        paths,
    ]
    .iter()
    .map(|s| CString::new(*s).map_err(|_| "NUL in argument".to_string()))
    .collect::<Result<_, _>>()?;
    // Forks the next execution ahead of time; it isolates itself, waits for its job,
    // then execs the interpreter.
    // Returns our end of the supervisor's socket (at EOF once it has its job, or died) and the server's
    // end of the script process's job socket.
    let make_spare = || -> Result<(OwnedFd, OwnedFd, Option<u16>), String> {
        let (ours, theirs) = sys::socketpair(true).map_err(|e| e.to_string())?;
        let (job_srv, job_s) = sys::socketpair(true).map_err(|e| e.to_string())?;
        // Container tier: the spare's proxy listener, made before the fork so the port
        // is known to the script process's Landlock rules and announced with the spare.
        let listener = match cfg.tier {
            Tier::Full => None,
            Tier::Container => {
                let fd = sys::tcp_listen(std::net::Ipv4Addr::LOCALHOST, 0, 128)
                    .map_err(|e| format!("proxy listener on 127.0.0.1: {e}"))?;
                let port = sys::local_port(fd.as_raw_fd())
                    .map_err(|e| format!("proxy listener port: {e}"))?;
                Some((fd, port))
            }
        };
        let req = serde_json::json!({
            "spare": theirs.as_raw_fd(), "zygote_pid": sys::getpid(),
            "job_srv": job_srv.as_raw_fd(), "job_s": job_s.as_raw_fd(),
            "proxy_fd": listener.as_ref().map(|(fd, _)| fd.as_raw_fd()),
            "proxy_port": listener.as_ref().map(|(_, p)| *p),
        })
        .to_string();
        // SAFETY: the helper is single-threaded.
        let pid = unsafe { sys::fork() }.map_err(|e| format!("fork: {e}"))?;
        if pid == 0 {
            crate::isolate::isolate(req.as_bytes());
            crate::isolate::await_job();
            // Script process: every layer is on and the job's fds are in place;
            // become the interpreter.
            let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // SAFETY: NULL-terminated argv of NUL-terminated strings; environ is ours.
            unsafe { libc::execv(argv[0].as_ptr(), ptrs.as_ptr()) };
            let _ = sys::write_all(2, b"airlock: exec of the interpreter failed\n");
            sys::exit_now(127);
        }
        Ok((ours, job_srv, listener.map(|(_, p)| p)))
    };
    // Hands the server the spare's socket: the job's fds go there, not through us.
    let announce =
        |(spare, job_srv, port): (OwnedFd, OwnedFd, Option<u16>)| -> Result<OwnedFd, String> {
            let msg = serde_json::json!({"type": "spare", "port": port}).to_string();
            sys::send_with_fds(
                ctrl,
                msg.as_bytes(),
                &[spare.as_raw_fd(), job_srv.as_raw_fd()],
            )
            .map_err(|e| format!("announcing a spare: {e}"))?;
            Ok(spare)
        };
    let first = make_spare()?;
    let ready = serde_json::json!({"type": "ready"});
    sys::send_with_fds(ctrl, ready.to_string().as_bytes(), &[]).map_err(|e| e.to_string())?;
    let mut spare = Some(announce(first)?);
    // Spares the server asked for and not yet forked (see `SpareGate`).
    let mut asked = 0u32;
    loop {
        while let Ok((p, _)) = sys::waitpid(-1, libc::WNOHANG) {
            if p <= 0 {
                break;
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: ctrl,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: spare.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd (a negative fd is ignored).
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            // The spare's supervisor has its job (it closed the socket), or it died.
            spare = None;
        }
        if fds[0].revents != 0 {
            match sys::recv_with_fds(ctrl, 64 * 1024, nix::sys::socket::MsgFlags::empty()) {
                // Received fds (the server sends none) close on drop.
                Ok(Some((msg, _))) => {
                    if msg == br#"{"type":"prepare"}"# {
                        asked += 1;
                    }
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(e.to_string()),
            }
        }
        if spare.is_none() && asked > 0 {
            asked -= 1;
            spare = Some(announce(make_spare()?)?);
        }
    }
}

/// Where the new root is assembled: an existing directory that is not an ancestor of
/// (or equal to) any path we must bind, since mounting over it hides what is below.
fn pick_stage(view: &[ViewEntry]) -> Option<PathBuf> {
    let sources: Vec<&Path> = view
        .iter()
        .filter_map(|e| match e {
            ViewEntry::Bind { src, .. } => Some(src.as_path()),
            ViewEntry::BindRw { src } => Some(src.as_path()),
            ViewEntry::Hidden { src, .. } => Some(src.as_path()),
            ViewEntry::Device { src } => Some(src.as_path()),
            _ => None,
        })
        .collect();
    [
        "/mnt", "/media", "/srv", "/run", "/var/tmp", "/tmp", "/opt", "/home",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|c| c.is_dir() && !sources.iter().any(|s| s.starts_with(c)))
}

fn inside(stage: &Path, p: &Path) -> PathBuf {
    stage.join(p.strip_prefix("/").unwrap_or(p))
}

fn ensure_parent(p: &Path) -> Result<(), String> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// Builds the minimal root on a tmpfs and pivots into it.
fn build_root(view: &[ViewEntry]) -> Result<(), String> {
    let stage = pick_stage(view).ok_or("no staging directory available")?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| format!("make / private: {e}"))?;
    sys::mount(
        Some(Path::new("tmpfs")),
        &stage,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("size=16m,nr_inodes=4096,mode=0755"),
    )
    .map_err(|e| format!("mount staging tmpfs: {e}"))?;
    let ro = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    let mut hidden = 0;
    for entry in view {
        match entry {
            ViewEntry::Dir { path } => {
                let d = inside(&stage, path);
                std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
            }
            ViewEntry::Bind { src, dst, dir } => {
                let d = inside(&stage, dst);
                ensure_parent(&d)?;
                if *dir {
                    std::fs::create_dir_all(&d)
                        .map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                } else {
                    std::fs::write(&d, b"").map_err(|e| format!("create {}: {e}", d.display()))?;
                }
                sys::mount(Some(src), &d, None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(|e| format!("bind {}: {e}", src.display()))?;
                sys::mount_setattr(&d, ro, true)
                    .map_err(|e| format!("read-only {}: {e}", dst.display()))?;
            }
            ViewEntry::Hidden { src, dst } => {
                // Bind the host directory at a staging path, lay a read-only overlay
                // (that directory over an empty one) at `dst`, then detach the bind:
                // the overlay keeps its own reference, and mountinfo names only the
                // staging path in the overlay's options.
                hidden += 1;
                let d = inside(&stage, dst);
                std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                let lower = stage.join(format!(".lower{hidden}"));
                let empty = stage.join(".empty");
                for dir in [&lower, &empty] {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
                }
                sys::mount(Some(src), &lower, None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(|e| format!("bind {}: {e}", dst.display()))?;
                let opts = format!("lowerdir={}:{}", lower.display(), empty.display());
                let overlay = sys::mount(
                    Some(Path::new("overlay")),
                    &d,
                    Some("overlay"),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&opts),
                );
                if let Err(e) = overlay {
                    // No unprivileged overlayfs here (kernel < 5.11, or refused): a
                    // plain read-only bind, whose mountinfo root names the host path,
                    // is still far better than no filesystem view.
                    eprintln!(
                        "airlock-sandbox-helper: overlay for {} failed ({e}); binding it instead",
                        dst.display()
                    );
                    sys::mount(Some(src), &d, None, libc::MS_BIND | libc::MS_REC, None)
                        .map_err(|e| format!("bind {}: {e}", src.display()))?;
                    sys::mount_setattr(&d, ro, true)
                        .map_err(|e| format!("read-only {}: {e}", dst.display()))?;
                }
                sys::umount2(&lower, libc::MNT_DETACH)
                    .map_err(|e| format!("detach the staging bind of {}: {e}", dst.display()))?;
            }
            ViewEntry::BindRw { src } => {
                let d = inside(&stage, src);
                std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
                sys::mount(Some(src), &d, None, libc::MS_BIND, None)
                    .map_err(|e| format!("bind {}: {e}", src.display()))?;
                sys::mount_setattr(&d, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV, false)
                    .map_err(|e| format!("nosuid {}: {e}", src.display()))?;
            }
            ViewEntry::Device { src } => {
                let d = inside(&stage, src);
                ensure_parent(&d)?;
                std::fs::write(&d, b"").map_err(|e| format!("create {}: {e}", d.display()))?;
                sys::mount(Some(src), &d, None, libc::MS_BIND, None)
                    .map_err(|e| format!("bind {}: {e}", src.display()))?;
                sys::mount_setattr(&d, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC, false)
                    .map_err(|e| format!("nosuid {}: {e}", src.display()))?;
            }
            ViewEntry::Symlink { target, dst } => {
                let d = inside(&stage, dst);
                ensure_parent(&d)?;
                std::os::unix::fs::symlink(target, &d)
                    .map_err(|e| format!("symlink {}: {e}", d.display()))?;
            }
            ViewEntry::File { dst, contents } => {
                let d = inside(&stage, dst);
                ensure_parent(&d)?;
                std::fs::write(&d, contents).map_err(|e| format!("write {}: {e}", d.display()))?;
                let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o644));
            }
        }
    }
    // A fully visible procfs must stay in this mount namespace, or the kernel refuses
    // the fresh /proc each execution mounts for its own PID namespace. The helper cannot
    // mount a new one (its PID namespace belongs to the host), so it binds the host's;
    // only the zygote (trusted code, unprivileged uid) ever sees it: every execution
    // mounts its own /proc on top.
    let proc_dir = inside(&stage, Path::new("/proc"));
    std::fs::create_dir_all(&proc_dir).map_err(|e| format!("mkdir proc: {e}"))?;
    sys::mount(
        Some(Path::new("/proc")),
        &proc_dir,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| format!("bind /proc: {e}"))?;
    sys::mount_setattr(&stage, sys::MOUNT_ATTR_RDONLY, false)
        .map_err(|e| format!("read-only root: {e}"))?;

    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves
    // nothing of the host's tree reachable.
    std::env::set_current_dir(&stage).map_err(|e| format!("chdir stage: {e}"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(|e| format!("pivot_root: {e}"))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH).map_err(|e| format!("detach old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

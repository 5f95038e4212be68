//! The server-side pool: slots, their helpers, and job dispatch.
//!
//! Each slot is an identity of its own (an unprivileged uid, a cgroup, a scratch
//! directory) and, while it is warm, one helper process (a zygote) running as that
//! uid. `start` launches the warm slots' zygotes and runs a probe execution through
//! each, so the layer report comes from real executions, and refuses to start (fail
//! closed) when a layer is missing that the operator did not allow. `run` waits for a
//! free slot (a warm one first), starts its zygote if it has none or it died, hands the
//! job's file descriptors to the spare the zygote announced and spawns the driver.
//!
//! An execution holds its slot until its process tree is gone, but it needs the
//! zygote only until its job is handed over: a parked execution (one that waits a long
//! time, see [`Execution::park`]) lets its zygote go, so many slots may hold paused
//! executions while only the warm ones hold interpreters.

use crate::cgroup::SlotCgroup;
use crate::config::{Layer, LayerReport, SandboxConfig, Tier};
use crate::execution::{drive, DriverIo, Event, Execution, JobSpec, OutcomeStatus, PendingProxy};
use crate::plan::{self, HelperConfig, PythonInfo};
use crate::{sys, Error, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, Mutex, Semaphore};

/// One job to run.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub script: String,
    /// The profile's settings (`settings.get`), and nothing else.
    pub settings: BTreeMap<String, String>,
    /// Wall-clock budget; paused while waiting for LLM answers.
    pub timeout: Duration,
    /// Extra environment variables, added to the base environment.
    pub env: BTreeMap<String, String>,
    /// Egress through the server's proxy: the execution's loopback comes up with a
    /// listener on 127.0.0.1:[`PROXY_PORT`] handed to the server
    /// ([`Execution::take_proxy`]) and the proxy variables ([`proxy_env`]) are set. Without
    /// it the execution has no network at all (its namespace's `lo` stays down).
    pub network: bool,
    /// Raw TCP destinations (with [`Job::network`], full tier): each gets a listener of
    /// its own in the execution's network namespace, at the loopback address its name
    /// has in the execution's /etc/hosts (or at the loopback address given), handed to
    /// the server with the proxy's ([`crate::EgressListeners::tcp`], same order). The
    /// script connects to `host:port` as if it were the destination itself.
    pub tcp: Vec<TcpForward>,
    /// Directories appended to `sys.path` for this job only, as the sandbox sees them.
    /// They must be visible in the sandbox already (under a
    /// [`SandboxConfig::readonly_paths`] or [`SandboxConfig::mounts`] entry).
    pub python_paths: Vec<PathBuf>,
}

/// One raw TCP destination of a [`Job`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TcpForward {
    /// A host name (given an address of its own in the execution's /etc/hosts) or an
    /// IPv4 loopback address (listened on as it is).
    pub host: String,
    pub port: u16,
}

/// The port of the egress proxy on each execution's own loopback (Squid's customary
/// port). The only TCP port a script may connect to (Landlock).
pub const PROXY_PORT: u16 = 3128;

/// The variables that point HTTP clients (urllib, requests, httpx, pip, curl) at the
/// egress proxy on `port` ([`PROXY_PORT`] in the full tier, the spare's own port in the
/// container tier); set for jobs with [`Job::network`], overriding the job's own `env`.
pub fn proxy_env(port: u16) -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{port}");
    let mut out = Vec::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        out.push((name, url.clone()));
    }
    for name in ["http_proxy", "https_proxy", "all_proxy"] {
        out.push((name, url.clone()));
    }
    out.push(("NO_PROXY", String::new()));
    out.push(("no_proxy", String::new()));
    out
}

/// An async SOCK_SEQPACKET socket (tokio has no native type for it).
pub(crate) struct SeqPacket(AsyncFd<OwnedFd>);

impl SeqPacket {
    #[allow(unsafe_code)] // AsyncFd::register on an fd this value owns
    pub(crate) fn new(fd: OwnedFd) -> std::io::Result<Self> {
        sys::set_nonblocking(fd.as_raw_fd(), true)?;
        // SAFETY: an OwnedFd is a valid open fd that stays open and unchanged until the
        // AsyncFd (which owns it) is dropped.
        let afd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(SeqPacket(afd))
    }

    pub(crate) async fn recv(&mut self) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| {
                sys::recv_with_fds(
                    fd.as_raw_fd(),
                    1 << 20,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                )
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) async fn send(&self, data: &[u8], fds: &[i32]) -> std::io::Result<()> {
        loop {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| sys::send_with_fds(fd.as_raw_fd(), data, fds)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

struct SlotProc {
    child: tokio::process::Child,
    ctrl: SeqPacket,
    gate: Arc<SpareGate>,
    /// The [`WarmImports::generation`] it was started with.
    generation: u64,
}

/// When a slot's zygote may prepare its next spare.
///
/// A zygote forks its first spare at once and every later one only when the server
/// asks (`{"type":"prepare"}`) and the previous spare has taken its job (or died). The
/// server asks [`PREPARE_AFTER`] after the execution that took the previous spare is
/// dropped (its outcome stored and published), or as soon as a job needs the slot,
/// whichever comes first. A spare's preparation (three forks, two sets of namespaces,
/// mounts, an interpreter's rehearsal) takes a core for a few milliseconds; on two
/// cores, started while the outcome is still being stored and sent to the agent, it
/// delayed that answer by about a millisecond.
#[derive(Debug)]
pub(crate) struct SpareGate {
    state: std::sync::Mutex<GateState>,
    /// The zygote's control socket (a second descriptor of it).
    ctrl: OwnedFd,
}

#[derive(Debug)]
struct GateState {
    /// A spare is announced, or asked for, and no job has taken it yet.
    outstanding: bool,
    /// How many spares jobs have taken from this zygote.
    taken: u64,
}

/// How long an idle slot waits, after its execution is over, before preparing the
/// next spare: time for the outcome to reach the agent first.
const PREPARE_AFTER: Duration = Duration::from_millis(2);

impl SpareGate {
    fn new(ctrl: OwnedFd) -> Self {
        SpareGate {
            state: std::sync::Mutex::new(GateState {
                outstanding: true,
                taken: 0,
            }),
            ctrl,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the zygote for the next spare, unless one is already on its way.
    fn ask(&self) {
        self.ask_locked(&mut self.state());
    }

    fn ask_locked(&self, st: &mut GateState) {
        if st.outstanding {
            return;
        }
        // A zygote that cannot take the message is replaced by the next job.
        st.outstanding =
            sys::send_with_fds(self.ctrl.as_raw_fd(), br#"{"type":"prepare"}"#, &[]).is_ok();
    }

    /// A job took the announced spare; returns the spare's sequence number.
    fn take(&self) -> u64 {
        let mut st = self.state();
        st.outstanding = false;
        st.taken += 1;
        st.taken
    }

    /// The execution that took spare `seq` is over: ask for the next spare in
    /// [`PREPARE_AFTER`], unless a job has taken one since (checked and asked under
    /// one lock, so a job taking a spare in between is never followed by a second ask).
    pub(crate) fn release(self: Arc<Self>, seq: u64) {
        let ask = move || {
            let mut st = self.state();
            if st.taken == seq {
                self.ask_locked(&mut st);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(PREPARE_AFTER).await;
                    ask();
                });
            }
            Err(_) => ask(),
        }
    }
}

/// What warm zygotes add to `sys.path` and pre-import on top of the configuration;
/// changed at run time by [`Sandbox::set_warm_imports`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WarmImports {
    generation: u64,
    python_paths: Vec<PathBuf>,
    preimport: Vec<String>,
}

/// Container tier: the directory holding every slot's scratch directory, removed with
/// the sandbox.
struct ScratchRoot(PathBuf);

impl ScratchRoot {
    /// Makes `<base>/airlock-<tag>/slot-N` for every slot, each owned by the slot's uid
    /// (when the server is root) with mode 0700, below a root-owned 0711 directory.
    fn create(base: &Path, tag: &str, slots: usize, uid_base: u32, root: bool) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = base.join(tag);
        let fail = |e: std::io::Error, p: &Path| {
            Error::Startup(format!("scratch directory {}: {e}", p.display()))
        };
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .map_err(|e| fail(e, &dir))?;
        let out = ScratchRoot(dir);
        for idx in 0..slots {
            let d = out.slot(idx);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&d)
                .map_err(|e| fail(e, &d))?;
            if root {
                let uid = uid_base + idx as u32;
                std::os::unix::fs::chown(&d, Some(uid), Some(uid)).map_err(|e| fail(e, &d))?;
            }
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(e, &d))?;
        }
        Ok(out)
    }

    fn slot(&self, idx: usize) -> PathBuf {
        self.0.join(format!("slot-{idx}"))
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where container-tier scratch directories go by default: `/dev/shm` when it is a
/// tmpfs, else the system temporary directory.
fn default_scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let is_tmpfs = nix::sys::statfs::statfs(shm)
        .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if is_tmpfs {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

pub(crate) struct Inner {
    cgroups: Vec<Option<Arc<SlotCgroup>>>,
    cfg: SandboxConfig,
    template: HelperConfig,
    warm: std::sync::Mutex<WarmImports>,
    layers: std::sync::OnceLock<LayerReport>,
    pool: Arc<Pool>,
    shut: AtomicBool,
    /// Container tier only; last, so it goes after the slots' processes.
    scratch: Option<ScratchRoot>,
}

impl Inner {
    /// How a path (or a value naming one) under a mount's neutral `/airlock/...` path is
    /// seen by scripts: unchanged in the full tier; in the container tier, where there
    /// are no mounts, the host path it stands for.
    fn visible(&self, value: &str) -> String {
        if self.cfg.tier == Tier::Full {
            return value.to_string();
        }
        for m in &self.cfg.mounts {
            let inside = m.inside.to_string_lossy();
            if let Some(rest) = value.strip_prefix(inside.as_ref()) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("{}{rest}", m.host.display());
                }
            }
        }
        value.to_string()
    }

    /// The warm-import settings (plain data: a poisoned lock is used as is).
    fn warm(&self) -> std::sync::MutexGuard<'_, WarmImports> {
        self.warm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A pool of warm, isolated Python workers.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("layers", &self.inner.layers)
            .finish()
    }
}

/// The slots' zygotes, and which slots are free.
pub(crate) struct Pool {
    /// Each slot's zygote, while it has one.
    procs: Vec<Mutex<Option<SlotProc>>>,
    free: std::sync::Mutex<FreeSlots>,
    /// One permit per free slot.
    available: Semaphore,
    /// How many free slots keep their zygote; a slot freed beyond that retires it.
    warm_target: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.procs.len())
            .field("warm_target", &self.warm_target)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct FreeSlots {
    /// Free slots with a zygote, longest idle first (its next spare is the likeliest
    /// to be ready).
    warm: VecDeque<usize>,
    /// Free slots without one.
    cold: VecDeque<usize>,
}

impl Pool {
    fn free(&self) -> std::sync::MutexGuard<'_, FreeSlots> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a free slot and takes it: a warm one when there is one.
    async fn acquire(self: &Arc<Self>) -> Result<SlotGuard> {
        self.available
            .acquire()
            .await
            .map_err(|_| Error::ShutDown)?
            .forget();
        let mut f = self.free();
        let idx = f.warm.pop_front().or_else(|| f.cold.pop_front());
        drop(f);
        match idx {
            Some(idx) => Ok(SlotGuard {
                idx,
                pool: self.clone(),
            }),
            // A permit stands for a listed slot; without one, give the permit back.
            None => {
                self.available.add_permits(1);
                Err(Error::ShutDown)
            }
        }
    }

    /// Slot `idx` is free again. It keeps its zygote while fewer than
    /// [`Pool::warm_target`] free slots have one; otherwise the zygote is retired.
    fn release(&self, idx: usize) {
        {
            let mut f = self.free();
            let warm = match self.procs[idx].try_lock() {
                Ok(mut p) => {
                    if p.is_some() && f.warm.len() >= self.warm_target {
                        // Dropped: killed (`kill_on_drop`) and reaped by the runtime.
                        p.take();
                    }
                    p.is_some()
                }
                // Only the slot's holder locks it, and it has let go: not reached.
                Err(_) => true,
            };
            if warm {
                f.warm.push_back(idx);
            } else {
                f.cold.push_back(idx);
            }
        }
        self.available.add_permits(1);
    }

    /// Slot `idx` holds a parked execution: its zygote is retired (no other job may
    /// use it while the execution holds the slot; the slot gets a new one when a job
    /// next takes it).
    async fn retire_zygote(&self, idx: usize) {
        // Dropped: killed (`kill_on_drop`) and reaped by the runtime.
        self.procs[idx].lock().await.take();
    }
}

/// Slot `idx` holds a parked execution: its zygote is retired, and a free slot
/// without a zygote starts one in the background, in its place.
///
/// Only once the execution's supervisor has reported `started` (`pid` is set): it
/// clears its parent-death signal before that report, and a script can reach
/// `llm.complete` before its supervisor gets that far (without network the job's fds
/// reach the script straight from the server). Retired earlier, the zygote would take
/// the execution with it.
pub(crate) fn park_slot(inner: &Arc<Inner>, idx: usize, pid: Arc<AtomicI32>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let started = async {
            while pid.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        // A supervisor that never reports is killed by its driver; the zygote stays.
        if tokio::time::timeout(Duration::from_secs(10), started)
            .await
            .is_err()
        {
            return;
        }
        inner.pool.retire_zygote(idx).await;
        if inner.shut.load(Ordering::SeqCst) {
            return;
        }
        // A free slot without a zygote, taken so that no job waits for it meanwhile.
        let Ok(permit) = inner.pool.available.try_acquire() else {
            return;
        };
        let Some(idx) = inner.pool.free().cold.pop_front() else {
            return;
        };
        permit.forget();
        let guard = SlotGuard {
            idx,
            pool: inner.pool.clone(),
        };
        let mut slot = inner.pool.procs[idx].lock().await;
        if slot.is_none() {
            // A failure leaves the slot cold: the job that next takes it tries again,
            // and that job's error says why.
            if let Ok((p, _)) = spawn_slot(&inner, idx).await {
                *slot = Some(p);
            }
        }
        drop(slot);
        // Freed: listed as warm (the zygote is alive) unless enough free slots are.
        drop(guard);
    });
}

/// Returns the slot to the free list when dropped.
struct SlotGuard {
    idx: usize,
    pool: Arc<Pool>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.pool.release(self.idx);
    }
}

const PROBE_SCRIPT: &str = r#"
import os
fields = {}
for line in open("/proc/self/status"):
    k, _, v = line.partition(":")
    fields[k] = v.strip()
set_result({"nnp": fields.get("NoNewPrivs"), "seccomp": fields.get("Seccomp"),
            "capeff": fields.get("CapEff"), "uid": os.getuid(), "pid": os.getpid()})
"#;

const PYTHON_INFO: &str = r#"
import json, os, sys, sysconfig
libdir = sysconfig.get_config_var("LIBDIR") or ""
names = [sysconfig.get_config_var(n) for n in ("INSTSONAME", "LDLIBRARY")]
lib = None
if sysconfig.get_config_var("Py_ENABLE_SHARED"):
    for n in names:
        if n and n.endswith((".so", ".so.1.0")) or (n and ".so." in n):
            p = os.path.join(libdir, n)
            if os.path.exists(p):
                lib = os.path.realpath(p)
                break
print(json.dumps({"version": list(sys.version_info[:2]), "executable": os.path.realpath(sys.executable),
                  "prefixes": sorted({sys.base_prefix, sys.base_exec_prefix}), "libpython": lib}))
"#;

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == b"\x7fELF")
        .unwrap_or(false)
}

async fn python_info(python: &Path) -> Result<PythonInfo> {
    let real = std::fs::canonicalize(python)
        .map_err(|e| Error::Config(format!("python {}: {e}", python.display())))?;
    if !is_elf(&real) {
        return Err(Error::Config(format!(
            "python {} is not an ELF interpreter binary (a pyenv shim or script?); use a real path such as /usr/bin/python3.11",
            python.display()
        )));
    }
    let out = tokio::process::Command::new(&real)
        .args(["-s", "-S", "-c", PYTHON_INFO])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Config(format!("running {}: {e}", real.display())))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "{} failed: {}",
            real.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Config(format!("python info: {e}")))?;
    let version = v["version"]
        .as_array()
        .and_then(|a| Some((a.first()?.as_u64()? as u32, a.get(1)?.as_u64()? as u32)))
        .ok_or_else(|| Error::Config("python info: version".into()))?;
    if version < (3, 8) {
        return Err(Error::Config(format!(
            "python {}.{} is too old (need 3.8+)",
            version.0, version.1
        )));
    }
    Ok(PythonInfo {
        version,
        executable: PathBuf::from(v["executable"].as_str().unwrap_or_default()),
        prefixes: v["prefixes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(PathBuf::from))
                    .collect()
            })
            .unwrap_or_default(),
        libpython: v["libpython"].as_str().map(PathBuf::from),
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        for cg in self.cgroups.iter().flatten() {
            cg.remove_later();
        }
    }
}

impl Sandbox {
    /// Launches every slot and probes every layer with a real execution. Fails closed:
    /// returns [`Error::LayerMissing`] naming the first missing layer that is not in
    /// `cfg.allow_missing`.
    pub async fn start(cfg: SandboxConfig) -> Result<Sandbox> {
        if cfg.helper.is_empty() {
            return Err(Error::Config("helper command is empty".into()));
        }
        if cfg.slots == 0 {
            return Err(Error::Config("slots must be at least 1".into()));
        }
        let warm_slots = cfg.warm_slots.unwrap_or(cfg.slots);
        if warm_slots == 0 || warm_slots > cfg.slots {
            return Err(Error::Config(format!(
                "warm_slots must be between 1 and slots ({}), got {warm_slots}",
                cfg.slots
            )));
        }
        if cfg.limits.memory_bytes < 64 << 20 {
            return Err(Error::Config("memory limit must be at least 64 MiB".into()));
        }
        if cfg.limits.max_processes < 8 {
            return Err(Error::Config("max_processes must be at least 8".into()));
        }
        for m in &cfg.mounts {
            let inside = m.inside.to_string_lossy();
            let neutral = inside.starts_with("/airlock/")
                && m.inside.components().count() >= 3
                && !m
                    .inside
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            if !neutral {
                return Err(Error::Config(format!(
                    "mount point {inside} must be an absolute path below /airlock/"
                )));
            }
            if !m.host.is_dir() {
                return Err(Error::Config(format!(
                    "mount source {} is not a directory",
                    m.host.display()
                )));
            }
        }
        let py = python_info(&cfg.python).await?;
        let mut notes = Vec::new();
        let cold = cfg.force_cold || py.libpython.is_none();
        if py.libpython.is_none() && !cfg.force_cold {
            notes.push(format!(
                "no shared libpython for {}: cold mode (fresh interpreter per execution)",
                py.executable.display()
            ));
        }
        let mut extra: Vec<PathBuf> = cfg.readonly_paths.clone();
        extra.extend(cfg.python_paths.iter().cloned());
        let root = sys::geteuid() == 0;
        let mounts: Vec<(PathBuf, PathBuf)> = cfg
            .mounts
            .iter()
            .map(|m| (m.host.clone(), m.inside.clone()))
            .collect();
        let (view, landlock) = match cfg.tier {
            Tier::Full => {
                let (mut view, mut landlock) = plan::build_view(
                    &plan::RealFs,
                    &py,
                    &extra,
                    &mounts,
                    cfg.uid_base,
                    cfg.uid_base,
                );
                plan::add_writable(&plan::RealFs, &cfg.writable_paths, &mut view, &mut landlock);
                (view, landlock)
            }
            Tier::Container => (
                Vec::new(),
                plan::container_landlock(&plan::RealFs, &py, &extra, &mounts, &cfg.writable_paths),
            ),
        };
        let template = HelperConfig {
            slot: 0,
            server_pid: std::process::id() as i32,
            uid: cfg.uid_base,
            gid: cfg.uid_base,
            drop_uid: root,
            python: py,
            cold,
            python_paths: cfg.python_paths.clone(),
            preimport: cfg.preimport.clone(),
            view,
            landlock,
            limits: cfg.limits.clone(),
            allow_missing: cfg.allow_missing.clone(),
            tier: cfg.tier,
            scratch: None,
        };
        // Per-slot cgroups (best effort), nested under the server's own cgroup.
        static INSTANCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let tag = format!(
            "airlock-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::SeqCst)
        );
        let mut cgroups = Vec::new();
        let mut cgroup_note = None;
        for idx in 0..cfg.slots {
            let cg = if root {
                SlotCgroup::create(&tag, idx, cfg.limits.memory_bytes, cfg.limits.max_processes)
            } else {
                Err("server is not root".to_string())
            };
            match cg {
                Ok(cg) => cgroups.push(Some(Arc::new(cg))),
                Err(e) => {
                    cgroup_note.get_or_insert(format!("cgroup: not used ({e})"));
                    cgroups.push(None);
                }
            }
        }
        if cgroup_note.is_some() {
            for cg in cgroups.iter_mut() {
                if let Some(c) = cg.take() {
                    c.remove();
                }
            }
        }
        notes.extend(cgroup_note);
        let cgroup_on = cgroups.iter().all(Option::is_some);
        let scratch = match cfg.tier {
            Tier::Full => None,
            Tier::Container => {
                let base = cfg.scratch_dir.clone().unwrap_or_else(default_scratch_base);
                Some(ScratchRoot::create(
                    &base,
                    &tag,
                    cfg.slots,
                    cfg.uid_base,
                    root,
                )?)
            }
        };
        let pool = Arc::new(Pool {
            procs: (0..cfg.slots).map(|_| Mutex::new(None)).collect(),
            free: std::sync::Mutex::new(FreeSlots {
                warm: VecDeque::new(),
                cold: (warm_slots..cfg.slots).collect(),
            }),
            available: Semaphore::new(cfg.slots - warm_slots),
            warm_target: warm_slots,
        });
        let inner = Inner {
            scratch,
            cgroups,
            pool,
            cfg,
            template,
            warm: std::sync::Mutex::new(WarmImports::default()),
            layers: std::sync::OnceLock::new(),
            shut: AtomicBool::new(false),
        };
        // Launch the warm slots (sequentially: each must report its layers).
        let mut slot_layers = None;
        for idx in 0..warm_slots {
            let (proc_, hello) = spawn_slot(&inner, idx).await?;
            *inner.pool.procs[idx].lock().await = Some(proc_);
            slot_layers.get_or_insert(hello);
            inner.pool.free().warm.push_back(idx);
            inner.pool.available.add_permits(1);
        }
        let mut layers = slot_layers.unwrap_or_default();
        layers.notes.extend(notes);
        layers.cgroup = cgroup_on;
        let sandbox = Sandbox {
            inner: Arc::new(inner),
        };

        // Probe: one real execution per warm slot (the others run the same helper
        // with the same plan, and it fails closed on its own).
        let mut child_layers: Option<LayerReport> = None;
        for _ in 0..warm_slots {
            // The probe needs the layer report, which only comes with the exit status.
            let mut exec = sandbox
                .run_inner(
                    Job {
                        script: PROBE_SCRIPT.into(),
                        timeout: Duration::from_secs(30),
                        ..Default::default()
                    },
                    false,
                )
                .await?;
            let outcome = loop {
                if let Event::Finished(o) = exec.next_event().await {
                    break o;
                }
            };
            if outcome.status != OutcomeStatus::Completed {
                sandbox.shutdown().await;
                return Err(Error::Startup(format!(
                    "probe execution failed: {} {}",
                    outcome.error.unwrap_or_default(),
                    String::from_utf8_lossy(&outcome.stderr)
                )));
            }
            let cl = outcome.layers.clone().unwrap_or_default();
            let r = outcome.result.unwrap_or(Value::Null);
            // Cross-check what the kernel says about the script process.
            let mut bad = Vec::new();
            if cl.no_new_privs && r["nnp"] != json!("1") {
                bad.push("NoNewPrivs");
            }
            if cl.seccomp && r["seccomp"] != json!("2") {
                bad.push("Seccomp");
            }
            if cl.cap_drop && r["capeff"] != json!("0000000000000000") {
                bad.push("CapEff");
            }
            if cl.pid_ns && r["pid"] != json!(2) {
                bad.push("pid");
            }
            if !bad.is_empty() {
                sandbox.shutdown().await;
                return Err(Error::Startup(format!(
                    "probe disagrees with the kernel on {bad:?}: {r}"
                )));
            }
            child_layers = Some(cl);
        }
        let cl = child_layers.unwrap_or_default();
        if let Some(s) = &sandbox.inner.scratch {
            layers.notes.push(format!(
                "scratch: per-execution directories under {}",
                s.0.display()
            ));
        }
        for l in [
            Layer::UserNs,
            Layer::PidNs,
            Layer::NetNs,
            Layer::MountNs,
            Layer::IpcNs,
            Layer::UtsNs,
            Layer::Landlock,
            Layer::LandlockNet,
            Layer::LandlockScope,
            Layer::Seccomp,
            Layer::Rlimits,
            Layer::NoNewPrivs,
            Layer::CapDrop,
        ] {
            layers.set(l, cl.is_active(l));
        }
        layers.fs_view = layers.fs_view && cl.fs_view;
        let allowed: BTreeSet<Layer> = sandbox.inner.cfg.allow_missing.iter().copied().collect();
        if let Some(missing) = layers.missing().into_iter().find(|l| !allowed.contains(l)) {
            sandbox.shutdown().await;
            return Err(Error::LayerMissing {
                layer: missing,
                detail: layers.notes.join("; "),
            });
        }
        let _ = sandbox.inner.layers.set(layers);
        Ok(sandbox)
    }

    /// Which layers are active (measured at start-up).
    pub fn layers(&self) -> &LayerReport {
        static EMPTY: std::sync::OnceLock<LayerReport> = std::sync::OnceLock::new();
        self.inner
            .layers
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(LayerReport::default))
    }

    /// Sets what warm zygotes add to `sys.path` (on top of
    /// [`SandboxConfig::python_paths`]) and pre-import (on top of
    /// [`SandboxConfig::preimport`]). The paths must already be visible (under a
    /// [`SandboxConfig::readonly_paths`] or [`SandboxConfig::mounts`] entry). Nothing happens when both are unchanged;
    /// otherwise each slot's zygote is replaced when it next starts a job, so running
    /// executions are not disturbed and the first job per slot pays the new imports.
    /// Pre-imported code runs in the zygote, before the per-execution layers, and is
    /// inherited by every later execution of every profile: only list modules you trust.
    pub fn set_warm_imports(&self, python_paths: Vec<PathBuf>, preimport: Vec<String>) {
        let mut w = self.inner.warm();
        if w.python_paths != python_paths || w.preimport != preimport {
            w.generation += 1;
            w.python_paths = python_paths;
            w.preimport = preimport;
        }
    }

    /// Runs a job; waits for a free slot first.
    pub async fn run(&self, job: Job) -> Result<Execution> {
        self.run_inner(job, true).await
    }

    /// `early_finish`: report the outcome as soon as the worker's final message and the
    /// end of both output pipes are in (the tree's teardown then finishes off the
    /// critical path; the slot stays held until it is gone). Without it the outcome
    /// waits for the supervisor's exit report (and so carries the layer report).
    async fn run_inner(&self, job: Job, early_finish: bool) -> Result<Execution> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }
        let guard = inner.pool.acquire().await?;
        let idx = guard.idx;
        if inner.shut.load(Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }

        let limits = &inner.cfg.limits;
        let container = inner.cfg.tier == Tier::Container;
        let mut env: BTreeMap<String, String> = job
            .env
            .into_iter()
            .map(|(k, v)| (k, inner.visible(&v)))
            .collect();
        let python_paths: Vec<String> = job
            .python_paths
            .iter()
            .map(|p| inner.visible(&p.to_string_lossy()))
            .collect();
        // The job frame for a spare whose proxy port is `port`, in a fresh control
        // socket pair: written into the socket at once, so it is waiting when the
        // script process wakes up with its fds (the driver writes whatever did not fit).
        let frame_for = |port: u16, env: &mut BTreeMap<String, String>| -> Result<Frame> {
            if job.network {
                for (k, v) in proxy_env(port) {
                    env.insert(k.to_string(), v);
                }
            }
            let run_frame = json!({
                "type": "run",
                "script": job.script,
                "settings": job.settings,
                "env": env,
                "python_paths": python_paths,
                "limits": {
                    "memory_bytes": limits.memory_bytes,
                    "cpu_seconds": limits.cpu_seconds,
                    "max_processes": limits.max_processes,
                    "max_open_files": limits.max_open_files,
                    "max_file_bytes": limits.max_file_bytes,
                    "scratch_bytes": limits.scratch_bytes,
                },
            });
            let (proto_srv, proto_wrk) = sys::socketpair(false)?;
            let std_proto = std::os::unix::net::UnixStream::from(proto_srv);
            std_proto.set_nonblocking(true)?;
            let rest = crate::protocol::encode_frame(&run_frame).ok().map(|f| {
                use std::io::Write;
                let n = (&std_proto).write(&f).unwrap_or(0);
                f[n..].to_vec()
            });
            Ok(Frame {
                port,
                std_proto,
                proto_wrk,
                rest,
            })
        };
        let (status_srv, status_wrk) = sys::socketpair(true)?;
        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        // For the execution's supervisor.
        let tcp = if job.network { &job.tcp[..] } else { &[] };
        let control = json!({"type": "run", "network": job.network, "tcp": tcp}).to_string();
        let mut spare_taken = None;
        let mut frame: Option<Frame> = None;
        {
            let mut slot = inner.pool.procs[idx].lock().await;
            let generation = inner.warm().generation;
            let mut attempt = 0;
            loop {
                // A zygote started before the last `set_warm_imports` is replaced (the
                // old one is killed when its `SlotProc` is dropped).
                let alive = match slot.as_mut() {
                    Some(p) => p.generation == generation && matches!(p.child.try_wait(), Ok(None)),
                    None => false,
                };
                let p = match slot.as_mut() {
                    Some(p) if alive => p,
                    _ => slot.insert(spawn_slot(inner, idx).await?.0),
                };
                p.gate.ask();
                // The job goes straight to the spare, on the sockets the zygote
                // announced when it forked it (the zygote is not on the job's path).
                // A spare that died before its job refuses the hand-over (its zygote
                // announces the next). Any other failure (the zygote gone or stuck, a
                // hand-over refused for another reason, so the spare may never hang
                // up): replace the zygote.
                let mut spare_died = false;
                let sent = match next_spare(&mut p.ctrl).await {
                    Ok(spare) => {
                        let port = match (container, spare.port) {
                            (false, _) => PROXY_PORT,
                            (true, Some(port)) => port,
                            (true, None) => {
                                return Err(Error::Startup(
                                    "container tier: a spare came without its proxy port".into(),
                                ))
                            }
                        };
                        // A retry after a spare died may get another port: a new frame.
                        if frame.as_ref().is_none_or(|f| f.port != port) {
                            frame = Some(frame_for(port, &mut env)?);
                        }
                        let f = frame.as_ref().ok_or(Error::ShutDown)?;
                        spare_taken = Some((p.gate.clone(), p.gate.take()));
                        let fds = [
                            f.proto_wrk.as_raw_fd(),
                            status_wrk.as_raw_fd(),
                            out_w.as_raw_fd(),
                            err_w.as_raw_fd(),
                        ];
                        let sent = hand_over(&spare, &control, &fds, job.network);
                        spare_died = matches!(&sent, Err(e) if matches!(
                            e.kind(),
                            std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionReset
                        ));
                        sent.map_err(Error::Io)
                    }
                    Err(e) => Err(e),
                };
                if sent.is_err() && !spare_died {
                    if let Some(mut p) = slot.take() {
                        let _ = p.child.start_kill();
                    }
                }
                match sent {
                    Ok(()) => break,
                    Err(_) if attempt < 2 => attempt += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        let Frame {
            std_proto,
            proto_wrk,
            rest: run_frame_rest,
            ..
        } = frame.ok_or(Error::ShutDown)?;
        drop((proto_wrk, status_wrk, out_w, err_w));

        let io = DriverIo {
            proto: tokio::net::UnixStream::from_std(std_proto)?,
            status: SeqPacket::new(status_srv)?,
            stdout: out_r,
            stderr: err_r,
        };
        let spec = JobSpec {
            cgroup: inner.cgroups[idx].clone(),
            run_frame_rest,
            timeout: job.timeout,
            output_bytes: limits.output_bytes,
            memory_bytes: limits.memory_bytes,
            cpu_seconds: limits.cpu_seconds,
            scratch_bytes: limits.scratch_bytes,
            early_finish,
        };
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let pid = Arc::new(AtomicI32::new(0));
        let (proxy_tx, proxy) = if job.network {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(PendingProxy(rx)))
        } else {
            (None, None)
        };
        tokio::spawn(drive(io, spec, ev_tx, cmd_rx, pid.clone(), proxy_tx, guard));
        Ok(Execution {
            slot: Some((Arc::downgrade(&self.inner), idx)),
            events: ev_rx,
            cmds: cmd_tx,
            pid,
            pending: BTreeSet::new(),
            finished: None,
            proxy,
            spare_taken,
        })
    }

    /// Host pids of the running zygotes (one per warm slot), for health checks.
    pub async fn zygote_pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for slot in &self.inner.pool.procs {
            if let Some(p) = slot.lock().await.as_mut() {
                if let (Ok(None), Some(id)) = (p.child.try_wait(), p.child.id()) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Stops every zygote (running executions die with them).
    pub async fn shutdown(&self) {
        self.inner.shut.store(true, Ordering::SeqCst);
        self.inner.pool.available.close();
        for slot in &self.inner.pool.procs {
            if let Some(mut p) = slot.lock().await.take() {
                let _ = p.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
            }
        }
        // Executions die with their zygote; give the kernel a moment, then clean up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for cg in self.inner.cgroups.iter().flatten() {
            cg.remove();
        }
    }
}

/// Hands a job to a spare. The supervisor first (a dead spare fails here, before its
/// script process could see the job): with egress it gets all four fds and passes the
/// script's on once the proxy listener exists; without, it gets the status socket and
/// the script process gets its three fds straight from here, one hop less.
fn hand_over(spare: &Spare, control: &str, fds: &[i32; 4], network: bool) -> std::io::Result<()> {
    let [proto, status, out, err] = *fds;
    for s in [&spare.supervisor, &spare.script] {
        sys::set_nonblocking(s.as_raw_fd(), true)?;
    }
    if network {
        return sys::send_with_fds(spare.supervisor.as_raw_fd(), control.as_bytes(), fds);
    }
    sys::send_with_fds(spare.supervisor.as_raw_fd(), control.as_bytes(), &[status])?;
    // If the script process died in set-up, the supervisor reports why on the status
    // socket; nothing to do here.
    let _ = sys::send_with_fds(spare.script.as_raw_fd(), b"job", &[proto, out, err]);
    Ok(())
}

/// A job frame written into a control socket pair made for one spare.
struct Frame {
    port: u16,
    std_proto: std::os::unix::net::UnixStream,
    proto_wrk: OwnedFd,
    rest: Option<Vec<u8>>,
}

/// The sockets of a spare the zygote announced.
struct Spare {
    /// To the spare's supervisor: the job message, with the status socket (and, for a
    /// job with egress, the script's fds too: the supervisor hands them over once the
    /// proxy listener exists).
    supervisor: OwnedFd,
    /// To the spare's script process: its control socket, stdout and stderr.
    script: OwnedFd,
    /// Container tier: the port of the spare's own proxy listener.
    port: Option<u16>,
}

/// Waits for the zygote to announce its next spare: `{"type":"spare"}` with the sockets
/// of the spare's supervisor and script process.
async fn next_spare(ctrl: &mut SeqPacket) -> Result<Spare> {
    let wait = async {
        loop {
            match ctrl.recv().await {
                Ok(Some((data, mut fds))) => {
                    let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("spare") if fds.len() == 2 => {
                            let script = fds.remove(1);
                            let supervisor = fds.remove(0);
                            let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                            return Ok(Spare {
                                supervisor,
                                script,
                                port,
                            });
                        }
                        Some("fatal") => {
                            return Err(Error::Startup(format!(
                                "zygote: {}",
                                v["error"].as_str().unwrap_or("?")
                            )))
                        }
                        _ => {}
                    }
                }
                Ok(None) => return Err(Error::Startup("the slot's zygote exited".into())),
                Err(e) => return Err(Error::Io(e)),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(r) => r,
        Err(_) => Err(Error::Startup(
            "the slot's zygote announced no spare in 30 s".into(),
        )),
    }
}

/// Launches one slot's helper and waits for it to report ready.
async fn spawn_slot(inner: &Inner, idx: usize) -> Result<(SlotProc, LayerReport)> {
    let (srv, helper_end) = sys::socketpair(true)?;
    let mut cmd = tokio::process::Command::new(&inner.cfg.helper[0]);
    // A neutral argv[0]: every process of an execution shows the helper's command
    // line in /proc/<pid>/cmdline, which would otherwise name the server binary's path.
    cmd.arg0("airlock-sandbox")
        .args(&inner.cfg.helper[1..])
        .env_clear()
        .stdin(Stdio::from(helper_end))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Startup(format!("spawning helper {:?}: {e}", inner.cfg.helper[0])))?;
    // Join the slot's cgroup before the helper forks anything (it waits for its config).
    if let (Some(cg), Some(pid)) = (&inner.cgroups[idx], child.id()) {
        if let Err(e) = cg.attach(pid) {
            let _ = child.start_kill();
            return Err(Error::Startup(format!(
                "slot {idx}: joining its cgroup: {e}"
            )));
        }
    }
    let mut hc = inner.template.clone();
    let warm = inner.warm().clone();
    hc.python_paths.extend(
        warm.python_paths
            .iter()
            .map(|p| PathBuf::from(inner.visible(&p.to_string_lossy()))),
    );
    hc.preimport.extend(warm.preimport.iter().cloned());
    hc.slot = idx;
    hc.scratch = inner.scratch.as_ref().map(|s| s.slot(idx));
    hc.uid = inner.cfg.uid_base + idx as u32;
    hc.gid = hc.uid;
    // Rebuild the synthesized passwd/group for this slot's uid.
    for e in &mut hc.view {
        if let plan::ViewEntry::File { dst, contents } = e {
            if dst == Path::new("/etc/passwd") {
                *contents = format!(
                    "airlock:x:{0}:{0}:airlock:/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                    hc.uid
                );
            } else if dst == Path::new("/etc/group") {
                *contents = format!("airlock:x:{}:\nnogroup:x:65534:\n", hc.gid);
            }
        }
    }
    let gate = Arc::new(SpareGate::new(srv.try_clone()?));
    let mut ctrl = SeqPacket::new(srv)?;
    let cfg_json = serde_json::to_vec(&hc).map_err(|e| Error::Startup(e.to_string()))?;
    ctrl.send(&cfg_json, &[]).await?;
    let mut layers = None;
    let wait = async {
        loop {
            match ctrl.recv().await {
                Ok(Some((data, _))) => {
                    let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("hello") => {
                            layers =
                                serde_json::from_value::<LayerReport>(v["layers"].clone()).ok();
                        }
                        Some("ready") => return Ok(()),
                        Some("fatal") => {
                            let msg = v["error"].as_str().unwrap_or("?").to_string();
                            let layer = Layer::ALL.into_iter().find(|l| msg.starts_with(l.name()));
                            return Err(match layer {
                                Some(layer) => Error::LayerMissing { layer, detail: msg },
                                None => Error::Startup(format!("slot {idx}: {msg}")),
                            });
                        }
                        _ => {}
                    }
                }
                Ok(None) => {
                    return Err(Error::Startup(format!(
                        "slot {idx}: helper exited during start-up"
                    )))
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::Startup(format!(
                "slot {idx}: helper did not become ready in 30 s"
            )))
        }
    }
    let layers = layers.ok_or_else(|| Error::Startup(format!("slot {idx}: no layer report")))?;
    Ok((
        SlotProc {
            child,
            ctrl,
            gate,
            generation: warm.generation,
        },
        layers,
    ))
}

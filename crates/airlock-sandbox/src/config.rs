//! Configuration and the layer report.
//!
//! These are the types the runner fills in and reads back: what to run (`SandboxConfig`,
//! `Limits`), which isolation layers may be missing (`Layer`), and which layers are
//! actually active on this machine (`LayerReport`, served by `/health` and the UI).

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

/// Resource limits applied to every execution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_AS of the script process (virtual memory), bytes.
    pub memory_bytes: u64,
    /// RLIMIT_CPU of the script process, seconds (SIGXCPU at the soft limit).
    pub cpu_seconds: u64,
    /// RLIMIT_NPROC inside the execution's user namespace (processes + threads, including
    /// the 3 supervisor processes the sandbox itself uses).
    pub max_processes: u64,
    /// RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// RLIMIT_FSIZE: largest file the script may write, bytes.
    pub max_file_bytes: u64,
    /// Size of the per-execution tmpfs mounted at /tmp (and of /dev/shm), bytes.
    pub scratch_bytes: u64,
    /// Bytes of stdout and of stderr kept per execution; the rest is drained and dropped.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 * 1024 * 1024,
            cpu_seconds: 30,
            max_processes: 64,
            max_open_files: 256,
            max_file_bytes: 64 * 1024 * 1024,
            scratch_bytes: 64 * 1024 * 1024,
            output_bytes: 1024 * 1024,
        }
    }
}

/// One isolation layer. Used to name a missing layer in errors and to let an operator
/// explicitly allow running without it (`SandboxConfig::allow_missing`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Switching to an unprivileged per-slot uid/gid (only possible when started as root).
    UidDrop,
    UserNs,
    PidNs,
    NetNs,
    MountNs,
    IpcNs,
    UtsNs,
    /// Minimal read-only root (pivot_root) with a fresh /proc, /tmp and /dev/shm.
    FsView,
    /// Landlock filesystem rules.
    Landlock,
    /// Landlock TCP bind/connect denial (ABI >= 4).
    LandlockNet,
    /// Landlock abstract-unix-socket and signal scoping (ABI >= 6).
    LandlockScope,
    Seccomp,
    Rlimits,
    NoNewPrivs,
    /// All capabilities dropped in the script process.
    CapDrop,
}

impl Layer {
    pub const ALL: [Layer; 15] = [
        Layer::UidDrop,
        Layer::UserNs,
        Layer::PidNs,
        Layer::NetNs,
        Layer::MountNs,
        Layer::IpcNs,
        Layer::UtsNs,
        Layer::FsView,
        Layer::Landlock,
        Layer::LandlockNet,
        Layer::LandlockScope,
        Layer::Seccomp,
        Layer::Rlimits,
        Layer::NoNewPrivs,
        Layer::CapDrop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::UidDrop => "uid_drop",
            Layer::UserNs => "user_ns",
            Layer::PidNs => "pid_ns",
            Layer::NetNs => "net_ns",
            Layer::MountNs => "mount_ns",
            Layer::IpcNs => "ipc_ns",
            Layer::UtsNs => "uts_ns",
            Layer::FsView => "fs_view",
            Layer::Landlock => "landlock",
            Layer::LandlockNet => "landlock_net",
            Layer::LandlockScope => "landlock_scope",
            Layer::Seccomp => "seccomp",
            Layer::Rlimits => "rlimits",
            Layer::NoNewPrivs => "no_new_privs",
            Layer::CapDrop => "cap_drop",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A named set of isolation layers: what the sandbox promises, as a whole.
///
/// * `full`: every layer, namespaces included (a host, or a container allowed user
///   namespaces and a fresh /proc).
/// * `container`: what an ordinary unprivileged container allows (no user namespaces,
///   no mounts): a distinct uid per slot, Landlock as the filesystem view and the
///   network wall (TCP connect only to the execution's own proxy port on the shared
///   loopback, no bind), Landlock scoping, a seccomp filter that also refuses every
///   socket but TCP, listening, SysV IPC and leaving the execution's process group,
///   rlimits, no_new_privs, no capabilities, a per-execution scratch directory with a
///   watched size cap, and every process of the execution killed when it ends.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Full,
    Container,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Full => "full",
            Tier::Container => "container",
        }
    }

    /// The layers this tier consists of; every one must be active (or explicitly
    /// allowed missing) for the sandbox to start.
    pub fn layers(self) -> &'static [Layer] {
        match self {
            Tier::Full => &Layer::ALL,
            Tier::Container => &[
                Layer::UidDrop,
                Layer::Landlock,
                Layer::LandlockNet,
                Layer::LandlockScope,
                Layer::Seccomp,
                Layer::Rlimits,
                Layer::NoNewPrivs,
                Layer::CapDrop,
            ],
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which layers are active, as measured by launching real executions at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerReport {
    /// The tier the sandbox was started in; [`LayerReport::missing`] is relative to it.
    #[serde(default)]
    pub tier: Tier,
    /// `"warm"` (pre-imported zygote forks per execution) or `"cold"` (fresh interpreter).
    pub mode: String,
    pub uid_drop: bool,
    pub user_ns: bool,
    pub pid_ns: bool,
    pub net_ns: bool,
    pub mount_ns: bool,
    pub ipc_ns: bool,
    pub uts_ns: bool,
    pub fs_view: bool,
    pub landlock: bool,
    /// Landlock ABI version of the kernel (0 = unsupported).
    pub landlock_abi: i32,
    pub landlock_net: bool,
    pub landlock_scope: bool,
    pub seccomp: bool,
    pub rlimits: bool,
    pub no_new_privs: bool,
    pub cap_drop: bool,
    /// Per-slot cgroup memory (and pids) limit for the whole execution tree. Best
    /// effort: needs root and cgroup v1 controllers or a delegated v2 subtree.
    pub cgroup: bool,
    /// Free-form explanations (for example why the uid drop was skipped).
    pub notes: Vec<String>,
}

impl LayerReport {
    pub fn is_active(&self, layer: Layer) -> bool {
        match layer {
            Layer::UidDrop => self.uid_drop,
            Layer::UserNs => self.user_ns,
            Layer::PidNs => self.pid_ns,
            Layer::NetNs => self.net_ns,
            Layer::MountNs => self.mount_ns,
            Layer::IpcNs => self.ipc_ns,
            Layer::UtsNs => self.uts_ns,
            Layer::FsView => self.fs_view,
            Layer::Landlock => self.landlock,
            Layer::LandlockNet => self.landlock_net,
            Layer::LandlockScope => self.landlock_scope,
            Layer::Seccomp => self.seccomp,
            Layer::Rlimits => self.rlimits,
            Layer::NoNewPrivs => self.no_new_privs,
            Layer::CapDrop => self.cap_drop,
        }
    }

    pub(crate) fn set(&mut self, layer: Layer, on: bool) {
        let f = match layer {
            Layer::UidDrop => &mut self.uid_drop,
            Layer::UserNs => &mut self.user_ns,
            Layer::PidNs => &mut self.pid_ns,
            Layer::NetNs => &mut self.net_ns,
            Layer::MountNs => &mut self.mount_ns,
            Layer::IpcNs => &mut self.ipc_ns,
            Layer::UtsNs => &mut self.uts_ns,
            Layer::FsView => &mut self.fs_view,
            Layer::Landlock => &mut self.landlock,
            Layer::LandlockNet => &mut self.landlock_net,
            Layer::LandlockScope => &mut self.landlock_scope,
            Layer::Seccomp => &mut self.seccomp,
            Layer::Rlimits => &mut self.rlimits,
            Layer::NoNewPrivs => &mut self.no_new_privs,
            Layer::CapDrop => &mut self.cap_drop,
        };
        *f = on;
    }

    /// Layers of the report's tier that are not active.
    pub fn missing(&self) -> Vec<Layer> {
        self.tier
            .layers()
            .iter()
            .copied()
            .filter(|l| !self.is_active(*l))
            .collect()
    }
}

/// How to launch sandboxes.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Program + arguments that run [`crate::helper_main`] (typically the server's own
    /// binary followed by [`crate::HELPER_ARG`]).
    pub helper: Vec<OsString>,
    /// A real interpreter binary (not a pyenv shell shim), e.g. `/usr/bin/python3`.
    pub python: PathBuf,
    /// Number of slots, i.e. executions that may exist at once (running or parked,
    /// see [`crate::Execution::park`]). Each slot is an identity of its own: a uid, a
    /// cgroup and (container tier) a scratch directory.
    pub slots: usize,
    /// How many slots keep a warm zygote while idle (`None`: all of them). The others
    /// get one when a job needs them, which costs that job an interpreter start; a
    /// parked execution's zygote is retired. At least 1 (and at most `slots`).
    pub warm_slots: Option<usize>,
    /// Host uid/gid of slot `i` is `uid_base + i` (only used when running as root).
    pub uid_base: u32,
    pub limits: Limits,
    /// Extra paths made visible read-only (and readable under Landlock), e.g. a venv,
    /// at the same path as on the host.
    pub readonly_paths: Vec<PathBuf>,
    /// Host directories made visible read-only at a neutral path of their own under
    /// `/airlock/`, so a script learns nothing of the host's layout (for example the
    /// data directory's path) from `/proc/self/mountinfo`.
    pub mounts: Vec<ReadonlyMount>,
    /// Paths appended to `sys.path` (they are also made visible read-only).
    pub python_paths: Vec<PathBuf>,
    /// Modules every warm zygote imports once at start (e.g. `pandas`), so executions
    /// forked from it get them for free. Their code runs in the zygote and is inherited
    /// by every execution: list only trusted modules. Ignored in cold mode.
    pub preimport: Vec<String>,
    /// Existing host directories made visible *writable* at the same path (nosuid,
    /// nodev). Empty for script sandboxes; the package installer uses one build dir.
    pub writable_paths: Vec<PathBuf>,
    /// Layers the operator explicitly allows to be missing. Empty = fail closed.
    pub allow_missing: Vec<Layer>,
    /// Force a fresh interpreter per execution even when a warm zygote is possible.
    pub force_cold: bool,
    /// Which set of layers to build (see [`Tier`]).
    pub tier: Tier,
    /// Container tier: the directory under which each execution gets its own scratch
    /// directory (its working directory, `HOME` and `TMPDIR`). `None`: `/dev/shm` when
    /// it is a tmpfs (a container's is size-capped, so filling it never fills the data
    /// volume), else the system temporary directory. Unused in the full tier, where
    /// every execution mounts its own size-capped tmpfs.
    pub scratch_dir: Option<PathBuf>,
}

/// A host directory seen read-only inside the sandbox at `inside`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadonlyMount {
    /// An existing host directory.
    pub host: PathBuf,
    /// Where scripts see it: an absolute path under `/airlock/`.
    pub inside: PathBuf,
}

impl SandboxConfig {
    /// A configuration with defaults: `slots` = number of cores, `/usr/bin/python3`,
    /// uid base 2_100_000, default limits, nothing allowed missing.
    pub fn new(helper: Vec<OsString>) -> Self {
        SandboxConfig {
            helper,
            python: PathBuf::from("/usr/bin/python3"),
            slots: std::thread::available_parallelism()
                .map(std::num::NonZero::get)
                .unwrap_or(2),
            warm_slots: None,
            uid_base: 2_100_000,
            limits: Limits::default(),
            readonly_paths: Vec::new(),
            mounts: Vec::new(),
            python_paths: Vec::new(),
            writable_paths: Vec::new(),
            preimport: Vec::new(),
            allow_missing: Vec::new(),
            force_cold: false,
            tier: Tier::Full,
            scratch_dir: None,
        }
    }
}

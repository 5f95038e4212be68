//! Runtime configuration, from flags and `AIRLOCK_*` environment variables.
//!
//! The struct is plain data so tests build it directly with
//! [`Config::for_data_dir`] instead of touching the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

/// How log lines are written to stderr (`AIRLOCK_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`),
    /// for log shippers.
    Json,
}

/// Which sandbox tier the server runs scripts in (`AIRLOCK_SANDBOX`); see the README,
/// "Sandbox tiers".
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxMode {
    /// The full tier when every one of its layers works, else the container tier when
    /// every one of *its* layers works, else refuse executions (the image's default).
    Auto,
    /// The full tier (namespaces and all), or refuse executions.
    Strict,
    /// The container tier (no namespaces needed), or refuse executions.
    Container,
    /// Development only: the full tier with whatever layers happen to work.
    Permissive,
}

impl SandboxMode {
    /// The tiers to try, in order.
    pub fn tiers(self) -> &'static [airlock_sandbox::Tier] {
        use airlock_sandbox::Tier;
        match self {
            SandboxMode::Auto => &[Tier::Full, Tier::Container],
            SandboxMode::Strict | SandboxMode::Permissive => &[Tier::Full],
            SandboxMode::Container => &[Tier::Container],
        }
    }
}

/// Which program installs packages (`AIRLOCK_PIP_INSTALLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Installer {
    /// `uv` when it is found, else `python -m pip`.
    Auto,
    Uv,
    Pip,
}

/// Settings of `airlock serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on. Use 0.0.0.0:9090 to accept connections from other hosts
    /// (put a TLS reverse proxy in front).
    #[arg(long, env = "AIRLOCK_BIND", default_value = "127.0.0.1:9090")]
    pub bind: SocketAddr,

    /// Directory for the database (and the master key unless
    /// AIRLOCK_MASTER_KEY_FILE points elsewhere). Created with mode 0700.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "./airlock-data")]
    pub data_dir: PathBuf,

    /// Master key file (32 random bytes, created on first start with mode 0600).
    /// Defaults to <data-dir>/master.key; keep it off the data volume to separate
    /// the key from the ciphertext.
    #[arg(long, env = "AIRLOCK_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Public base URL used to build absolute URLs (for example
    /// https://airlock.example.com). Defaults to the request's Host header. An
    /// https URL also marks the session cookie Secure.
    #[arg(long, env = "AIRLOCK_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest accepted JSON request body in bytes for the admin and catalog APIs.
    #[arg(long, env = "AIRLOCK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Python interpreter run inside the sandbox. Must be a real binary, not a
    /// shell shim (pyenv's `python3` is one).
    #[arg(long, env = "AIRLOCK_PYTHON", default_value = "/usr/bin/python3")]
    pub python: PathBuf,

    /// Extra directories (colon-separated) holding Python packages, mounted
    /// read-only in the sandbox and added to `sys.path` (for example a
    /// `pip install --target` directory). Not under /tmp, which each execution
    /// gets empty.
    #[arg(
        long = "python-path",
        env = "AIRLOCK_PYTHON_PATHS",
        value_delimiter = ':'
    )]
    pub python_paths: Vec<PathBuf>,

    /// First host uid/gid of the sandbox slots (slot N runs as base + N). Lower it
    /// for container engines with a small user-namespace range (e.g. 65536 uids).
    #[arg(long, env = "AIRLOCK_SANDBOX_UID_BASE", default_value_t = 2_100_000)]
    pub sandbox_uid_base: u32,

    /// Sandbox tier: `strict` runs the full tier (namespaces, a read-only
    /// filesystem view, Landlock, seccomp, ...) or refuses executions; `container`
    /// runs the tier an unprivileged container allows (no namespaces) or refuses;
    /// `auto` picks the full tier when it works, else the container tier;
    /// `permissive` (development only) runs with whatever layers work.
    #[arg(long, env = "AIRLOCK_SANDBOX", value_enum, default_value_t = SandboxMode::Strict)]
    pub sandbox: SandboxMode,

    /// Container tier only: the directory under which each execution gets its own
    /// scratch directory. Default: /dev/shm when it is a tmpfs, else the system
    /// temporary directory.
    #[arg(long, env = "AIRLOCK_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,

    /// Executions running at once (each may use a core). Defaults to the number of
    /// cores.
    #[arg(long, env = "AIRLOCK_WORKERS")]
    pub workers: Option<usize>,

    /// Executions that may be paused in `llm.complete` at once without holding a
    /// worker (each keeps its processes, uid and namespaces; none runs). When that
    /// many are paused, new executions get 429. 0: a paused execution keeps its
    /// worker.
    #[arg(long, env = "AIRLOCK_MAX_PAUSED", default_value_t = 64)]
    pub max_paused: usize,

    /// How long (seconds) an execution waits for an approver (profiles with
    /// `approval`) before the request expires and the execution ends `denied`.
    #[arg(long, env = "AIRLOCK_APPROVAL_TIMEOUT", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub approval_timeout: u64,

    /// Milliseconds before a failed webhook delivery is retried; each next retry
    /// waits twice as long (5 attempts in all).
    #[arg(long, env = "AIRLOCK_NOTIFY_RETRY_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub notify_retry_ms: u64,

    /// Seconds between checks for locked profiles that expire within a day (each
    /// is announced once to the notification targets that ask for it).
    #[arg(long, env = "AIRLOCK_EXPIRY_CHECK_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub expiry_check_secs: u64,

    /// Seconds between checks of the audit log's hash chain and signed heads (the
    /// result is in `/health`).
    #[arg(long, env = "AIRLOCK_AUDIT_VERIFY_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub audit_verify_secs: u64,

    /// Stream every audit event to a syslog collector, `tcp://host:port` (RFC 5424
    /// messages, octet-counted framing). Never blocks a request: up to 1000 events
    /// wait while it is unreachable, more are dropped (counted and audited).
    #[arg(long, env = "AIRLOCK_AUDIT_SYSLOG")]
    pub audit_syslog: Option<String>,

    /// Executions that may wait for a free slot before new ones get 429.
    #[arg(long, env = "AIRLOCK_QUEUE_SIZE", default_value_t = 256)]
    pub queue_size: usize,

    /// Largest `timeout` (seconds) a script may ask for. Scripts that give none get
    /// 60 s, or this value when it is lower.
    #[arg(long, env = "AIRLOCK_MAX_TIMEOUT", default_value_t = 60)]
    pub max_timeout: u64,

    /// Largest accepted script in bytes.
    #[arg(long, env = "AIRLOCK_MAX_SCRIPT_BYTES", default_value_t = 1024 * 1024)]
    pub max_script_bytes: usize,

    /// Stdout and stderr are each kept up to this many bytes, then truncated.
    #[arg(long, env = "AIRLOCK_MAX_OUTPUT_BYTES", default_value_t = 1024 * 1024)]
    pub max_output_bytes: usize,

    /// Every run of at least this many consecutive characters of a credential
    /// value is redacted from output (capped at half the value, never below 8);
    /// 0 redacts whole values only.
    #[arg(long, env = "AIRLOCK_REDACT_PARTIAL_CHARS", default_value_t = 16,
          value_parser = parse_partial_chars)]
    pub redact_partial_chars: usize,

    /// Redact every credential value in any ASCII letter case (values whose
    /// letters are all of one case, such as hex tokens, always are).
    #[arg(long, env = "AIRLOCK_REDACT_IGNORE_CASE", default_value_t = false)]
    pub redact_ignore_case: bool,

    /// How long (microseconds) the relay of a forwarded TCP connection (`tcp://`
    /// destinations, databases) keeps polling after bytes last moved before it sleeps:
    /// lower latency per query for up to this much CPU per exchange; 0 never spins.
    #[arg(long, env = "AIRLOCK_TCP_SPIN_US", default_value_t = 100)]
    pub tcp_spin_us: u64,

    /// Log lines as `text` or `json` (one object per line), on stderr.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long (days) the answers kept by `record: full` are kept; hashes and the
    /// rest of the input record stay. 0 keeps them until the execution is gone.
    #[arg(long, env = "AIRLOCK_RECORD_RETENTION_DAYS", default_value_t = 30)]
    pub record_retention_days: u64,

    /// Memory limit per execution in MiB.
    #[arg(long, env = "AIRLOCK_MEMORY_MB", default_value_t = 512)]
    pub memory_mb: u64,

    /// How long (seconds) a script may wait in `llm.complete` for the agent's answer.
    #[arg(long, env = "AIRLOCK_LLM_TIMEOUT", default_value_t = 600)]
    pub llm_timeout: u64,

    /// Largest accepted export file (`.airlock`) on import, in bytes.
    #[arg(long, env = "AIRLOCK_MAX_IMPORT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_import_bytes: usize,

    /// Package index for `POST /requirements` installs (`none`: no index, only
    /// AIRLOCK_PIP_FIND_LINKS). The installer may reach only this index's host (and
    /// files.pythonhosted.org for pypi.org) through the egress proxy.
    #[arg(
        long,
        env = "AIRLOCK_PIP_INDEX_URL",
        default_value = "https://pypi.org/simple"
    )]
    pub pip_index_url: String,

    /// A local directory of wheels/sdists installs may use (made visible read-only
    /// to the install sandbox). With AIRLOCK_PIP_INDEX_URL=none installs work offline.
    #[arg(long, env = "AIRLOCK_PIP_FIND_LINKS")]
    pub pip_find_links: Option<PathBuf>,

    /// Installer: `auto` uses `uv` when it is on PATH, else `python -m pip`.
    #[arg(long, env = "AIRLOCK_PIP_INSTALLER", value_enum, default_value_t = Installer::Auto)]
    pub pip_installer: Installer,

    /// The uv binary (default: `uv` found on PATH). Its directory is made visible
    /// read-only to the install sandbox.
    #[arg(long, env = "AIRLOCK_UV")]
    pub uv: Option<PathBuf>,

    /// Modules (comma-separated, e.g. `pandas,numpy`) the warm sandbox workers import
    /// once, from the standard library or the package environment, so scripts that
    /// import them do not pay for it each run. Their code is inherited by every
    /// execution of every profile: list only packages you trust.
    #[arg(long, env = "AIRLOCK_PREIMPORT", value_delimiter = ',')]
    pub preimport: Vec<String>,

    /// Wall-clock limit of one package install, seconds.
    #[arg(long, env = "AIRLOCK_PIP_TIMEOUT", default_value_t = 600)]
    pub pip_timeout: u64,

    /// Disk (and scratch) limit of one package environment, MiB.
    #[arg(long, env = "AIRLOCK_PIP_DISK_MB", default_value_t = 2048)]
    pub pip_disk_mb: u64,

    /// Package requests wait for the operator to accept them (Requests page)
    /// before anything is installed; `false` installs them at once.
    #[arg(long, env = "AIRLOCK_PACKAGE_REVIEW", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub package_review: bool,
    /// Extra CA certificates (PEM file) the egress proxy trusts, besides the public
    /// roots, when it connects to hosts bound to sealed credentials (a private API's CA)
    /// and to the database servers of sealed database credentials.
    #[arg(long, env = "AIRLOCK_EGRESS_CA_BUNDLE")]
    pub egress_ca_bundle: Option<PathBuf>,

    /// Directory for the public CA bundle scripts trust (system roots + this
    /// instance's egress CA), written to its `airlock-egress-ca/` subdirectory, which
    /// alone is made visible read-only in the sandbox. Must be outside /tmp, the data
    /// directory and the master key's directory. Default: `<data dir>-public` next to
    /// the data directory.
    #[arg(long, env = "AIRLOCK_EGRESS_CA_DIR")]
    pub egress_ca_dir: Option<PathBuf>,

    /// Program (and arguments) that runs the sandbox helper. Set by the binary
    /// to itself; `None` disables executions (used by API tests).
    #[arg(skip)]
    pub sandbox_helper: Option<Vec<std::ffi::OsString>>,
}

impl Config {
    /// Defaults with the given data directory; what tests use.
    pub fn for_data_dir(path: &Path) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: path.to_path_buf(),
            master_key_file: None,
            public_url: None,
            max_body_bytes: 1024 * 1024,
            python: PathBuf::from("/usr/bin/python3"),
            python_paths: Vec::new(),
            sandbox_uid_base: 2_100_000,
            sandbox: SandboxMode::Strict,
            scratch_dir: None,
            workers: None,
            max_paused: 64,
            approval_timeout: 3600,
            notify_retry_ms: 2000,
            expiry_check_secs: 60,
            audit_verify_secs: 60,
            audit_syslog: None,
            queue_size: 256,
            max_timeout: 60,
            max_script_bytes: 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            redact_partial_chars: 16,
            redact_ignore_case: false,
            tcp_spin_us: 100,
            record_retention_days: 30,
            log_format: LogFormat::Text,
            memory_mb: 512,
            llm_timeout: 600,
            max_import_bytes: 64 * 1024 * 1024,
            pip_index_url: "https://pypi.org/simple".into(),
            pip_find_links: None,
            pip_installer: Installer::Auto,
            uv: None,
            preimport: Vec::new(),
            pip_timeout: 600,
            pip_disk_mb: 2048,
            package_review: true,
            egress_ca_bundle: None,
            egress_ca_dir: None,
            sandbox_helper: None,
        }
    }

    /// What the redactor of every execution looks for.
    pub fn redaction(&self) -> airlock_redact::Options {
        airlock_redact::Options {
            partial_chars: (self.redact_partial_chars > 0).then_some(self.redact_partial_chars),
            ignore_case: self.redact_ignore_case,
            ..airlock_redact::Options::default()
        }
    }

    /// The bounds of every execution's egress.
    pub fn egress_limits(&self) -> airlock_egress::EgressLimits {
        airlock_egress::EgressLimits {
            tcp_spin: std::time::Duration::from_micros(self.tcp_spin_us),
            ..airlock_egress::EgressLimits::default()
        }
    }

    /// Where the master key lives.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// Where the public CA bundle for the sandbox is written.
    pub fn egress_ca_dir(&self) -> PathBuf {
        self.egress_ca_dir.clone().unwrap_or_else(|| {
            let mut name = self
                .data_dir
                .file_name()
                .map(std::ffi::OsStr::to_os_string)
                .unwrap_or_else(|| "airlock-data".into());
            name.push("-public");
            self.data_dir.with_file_name(name)
        })
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("airlock.db")
    }

    /// Concurrent executions: the configured number or the number of cores.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            })
            .max(1)
    }

    /// Sandbox slots (identities: a uid, a cgroup, a scratch directory each): one per
    /// worker and one per execution that may be paused.
    pub fn sandbox_slots(&self) -> usize {
        self.worker_count() + self.max_paused
    }

    /// The public URL without a trailing slash, if configured.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

/// `AIRLOCK_REDACT_PARTIAL_CHARS`: 0, or at least the redactor's floor.
fn parse_partial_chars(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of characters"))?;
    if n != 0 && n < airlock_redact::MIN_CANONICAL_CHARS {
        return Err(format!(
            "{n} is too short: runs of fewer than {} characters would hit ordinary text (0 turns partial matching off)",
            airlock_redact::MIN_CANONICAL_CHARS
        ));
    }
    Ok(n)
}

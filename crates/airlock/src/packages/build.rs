//! The install sandbox: one slot that runs uv or pip into a build directory, with
//! network only to the index host through its own egress session, and the checks on
//! what it produced before it becomes an environment.

use super::*;

/// Bytes of installer output kept per install (the tail).
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// The installer command, run inside the install sandbox. It lowers the umask so the
/// environment is readable by the script slots' uids, and keeps the output's tail.
const INSTALL_SCRIPT: &str = r#"
import json, os, subprocess, sys
os.umask(0o022)
cfg = json.loads(os.environ.pop("AIRLOCK_INSTALL"))
try:
    p = subprocess.run(cfg["argv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       cwd=os.getcwd(), timeout=cfg["timeout"])
    out, code = p.stdout.decode("utf-8", "replace"), p.returncode
except subprocess.TimeoutExpired as e:
    out, code = (e.output or b"").decode("utf-8", "replace") + "\ninstaller timed out\n", -9
except OSError as e:
    out, code = "cannot start the installer: %s\n" % (e,), 127
sys.stdout.write(out[-cfg["tail"]:])
set_result({"returncode": code})
"#;

impl Packages {
    async fn installer(&self) -> Result<Arc<Sandbox>, String> {
        self.installer
            .get_or_init(|| async {
                let helper = self.cfg.helper.clone().ok_or("no sandbox helper")?;
                let mut sc = SandboxConfig::new(helper);
                sc.python = self.cfg.python.clone();
                sc.slots = 1;
                sc.uid_base = self.cfg.uid_base;
                sc.limits = Limits {
                    memory_bytes: 4096 * 1024 * 1024,
                    cpu_seconds: self.cfg.timeout.as_secs() + 5,
                    max_processes: 256,
                    max_open_files: 1024,
                    max_file_bytes: self.cfg.disk_bytes,
                    scratch_bytes: self.cfg.disk_bytes,
                    output_bytes: 256 * 1024,
                };
                if let Some(f) = &self.cfg.find_links {
                    sc.readonly_paths.push(f.clone());
                }
                if let Some(dir) = self.cfg.uv.as_ref().and_then(|u| u.parent()) {
                    sc.readonly_paths.push(dir.to_path_buf());
                }
                sc.writable_paths.push(self.cfg.build_dir());
                if self.cfg.sandbox == SandboxMode::Permissive {
                    sc.allow_missing = Layer::ALL.to_vec();
                }
                crate::sandbox::start_tiers(sc, self.cfg.sandbox.tiers())
                    .await
                    .map(Arc::new)
                    .map_err(|e| format!("install {e}"))
            })
            .await
            .clone()
    }

    /// Rebuilds the environment from the stored list for install `id`.
    /// Runs the installer in the install sandbox; on success moves the result into
    /// `envs/<id>`. Errors carry (message, sanitized log).
    pub(super) async fn build(
        &self,
        id: &str,
        specs: &[String],
    ) -> Result<(PathBuf, String), (String, String)> {
        let sandbox = self.installer().await.map_err(|e| (e, String::new()))?;
        let work = self.cfg.build_dir().join(id);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).map_err(|e| {
            (
                format!("cannot create the build directory: {e}"),
                String::new(),
            )
        })?;
        if is_root() {
            let _ =
                std::os::unix::fs::chown(&work, Some(self.cfg.uid_base), Some(self.cfg.uid_base));
        }
        let target = work.join("site");
        let hosts = self.cfg.index_hosts();
        let job = self.install_job(&target, specs, !hosts.is_empty());
        let mut exec = sandbox
            .run(job)
            .await
            .map_err(|e| (format!("install sandbox failure: {e}"), String::new()))?;
        let proxy = match (hosts.is_empty(), exec.take_proxy()) {
            (false, Some(pending)) => self.start_egress(id, &hosts, pending),
            _ => None,
        };
        let outcome = loop {
            match exec.next_event().await {
                Event::Finished(o) => break o,
                Event::LlmRequest { request_id, .. } => {
                    let _ = exec.respond_llm(&request_id, "").await;
                }
            }
        };
        if let Some(stop) = proxy {
            stop.stop();
        }
        let log = self.check_outcome(&outcome, &target)?;
        let dest = self.cfg.envs_dir().join(id);
        std::fs::rename(&target, &dest).map_err(|e| {
            (
                format!("cannot move the environment into place: {e}"),
                log.clone(),
            )
        })?;
        Ok((dest, log))
    }

    /// The sandbox job that runs the installer into `target`.
    fn install_job(&self, target: &Path, specs: &[String], network: bool) -> Job {
        let mut env = BTreeMap::new();
        env.insert(
            "AIRLOCK_INSTALL".to_string(),
            serde_json::json!({
                "argv": self.argv(target, specs),
                "timeout": self.cfg.timeout.as_secs(),
                "tail": LOG_TAIL_BYTES,
            })
            .to_string(),
        );
        env.insert("UV_NO_CACHE".into(), "1".into());
        // The system's CA store (/etc/ssl is in the view), as pip and scripts use:
        // uv's bundled roots miss operator-added CAs. Both names (old and new uv).
        env.insert("UV_NATIVE_TLS".into(), "1".into());
        env.insert("UV_SYSTEM_CERTS".into(), "1".into());
        env.insert("PIP_NO_CACHE_DIR".into(), "1".into());
        Job {
            script: INSTALL_SCRIPT.into(),
            timeout: self.cfg.timeout + Duration::from_secs(30),
            env,
            network,
            ..Default::default()
        }
    }

    /// The installer's sanitized log, or why the install failed (with that log),
    /// including an environment larger than the disk limit.
    fn check_outcome(&self, outcome: &Outcome, target: &Path) -> Result<String, (String, String)> {
        let mut raw = String::from_utf8_lossy(&outcome.stdout).into_owned();
        raw.push_str(&String::from_utf8_lossy(&outcome.stderr));
        let log = self.sanitize(&raw, target);
        let code = outcome
            .result
            .as_ref()
            .and_then(|r| r.get("returncode"))
            .and_then(serde_json::Value::as_i64);
        if outcome.status != OutcomeStatus::Completed || code != Some(0) {
            let why = match (outcome.status, code) {
                (OutcomeStatus::Timeout, _) => "the installer timed out".to_string(),
                (_, Some(c)) => format!("the installer exited with status {c}"),
                _ => format!(
                    "the install sandbox failed: {}",
                    self.sanitize(outcome.error.as_deref().unwrap_or("unknown error"), target)
                ),
            };
            return Err((why, log));
        }
        let size = dir_size(target);
        if size > self.cfg.disk_bytes {
            return Err((
                format!(
                    "the environment needs {} MiB, more than AIRLOCK_PIP_DISK_MB allows",
                    size / (1024 * 1024)
                ),
                log,
            ));
        }
        Ok(log)
    }

    fn argv(&self, target: &Path, specs: &[String]) -> Vec<String> {
        let t = target.display().to_string();
        let mut a: Vec<String> = match &self.cfg.uv {
            Some(uv) => vec![
                uv.display().to_string(),
                "pip".into(),
                "install".into(),
                "--no-config".into(),
                "--no-cache".into(),
                "--link-mode".into(),
                "copy".into(),
                "--python".into(),
                self.cfg.python.display().to_string(),
                "--target".into(),
                t,
            ],
            None => vec![
                self.cfg.python.display().to_string(),
                "-m".into(),
                "pip".into(),
                "install".into(),
                "--isolated".into(),
                "--no-cache-dir".into(),
                "--disable-pip-version-check".into(),
                "--no-input".into(),
                "--no-warn-script-location".into(),
                "--target".into(),
                t,
            ],
        };
        match &self.cfg.index_url {
            Some(u) => {
                a.push("--index-url".into());
                a.push(u.clone());
            }
            None => a.push("--no-index".into()),
        }
        if let Some(f) = &self.cfg.find_links {
            a.push("--find-links".into());
            a.push(f.display().to_string());
        }
        a.push("--".into());
        a.extend(specs.iter().cloned());
        a
    }

    /// Keeps installer output free of host paths and index credentials.
    fn sanitize(&self, text: &str, target: &Path) -> String {
        let mut s = text.replace(&target.display().to_string(), "<env>");
        if let Some(u) = &self.cfg.index_url {
            s = s.replace(u.as_str(), &redact_url(u));
        }
        if let Some(f) = &self.cfg.find_links {
            s = s.replace(&f.display().to_string(), "<find-links>");
        }
        s = s.replace(&self.cfg.root.display().to_string(), "<packages>");
        s = s.replace(&self.cfg.data_dir.display().to_string(), "<data-dir>");
        if s.len() > LOG_TAIL_BYTES {
            let mut cut = s.len() - LOG_TAIL_BYTES;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s = s[cut..].to_string();
        }
        s
    }

    /// The egress proxy for one install: only the index hosts; attempts are logged
    /// under the install's id.
    fn start_egress(
        &self,
        id: &str,
        hosts: &[String],
        pending: airlock_sandbox::PendingProxy,
    ) -> Option<airlock_egress::Stopper> {
        let policy = airlock_egress::Policy::from_allowed_hosts(&Some(hosts.to_vec()))?;
        let cfg = airlock_egress::EgressConfig {
            record: airlock_egress::Record::Off,
            replay: None,
            policy,
            limits: airlock_egress::EgressLimits::default(),
            hook: Arc::new(airlock_egress::NoHook),
            tls: None,
            tcp: Vec::new(),
        };
        let span = tracing::info_span!("egress", install = %id);
        let session = span.in_scope(|| {
            airlock_egress::Session::start(cfg, airlock_egress::Listen::later(pending.listener()))
        });
        let (stop, events) = session.split();
        // The installer holds no credential, but its request lines come from build
        // code: the method is recorded only as a plain token.
        crate::egress_log::spawn_writer(
            self.store.clone(),
            id.to_string(),
            events,
            None,
            None,
            None,
        );
        Some(stop)
    }
}

/// Whether the server runs as root (the owner of `/proc/self` is the effective uid;
/// this crate has no `unsafe` for `geteuid`).
pub(super) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

//! Per-slot cgroups: a memory limit for a whole execution tree, and OOM accounting.
//!
//! RLIMIT_AS bounds each process, not the tree (a script with 60 processes could use 60
//! times the limit). When the server may create cgroups (root, cgroup v1 memory/pids
//! controllers, or a delegated v2 subtree), every slot's helper is moved into its own
//! cgroup, nested under the server's own cgroup, with `memory_bytes` plus a fixed
//! allowance for the zygote. Only one execution runs per slot at a time, so this is a
//! per-execution limit. The kernel's OOM kill counter tells the runner that a SIGKILL
//! was the memory limit. This layer is best effort and reported as `cgroup`.

use std::path::{Path, PathBuf};

/// Room for the zygote and the pre-forked spare, on top of the execution's budget.
pub(crate) const ZYGOTE_ALLOWANCE: u64 = 160 << 20;

#[derive(Debug)]
pub(crate) struct SlotCgroup {
    /// Directories whose `cgroup.procs` the helper joins.
    dirs: Vec<PathBuf>,
    /// File with an `oom_kill N` line.
    oom_file: PathBuf,
}

fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

fn v2_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

fn join(base: &str, rel: &str) -> PathBuf {
    Path::new(base).join(rel.trim_start_matches('/'))
}

/// Removes `airlock-<pid>-<n>` cgroups left behind by servers that no longer run.
fn cleanup_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("airlock-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(slots) = std::fs::read_dir(e.path()) {
            for s in slots.flatten().filter(|s| s.path().is_dir()) {
                let _ = std::fs::remove_dir(s.path());
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn write(p: &Path, v: &str) -> std::io::Result<()> {
    std::fs::write(p, v)
}

impl SlotCgroup {
    /// Creates (or reuses) the slot's cgroup. `None` when cgroups cannot be used.
    pub(crate) fn create(
        tag: &str,
        slot: usize,
        memory: u64,
        pids: u64,
    ) -> Result<SlotCgroup, String> {
        let limit = memory + ZYGOTE_ALLOWANCE;
        let name = format!("{tag}/slot-{slot}");
        // cgroup v1: separate memory and pids hierarchies.
        let v1_mem = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
        if v1_mem {
            let own = own_path("memory").ok_or("no memory cgroup in /proc/self/cgroup")?;
            cleanup_stale(&join("/sys/fs/cgroup/memory", &own));
            let dir = join("/sys/fs/cgroup/memory", &own).join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            // Swap counts too when the kernel accounts it.
            write(&dir.join("memory.limit_in_bytes"), &limit.to_string())
                .map_err(|e| format!("memory.limit_in_bytes: {e}"))?;
            let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &limit.to_string());
            let _ = write(&dir.join("memory.swappiness"), "0");
            let mut dirs = vec![dir.clone()];
            if let Some(own) = own_path("pids") {
                cleanup_stale(&join("/sys/fs/cgroup/pids", &own));
                let pdir = join("/sys/fs/cgroup/pids", &own).join(&name);
                if std::fs::create_dir_all(&pdir).is_ok()
                    && write(&pdir.join("pids.max"), &(pids + 16).to_string()).is_ok()
                {
                    dirs.push(pdir);
                }
            }
            return Ok(SlotCgroup {
                dirs,
                oom_file: dir.join("memory.oom_control"),
            });
        }
        // cgroup v2: needs a subtree where memory is delegated to us.
        let own = v2_path().ok_or("no cgroup v2 entry")?;
        let base = join("/sys/fs/cgroup", &own);
        cleanup_stale(&base);
        let parent = base.join(tag);
        std::fs::create_dir_all(&parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        write(&parent.join("cgroup.subtree_control"), "+memory +pids")
            .map_err(|e| format!("enabling memory controller: {e}"))?;
        let dir = parent.join(format!("slot-{slot}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        write(&dir.join("memory.max"), &limit.to_string())
            .map_err(|e| format!("memory.max: {e}"))?;
        let _ = write(&dir.join("memory.swap.max"), "0");
        let _ = write(&dir.join("pids.max"), &(pids + 16).to_string());
        Ok(SlotCgroup {
            dirs: vec![dir.clone()],
            oom_file: dir.join("memory.events"),
        })
    }

    /// Moves a (not yet forked) helper into the slot's cgroups.
    pub(crate) fn attach(&self, pid: u32) -> std::io::Result<()> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer fired in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(&self.oom_file)
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Removes the cgroup directories from a background thread, retrying while the
    /// slot's last processes finish dying.
    pub(crate) fn remove_later(self: &std::sync::Arc<Self>) {
        let me = self.clone();
        std::thread::spawn(move || {
            for _ in 0..40 {
                me.remove();
                if me.dirs.iter().all(|d| !d.exists()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
    }

    /// Removes the cgroup directories (they must be empty of processes).
    pub(crate) fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

//! What a slot's helper must build, computed by the server before launching it.
//!
//! Keeping the plan pure (paths in, entries out) means the filesystem view and the
//! Landlock allow-lists can be unit-tested without namespaces, and the helper only has
//! to carry the plan out. The plan travels to the helper as JSON on its control socket.

use crate::config::{Layer, Limits, Tier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One entry of the sandbox's root filesystem (a fresh tmpfs, later read-only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ViewEntry {
    /// An empty directory (mount point for /proc, /tmp, /dev/shm ...).
    Dir { path: PathBuf },
    /// A read-only bind mount of a host path at the same or another path.
    Bind {
        src: PathBuf,
        dst: PathBuf,
        dir: bool,
    },
    /// A host directory seen read-only at `dst` through an overlay whose only trace in
    /// `/proc/self/mountinfo` is a staging path: a bind mount would show the host path
    /// as its root there.
    Hidden { src: PathBuf, dst: PathBuf },
    /// A writable bind mount of a host directory at the same path (nosuid, nodev).
    /// Only used for an operator-chosen directory such as a package build dir.
    BindRw { src: PathBuf },
    /// A bind mount of a host character device (writable, nosuid, noexec).
    Device { src: PathBuf },
    /// A symlink copied from the host (merged /usr, /etc/localtime ...).
    Symlink { target: PathBuf, dst: PathBuf },
    /// A small synthesized file (passwd, hosts ...).
    File { dst: PathBuf, contents: String },
}

/// What the server learned about the configured interpreter by running it once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PythonInfo {
    pub version: (u32, u32),
    pub executable: PathBuf,
    pub prefixes: Vec<PathBuf>,
    pub libpython: Option<PathBuf>,
}

/// Everything one slot's helper needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HelperConfig {
    pub slot: usize,
    pub server_pid: i32,
    pub uid: u32,
    pub gid: u32,
    pub drop_uid: bool,
    pub python: PythonInfo,
    pub cold: bool,
    pub python_paths: Vec<PathBuf>,
    /// Modules the warm zygote imports at start, after the standard ones.
    #[serde(default)]
    pub preimport: Vec<String>,
    pub view: Vec<ViewEntry>,
    pub landlock: LandlockPaths,
    pub limits: Limits,
    pub allow_missing: Vec<Layer>,
    #[serde(default)]
    pub tier: Tier,
    /// Container tier: the slot's own scratch directory (owned by the slot's uid, mode
    /// 0700); each execution works in a fresh directory below it.
    #[serde(default)]
    pub scratch: Option<PathBuf>,
}

/// Landlock allow-lists (paths inside the sandbox's view).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct LandlockPaths {
    /// Read + execute.
    pub read_exec: Vec<PathBuf>,
    /// Read only (no execute): /proc, random devices.
    pub read: Vec<PathBuf>,
    /// Full access: the scratch dirs.
    pub read_write: Vec<PathBuf>,
    /// Read + write of existing files only: /dev/null and friends.
    pub devices_rw: Vec<PathBuf>,
}

/// System directories made visible read-only (as symlinks when they are symlinks).
pub(crate) const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Pieces of /etc a Python process needs; nothing else of /etc is visible.
pub(crate) const ETC_ENTRIES: &[&str] = &[
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
    "/etc/protocols",
    "/etc/services",
    "/etc/alternatives",
    "/etc/host.conf",
    "/etc/gai.conf",
];

pub(crate) const RW_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];
pub(crate) const RO_DEVICES: &[&str] = &["/dev/random", "/dev/urandom"];

/// Host filesystem facts the view builder needs (a trait so tests can fake them).
pub(crate) trait HostFs {
    /// `Some(target)` if `p` is a symlink.
    fn symlink(&self, p: &Path) -> Option<PathBuf>;
    fn is_dir(&self, p: &Path) -> bool;
    fn exists(&self, p: &Path) -> bool;
    fn canonical(&self, p: &Path) -> Option<PathBuf>;
}

pub(crate) struct RealFs;

impl HostFs for RealFs {
    fn symlink(&self, p: &Path) -> Option<PathBuf> {
        let m = std::fs::symlink_metadata(p).ok()?;
        if m.file_type().is_symlink() {
            std::fs::read_link(p).ok()
        } else {
            None
        }
    }
    fn is_dir(&self, p: &Path) -> bool {
        p.is_dir()
    }
    fn exists(&self, p: &Path) -> bool {
        std::fs::symlink_metadata(p).is_ok()
    }
    fn canonical(&self, p: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(p).ok()
    }
}

/// An empty directory of the view, the mount point of a supervisor's staging tmpfs.
pub(crate) const STAGING_DIR: &str = "/run/airlock";

/// Builds the view and Landlock lists. `extra_ro` are operator paths (venvs, ...),
/// bound at their own path; `mounts` are (host directory, neutral inside path) pairs.
pub(crate) fn build_view(
    fs: &dyn HostFs,
    python: &PythonInfo,
    extra_ro: &[PathBuf],
    mounts: &[(PathBuf, PathBuf)],
    uid: u32,
    gid: u32,
) -> (Vec<ViewEntry>, LandlockPaths) {
    let mut view = Vec::new();
    let mut ll = LandlockPaths::default();
    // Canonical host paths already bound, to skip paths they cover.
    let mut covered: Vec<PathBuf> = Vec::new();

    for d in SYSTEM_DIRS {
        let p = Path::new(d);
        if let Some(target) = fs.symlink(p) {
            view.push(ViewEntry::Symlink {
                target,
                dst: p.to_path_buf(),
            });
        } else if fs.is_dir(p) {
            view.push(ViewEntry::Bind {
                src: p.to_path_buf(),
                dst: p.to_path_buf(),
                dir: true,
            });
            covered.push(fs.canonical(p).unwrap_or_else(|| p.to_path_buf()));
            ll.read_exec.push(p.to_path_buf());
        }
    }

    view.push(ViewEntry::Dir {
        path: "/etc".into(),
    });
    for e in ETC_ENTRIES {
        let p = Path::new(e);
        if let Some(target) = fs.symlink(p) {
            view.push(ViewEntry::Symlink {
                target,
                dst: p.to_path_buf(),
            });
        } else if fs.exists(p) {
            view.push(ViewEntry::Bind {
                src: p.to_path_buf(),
                dst: p.to_path_buf(),
                dir: fs.is_dir(p),
            });
        }
    }
    let files: [(&str, String); 5] = [
        (
            "/etc/passwd",
            format!("airlock:x:{uid}:{gid}:airlock:/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        ("/etc/group", format!("airlock:x:{gid}:\nnogroup:x:65534:\n")),
        ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n".to_string()),
        ("/etc/hostname", "airlock\n".to_string()),
        ("/etc/resolv.conf", String::new()),
    ];
    for (dst, contents) in files {
        view.push(ViewEntry::File {
            dst: dst.into(),
            contents,
        });
    }
    ll.read_exec.push("/etc".into());

    view.push(ViewEntry::Dir {
        path: "/dev".into(),
    });
    for d in RW_DEVICES.iter().chain(RO_DEVICES) {
        if fs.exists(Path::new(d)) {
            view.push(ViewEntry::Device { src: d.into() });
        }
    }
    ll.devices_rw.extend(RW_DEVICES.iter().map(PathBuf::from));
    ll.read.extend(RO_DEVICES.iter().map(PathBuf::from));
    view.push(ViewEntry::Dir {
        path: "/dev/shm".into(),
    });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        view.push(ViewEntry::Symlink {
            target: target.into(),
            dst: Path::new("/dev").join(name),
        });
    }
    view.push(ViewEntry::Dir {
        path: "/proc".into(),
    });
    ll.read.push("/proc".into());
    view.push(ViewEntry::Dir {
        path: "/tmp".into(),
    });
    // Where an execution's supervisor stages files it then binds read-only into the
    // view (the job's /etc/hosts); empty, and not in any Landlock list.
    view.push(ViewEntry::Dir {
        path: STAGING_DIR.into(),
    });
    ll.read_write.push("/tmp".into());
    ll.read_write.push("/dev/shm".into());

    // The interpreter's own prefixes, then operator paths, unless already covered.
    let mut wanted: Vec<PathBuf> = python.prefixes.clone();
    if let Some(dir) = python.executable.parent() {
        wanted.push(dir.to_path_buf());
    }
    if let Some(dir) = python.libpython.as_ref().and_then(|l| l.parent()) {
        wanted.push(dir.to_path_buf());
    }
    wanted.extend(extra_ro.iter().cloned());
    for p in wanted {
        let Some(canon) = fs.canonical(&p) else {
            continue;
        };
        if covered.iter().any(|c| canon.starts_with(c)) {
            continue;
        }
        view.push(ViewEntry::Bind {
            src: canon.clone(),
            dst: canon.clone(),
            dir: fs.is_dir(&canon),
        });
        ll.read_exec.push(canon.clone());
        covered.push(canon);
    }
    for (host, inside) in mounts {
        let Some(canon) = fs.canonical(host) else {
            continue;
        };
        view.push(ViewEntry::Hidden {
            src: canon,
            dst: inside.clone(),
        });
        ll.read_exec.push(inside.clone());
    }
    (view, ll)
}

/// The Landlock allow-lists of the container tier, where there is no view to build:
/// the script sees the host's (container's) filesystem through Landlock alone, so the
/// lists name host paths, and only paths that exist (a rule needs an open inode). The
/// execution's scratch directory is added by the script process itself, and so is
/// `/proc/self` (a rule binds to the inode it names when it is made: made in the
/// script process, it is that process's own directory and no other's).
pub(crate) fn container_landlock(
    fs: &dyn HostFs,
    python: &PythonInfo,
    extra_ro: &[PathBuf],
    mounts: &[(PathBuf, PathBuf)],
    writable: &[PathBuf],
) -> LandlockPaths {
    let mut ll = LandlockPaths::default();
    let push = |list: &mut Vec<PathBuf>, p: &Path| {
        if let Some(c) = fs.canonical(p) {
            if !list.contains(&c) {
                list.push(c);
            }
        }
    };
    for d in SYSTEM_DIRS {
        push(&mut ll.read_exec, Path::new(d));
    }
    let mut wanted: Vec<PathBuf> = python.prefixes.clone();
    wanted.extend(python.executable.parent().map(Path::to_path_buf));
    wanted.extend(
        python
            .libpython
            .as_ref()
            .and_then(|l| l.parent())
            .map(Path::to_path_buf),
    );
    wanted.extend(extra_ro.iter().cloned());
    wanted.extend(mounts.iter().map(|(host, _)| host.clone()));
    for p in &wanted {
        push(&mut ll.read_exec, p);
    }
    for e in ETC_ENTRIES {
        push(&mut ll.read, Path::new(e));
    }
    for d in RO_DEVICES {
        push(&mut ll.read, Path::new(d));
    }
    for d in RW_DEVICES {
        push(&mut ll.devices_rw, Path::new(d));
    }
    for d in writable {
        push(&mut ll.read_write, d);
    }
    ll
}

/// Adds writable binds of `dirs` (host paths, bound at the same path) to a view.
pub(crate) fn add_writable(
    fs: &dyn HostFs,
    dirs: &[PathBuf],
    view: &mut Vec<ViewEntry>,
    ll: &mut LandlockPaths,
) {
    for d in dirs {
        let Some(canon) = fs.canonical(d) else {
            continue;
        };
        view.push(ViewEntry::BindRw { src: canon.clone() });
        ll.read_write.push(canon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    struct FakeFs {
        links: BTreeMap<PathBuf, PathBuf>,
        dirs: BTreeSet<PathBuf>,
        files: BTreeSet<PathBuf>,
    }

    impl HostFs for FakeFs {
        fn symlink(&self, p: &Path) -> Option<PathBuf> {
            self.links.get(p).cloned()
        }
        fn is_dir(&self, p: &Path) -> bool {
            self.dirs.contains(p)
        }
        fn exists(&self, p: &Path) -> bool {
            self.dirs.contains(p) || self.files.contains(p) || self.links.contains_key(p)
        }
        fn canonical(&self, p: &Path) -> Option<PathBuf> {
            if let Ok(rest) = p.strip_prefix("/lib") {
                return Some(Path::new("/usr/lib").join(rest));
            }
            self.exists(p).then(|| p.to_path_buf())
        }
    }

    fn fake() -> FakeFs {
        FakeFs {
            links: [
                ("/lib", "usr/lib"),
                ("/bin", "usr/bin"),
                ("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            ]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
            dirs: [
                "/usr",
                "/etc/ssl",
                "/opt/venv",
                "/usr/lib/python3.11",
                "/root/secret",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            files: [
                "/etc/ld.so.cache",
                "/dev/null",
                "/dev/urandom",
                "/etc/shadow",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        }
    }

    fn py() -> PythonInfo {
        PythonInfo {
            version: (3, 11),
            executable: "/usr/bin/python3.11".into(),
            prefixes: vec!["/usr".into()],
            libpython: Some("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0".into()),
        }
    }

    #[test]
    fn view_has_system_dirs_and_only_listed_etc() {
        let (view, ll) = build_view(
            &fake(),
            &py(),
            &["/opt/venv".into(), "/lib/python3.11".into()],
            &[("/opt/venv".into(), "/airlock/packages".into())],
            7,
            8,
        );
        // A mount is bound at its inside path and readable there under Landlock.
        assert!(view.contains(&ViewEntry::Hidden {
            src: "/opt/venv".into(),
            dst: "/airlock/packages".into(),
        }));
        assert!(ll.read_exec.contains(&PathBuf::from("/airlock/packages")));
        assert!(view.contains(&ViewEntry::Bind {
            src: "/usr".into(),
            dst: "/usr".into(),
            dir: true
        }));
        assert!(view.contains(&ViewEntry::Symlink {
            target: "usr/lib".into(),
            dst: "/lib".into()
        }));
        assert!(view.contains(&ViewEntry::Symlink {
            target: "/usr/share/zoneinfo/Etc/UTC".into(),
            dst: "/etc/localtime".into()
        }));
        // Nothing else of /etc, /root or the host's /tmp is bound.
        let binds: Vec<&PathBuf> = view
            .iter()
            .filter_map(|e| match e {
                ViewEntry::Bind { src, .. } => Some(src),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            vec![
                &PathBuf::from("/usr"),
                &PathBuf::from("/etc/ssl"),
                &PathBuf::from("/etc/ld.so.cache"),
                &PathBuf::from("/opt/venv")
            ]
        );
        assert!(ll.read_exec.contains(&PathBuf::from("/opt/venv")));
        assert_eq!(
            ll.read_write,
            vec![PathBuf::from("/tmp"), PathBuf::from("/dev/shm")]
        );
        assert!(view.iter().any(|e| matches!(e, ViewEntry::File { dst, contents } if dst == Path::new("/etc/passwd") && contents.starts_with("airlock:x:7:8:"))));
    }

    #[test]
    fn container_lists_name_only_existing_host_paths() {
        let ll = container_landlock(
            &fake(),
            &py(),
            &["/opt/venv".into(), "/nope".into()],
            &[("/opt/venv".into(), "/airlock/packages".into())],
            &["/usr/lib/python3.11".into()],
        );
        // /lib resolves into /usr/lib; /opt/venv once although listed twice; nothing
        // that does not exist, nothing of /root, no /etc as a whole, no /tmp or /proc.
        assert_eq!(
            ll.read_exec,
            vec![
                PathBuf::from("/usr"),
                PathBuf::from("/bin"),
                PathBuf::from("/usr/lib"),
                PathBuf::from("/opt/venv"),
            ]
        );
        assert_eq!(
            ll.read,
            vec![
                PathBuf::from("/etc/ssl"),
                PathBuf::from("/etc/ld.so.cache"),
                PathBuf::from("/etc/localtime"),
                PathBuf::from("/dev/urandom"),
            ]
        );
        assert_eq!(ll.devices_rw, vec![PathBuf::from("/dev/null")]);
        assert_eq!(ll.read_write, vec![PathBuf::from("/usr/lib/python3.11")]);
    }

    #[test]
    fn writable_dirs_are_bound_rw_and_landlock_writable() {
        let (mut view, mut ll) = build_view(&fake(), &py(), &[], &[], 7, 8);
        add_writable(
            &fake(),
            &["/opt/venv".into(), "/does/not/exist".into()],
            &mut view,
            &mut ll,
        );
        let rw: Vec<&ViewEntry> = view
            .iter()
            .filter(|e| matches!(e, ViewEntry::BindRw { .. }))
            .collect();
        assert_eq!(
            rw,
            vec![&ViewEntry::BindRw {
                src: "/opt/venv".into()
            }]
        );
        assert_eq!(
            ll.read_write,
            vec![
                PathBuf::from("/tmp"),
                PathBuf::from("/dev/shm"),
                PathBuf::from("/opt/venv")
            ]
        );
    }
}

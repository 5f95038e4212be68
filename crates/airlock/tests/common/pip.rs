//! Python distributions for scripts in the tests (psycopg for the database suite,
//! numpy for the determinism one): installed once with pip (from PyPI, or pip's
//! configured index) into `/var/tmp/airlock-test-python/<spec>` — never under /tmp,
//! which the sandbox replaces — shared by every checkout, readable by the sandbox's
//! slot uids. A directory for `AIRLOCK_PYTHON_PATHS`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

pub fn installed(spec: &str) -> PathBuf {
    let root = PathBuf::from("/var/tmp/airlock-test-python");
    std::fs::create_dir_all(&root).unwrap();
    let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
    let name = spec.replace(['[', ']', '='], "-");
    let dir = root.join(&name);
    // Test binaries run in parallel: one installs, the others wait for its marker.
    let marker = dir.join(".installed");
    let lockfile = std::fs::File::create(root.join(format!(".{name}.lock"))).unwrap();
    lockfile.lock().unwrap();
    if !marker.exists() {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--target",
            ])
            .arg(&dir)
            .arg(spec)
            .output()
            .expect("python3 -m pip");
        assert!(
            out.status.success(),
            "installing {spec} for the tests failed (pip needs PyPI or a configured index): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&marker, spec).unwrap();
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    dir
}

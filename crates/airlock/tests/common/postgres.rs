//! A real PostgreSQL server for one test: `initdb` in a temporary directory (as the
//! `postgres` account when the tests run as root, which `initdb` refuses), on a free
//! loopback port, TLS with a certificate for `localhost` signed by a test CA,
//! SCRAM-SHA-256 for password users (md5 for the role `md5user`); stopped when
//! dropped. And psycopg 3 (with its bundled libpq) for scripts, installed once into
//! `/var/tmp/airlock-test-python`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub port: u16,
    /// The PEM of the CA that signed the server's certificate (for `localhost`).
    pub ca_pem: String,
    /// The superuser `postgres`'s password.
    pub superpass: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

/// Reports that PostgreSQL cannot run here: a loud `SKIPPED` line, or a failure when
/// the run requires it (`AIRLOCK_TEST_REQUIRE_POSTGRES=1`, as `.ci/run` sets).
fn unavailable(reason: &str) -> Option<Postgres> {
    if std::env::var_os("AIRLOCK_TEST_REQUIRE_POSTGRES").is_some_and(|v| v == "1") {
        panic!("PostgreSQL is unavailable, and AIRLOCK_TEST_REQUIRE_POSTGRES=1: {reason}");
    }
    eprintln!("SKIPPED: PostgreSQL is unavailable here: {reason}");
    None
}

/// The directory of `initdb` and `pg_ctl` (Debian's `postgresql` package).
fn bindir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bindir() else {
            return unavailable("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)");
        };
        let as_postgres = super::running_as_root();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let superpass = "pg-superuser-secret-91".to_string();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &superpass).unwrap();
        // The server's certificate for `localhost`, signed by a fresh CA.
        let (cert_pem, key_pem, ca_pem) =
            super::test_cert("localhost", "Airlock PostgreSQL test CA");
        std::fs::write(dir.path().join("server.crt"), cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), key_pem).unwrap();
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let pg = Postgres {
            port,
            ca_pem,
            superpass,
            bin,
            dir,
            as_postgres,
        };
        if as_postgres {
            let Some((uid, gid)) = postgres_account() else {
                return unavailable(
                    "running as root, and there is no postgres account to run the server as",
                );
            };
            for p in [
                pg.dir.path().to_path_buf(),
                pwfile.clone(),
                pg.dir.path().join("server.crt"),
                pg.dir.path().join("server.key"),
            ] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "scram-sha-256",
                "-U",
                "postgres",
                "--pwfile",
                pwfile.to_str().unwrap(),
            ],
        );
        let d = pg.dir.path().display().to_string();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\nssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\npassword_encryption = 'scram-sha-256'\nmax_connections = 50\nfsync = off\n"
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "host all md5user 127.0.0.1/32 md5\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                &format!("{d}/log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Some(pg)
    }

    /// `tool` of the server's bin directory, run as the `postgres` account when the
    /// tests run as root.
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let prog = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        c.args(args);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL as the superuser (through TCP, with its password).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
            .env("PGPASSWORD", &self.superpass)
            .env("PGSSLMODE", "disable")
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server (as a test of "the database is down" can).
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn running(&self) -> bool {
        self.dir.path().join("data/postmaster.pid").exists()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running() {
            let data = self.dir.path().join("data");
            let args = [
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ];
            let _ = self.command("pg_ctl", &args).output();
        }
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn postgres_account() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The psycopg version the tests (and `.ci/run`) install.
pub const PSYCOPG: &str = "psycopg[binary]==3.3.9";

/// A directory holding psycopg 3 for the sandbox's `AIRLOCK_PYTHON_PATHS`
/// ([`super::pip::installed`]), or taken from `AIRLOCK_TEST_PSYCOPG_DIR`.
pub fn psycopg_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AIRLOCK_TEST_PSYCOPG_DIR") {
        return PathBuf::from(d);
    }
    super::pip::installed(PSYCOPG)
}

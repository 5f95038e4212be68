//! Runtime configuration, from flags and `AIRLOCK_*` environment variables.
//!
//! The struct is plain data so tests build it directly with
//! [`Config::for_data_dir`] instead of touching the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

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
}

impl Config {
    /// Defaults with the given data directory; what tests use.
    pub fn for_data_dir(path: &Path) -> Config {
        Config {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: path.to_path_buf(),
            master_key_file: None,
            public_url: None,
            max_body_bytes: 1024 * 1024,
        }
    }

    /// Where the master key lives.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("airlock.db")
    }

    /// The public URL without a trailing slash, if configured.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

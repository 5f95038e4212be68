//! TLS: the per-instance CA, leaf certificates, the upstream verifier, and the
//! public bundle scripts trust.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls;

/// Errors preparing TLS interception. Never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("egress CA: {0}")]
    Ca(String),
    #[error("egress CA bundle {path}: {why}")]
    Bundle { path: String, why: String },
}

/// Leaves are valid 30 days; one is reused for a week at most, so a long-running
/// server never presents an expired one.
const LEAF_REUSE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// Leaves kept in memory at most (the oldest goes first).
const MAX_LEAVES: usize = 1024;

/// The per-instance CA and the TLS configurations built from it.
pub struct EgressTls {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    /// Minted leaves by host, with when they were minted.
    leaves: Mutex<HashMap<String, (std::time::Instant, Arc<rustls::ServerConfig>)>>,
    upstream: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for EgressTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressTls").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The instance CA's certificate and private key, PEM-encoded: what the server
/// persists (the key sealed) to use the same CA across restarts.
pub struct CaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial").finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// A new self-signed CA (valid ten years, no intermediates below it).
    pub fn generate() -> Result<CaMaterial, TlsError> {
        let ca_err = |e: &dyn std::fmt::Display| TlsError::Ca(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(|e| ca_err(&e))?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| ca_err(&e))?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Airlock egress CA");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Airlock instance");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).map_err(|e| ca_err(&e))?;
        Ok(CaMaterial {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl EgressTls {
    /// The TLS configurations of the CA in `ca`. `extra_roots` is an optional PEM
    /// bundle trusted upstream in addition to the public roots.
    pub fn from_pem(ca: CaMaterial, extra_roots: Option<&Path>) -> Result<EgressTls, TlsError> {
        let ca_err = |e: &dyn std::fmt::Display| TlsError::Ca(e.to_string());
        let CaMaterial { cert_pem, key_pem } = ca;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| ca_err(&e))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| ca_err(&e))?;
        Ok(EgressTls {
            issuer,
            ca_pem: cert_pem,
            leaves: Mutex::new(HashMap::new()),
            upstream: Arc::new(upstream_config(extra_roots)?),
        })
    }

    /// The CA certificate (PEM) the sandbox trusts.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A server configuration presenting a leaf certificate for `host` (a name or an
    /// IP literal without brackets), minted on first use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.server_config_at(host, std::time::Instant::now())
    }

    fn server_config_at(
        &self,
        host: &str,
        at: std::time::Instant,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let fresh =
            |minted: &std::time::Instant| at.saturating_duration_since(*minted) < LEAF_REUSE;
        if let Some((minted, c)) = self.leaves.lock().get(host) {
            if fresh(minted) {
                return Ok(c.clone());
            }
        }
        let err = |e: &dyn std::fmt::Display| TlsError::Ca(format!("leaf for {host}: {e}"));
        let key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec![host.to_string()]).map_err(|e| err(&e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&key, &self.issuer).map_err(|e| err(&e))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(&e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .map_err(|e| err(&e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let mut cache = self.leaves.lock();
        cache.retain(|_, (minted, _)| fresh(minted));
        if cache.len() >= MAX_LEAVES {
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (minted, _))| *minted)
                .map(|(h, _)| h.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(host.to_string(), (at, cfg.clone()));
        Ok(cfg)
    }

    /// The client configuration for upstream connections (full verification).
    pub fn upstream(&self) -> Arc<rustls::ClientConfig> {
        self.upstream.clone()
    }
}

fn upstream_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        let bundle_err = |why: String| TlsError::Bundle {
            path: path.display().to_string(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| bundle_err(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bundle_err(e.to_string()))?;
            roots.add(cert).map_err(|e| bundle_err(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bundle_err("no PEM certificate in the file".into()));
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Where the system's CA bundle usually is; the sandbox bundle starts with it.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The subdirectory of `AIRLOCK_EGRESS_CA_DIR` that holds the PEM files and nothing
/// else; only it is made visible in the sandbox.
pub const BUNDLE_SUBDIR: &str = "airlock-egress-ca";

const BUNDLE_FILES: [&str; 2] = ["airlock-ca.pem", "ca-bundle.pem"];

/// Writes `<dir>/airlock-egress-ca/ca-bundle.pem` (system roots + the Airlock CA) and
/// `.../airlock-ca.pem`, world-readable, in a subdirectory of its own that holds
/// nothing else; returns the bundle's path. `dir` itself is only created when
/// missing, never re-permissioned.
pub fn write_bundle(dir: &Path, ca_pem: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let sub = dir.join(BUNDLE_SUBDIR);
    match std::fs::symlink_metadata(&sub) {
        Ok(m) if !m.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a directory",
                sub.display()
            )))
        }
        Ok(_) => {}
        Err(_) => std::fs::create_dir(&sub)?,
    }
    for entry in std::fs::read_dir(&sub)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let ours = BUNDLE_FILES
            .iter()
            .any(|f| name == *f || name == format!(".{f}.tmp"));
        if !ours {
            return Err(std::io::Error::other(format!(
                "{} holds {name}: it must hold only Airlock's PEM files (it is visible to every script)",
                sub.display()
            )));
        }
    }
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755))?;
    let mut bundle = SYSTEM_BUNDLES
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str("# Airlock egress CA (this instance)\n");
    bundle.push_str(ca_pem);
    let write = |name: &str, text: &str| -> std::io::Result<PathBuf> {
        let path = sub.join(name);
        let tmp = sub.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    };
    write(BUNDLE_FILES[0], ca_pem)?;
    write(BUNDLE_FILES[1], &bundle)
}

/// Why `dir` must not hold the public CA bundle, if it must not: it is visible to
/// every script, so it may not be (or contain, or lie inside) the data directory or
/// the master key, nor lie under /tmp. Paths are compared canonicalised (symlinks
/// resolved); `dir` need not exist yet.
pub fn ca_dir_problem(dir: &Path, data_dir: &Path, key_file: &Path) -> Option<String> {
    let canon = |p: &Path| -> PathBuf {
        // The deepest existing ancestor, resolved, plus the rest as written.
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut base = abs.clone();
        let mut rest = Vec::new();
        loop {
            if let Ok(c) = base.canonicalize() {
                return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
            }
            match (
                base.file_name().map(std::ffi::OsStr::to_os_string),
                base.parent(),
            ) {
                (Some(n), Some(parent)) => {
                    rest.push(n);
                    base = parent.to_path_buf();
                }
                _ => return abs,
            }
        }
    };
    let (dir, data, key) = (canon(dir), canon(data_dir), canon(key_file));
    if dir.starts_with(&data) {
        return Some(format!(
            "{} is the data directory or inside it",
            dir.display()
        ));
    }
    if data.starts_with(&dir) {
        return Some(format!("{} contains the data directory", dir.display()));
    }
    if key.starts_with(&dir) {
        return Some(format!("{} contains the master key file", dir.display()));
    }
    let tmp = canon(Path::new("/tmp"));
    if dir.starts_with(&tmp) || dir.starts_with("/tmp") {
        return Some(format!(
            "{} is under /tmp (each execution gets its own empty /tmp)",
            dir.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_dir_stays_away_from_the_data_dir_and_the_key() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let data = r.join("srv/data");
        std::fs::create_dir_all(&data).unwrap();
        let key = r.join("keys/master.key");
        std::fs::create_dir_all(r.join("keys")).unwrap();
        std::fs::write(&key, "k").unwrap();
        let bad = |d: PathBuf| ca_dir_problem(&d, &data, &key);
        // The test root itself lives under /tmp: check the relations, not /tmp, with
        // a copy of the layout outside it where possible.
        let inside = "is the data directory or inside it";
        assert!(bad(data.clone()).unwrap().ends_with(inside));
        assert!(bad(data.join("pub")).unwrap().ends_with(inside));
        assert!(bad(r.join("srv"))
            .unwrap()
            .ends_with("contains the data directory"));
        assert!(bad(PathBuf::from("/"))
            .unwrap()
            .ends_with("contains the data directory"));
        assert!(bad(r.join("keys"))
            .unwrap()
            .ends_with("contains the master key file"));
        assert!(bad(r.join("elsewhere")).unwrap().contains("under /tmp"));
        // Through a symlink to the data directory.
        std::os::unix::fs::symlink(&data, r.join("link")).unwrap();
        let why = bad(r.join("link/sub")).unwrap();
        assert!(why.ends_with(inside), "{why}");
        let outside = PathBuf::from("/nonexistent-airlock-test/public");
        assert_eq!(ca_dir_problem(&outside, &data, &key), None);
        assert!(ca_dir_problem(&outside, &outside.join("data"), &key).is_some());
    }

    #[test]
    fn the_bundle_goes_to_its_own_subdirectory_holding_only_pem_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let b = write_bundle(d.path(), "PEM\n").unwrap();
        assert_eq!(b, d.path().join(BUNDLE_SUBDIR).join("ca-bundle.pem"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(d.path()),
            0o700,
            "the operator's directory is left alone"
        );
        assert_eq!(mode(&d.path().join(BUNDLE_SUBDIR)), 0o755);
        assert_eq!(write_bundle(d.path(), "PEM\n").unwrap(), b, "idempotent");
        std::fs::write(d.path().join(BUNDLE_SUBDIR).join("secret"), "x").unwrap();
        assert!(write_bundle(d.path(), "PEM\n").is_err());
    }

    #[test]
    fn the_ca_mints_leaves() {
        let a = EgressTls::from_pem(CaMaterial::generate().unwrap(), None).unwrap();
        let c1 = a.server_config("api.example.com").unwrap();
        let c2 = a.server_config("api.example.com").unwrap();
        assert!(Arc::ptr_eq(&c1, &c2));
        a.server_config("127.0.0.1").unwrap();
        // Re-minted once a week old (leaves are valid 30 days), reused before.
        let now = std::time::Instant::now();
        let day = std::time::Duration::from_secs(24 * 3600);
        let c3 = a.server_config_at("api.example.com", now + day).unwrap();
        assert!(Arc::ptr_eq(&c1, &c3));
        let c4 = a
            .server_config_at("api.example.com", now + 8 * day)
            .unwrap();
        assert!(!Arc::ptr_eq(&c1, &c4));
        assert!(Arc::ptr_eq(
            &c4,
            &a.server_config_at("api.example.com", now + 9 * day)
                .unwrap()
        ));
        assert_eq!(a.leaves.lock().len(), 1, "stale leaves evicted");
    }
}

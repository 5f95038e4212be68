//! Python packages end to end: the real router, the real install sandbox and script
//! sandbox, packages built on the fly into a local find-links directory (never the
//! network). Installs use uv when it is on PATH (CI installs it) and pip otherwise;
//! one test forces the pip fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

use airlock::app::App;
use airlock::config::Config;

mod common;

/// Writes wheels and sdists (see the script).
const MAKE_DISTS: &str = include_str!("make_dists.py");

/// An in-tree PEP 517 backend whose build fails loudly.
const FAILING_BACKEND: &str = r#"
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    print("BUILD-STARTED in", __file__)
    raise RuntimeError("deliberate build failure: missing libfoo")
"#;

struct Env {
    /// Key id of a locked profile (the agent routes need it).
    key_id: String,
    base: common::sandboxed::Sandboxed,
    data_dir: PathBuf,
    links: PathBuf,
    config: Config,
}

impl std::ops::Deref for Env {
    type Target = common::sandboxed::Sandboxed;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

/// Which installer a test asks for.
fn installer_available(name: &str) -> bool {
    match name {
        "uv" => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("uv").is_file()))
            .unwrap_or(false),
        _ => true,
    }
}

fn make_dists(dir: &Path, spec: Value) {
    let mut spec = spec;
    spec["dir"] = json!(dir);
    let out = Command::new("/usr/bin/python3")
        .args(["-c", MAKE_DISTS, &spec.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "building test dists failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tinypkg() -> Value {
    json!({"name": "tinypkg", "version": "1.0", "files": {
        "tinypkg/__init__.py": "VALUE = 42\ndef hello(who):\n    return 'hello ' + who\n"
    }})
}

fn config(data_dir: &Path, links: &Path, installer: &str) -> Config {
    let mut c = Config::for_data_dir(data_dir);
    c.sandbox_helper = Some(vec![
        env!("CARGO_BIN_EXE_airlock").into(),
        airlock::sandbox::HELPER_ARG.into(),
    ]);
    c.workers = Some(2);
    c.pip_index_url = "none".into();
    c.pip_find_links = Some(links.to_path_buf());
    c.pip_installer = clap::ValueEnum::from_str(installer, false).expect("an installer name");
    c.pip_timeout = 120;
    c
}

async fn send(
    app: &App,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    common::send_json(app, common::req(method, uri, cookie, bearer, body)).await
}

async fn start(installer: &str, dists: Value) -> Env {
    start_with(installer, dists, |_| {}).await
}

async fn start_with(installer: &str, dists: Value, tweak: impl FnOnce(&mut Config)) -> Env {
    assert!(
        installer_available(installer),
        "this test needs `{installer}` on PATH (.ci/run installs it)"
    );
    // Not under /tmp (even when the checkout is): every sandbox gets its own empty /tmp.
    let dir = common::sandbox_visible_tempdir("pkgs");
    let data_dir = dir.path().join("data");
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    make_dists(&links, dists);
    let mut config = config(&data_dir, &links, installer);
    tweak(&mut config);
    let base = common::sandboxed::Sandboxed::start_in(dir, config.clone())
        .await
        .expect("these tests need the real sandbox");
    let mut env = Env {
        key_id: String::new(),
        base,
        data_dir,
        links,
        config,
    };
    let key = env.profile_key().await;
    env.key_id = key.split_once(':').unwrap().0.to_string();
    env
}

impl Env {
    async fn agent(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.base.agent(&self.key_id, method, uri, body).await
    }

    /// Posts a request, which waits for review; the operator accepts it; waits
    /// until its install is final; returns the install view.
    async fn install(&self, packages: &[&str]) -> Value {
        let (s, v) = self
            .agent(
                "POST",
                "/requirements",
                Some(json!({ "packages": packages, "message": "for the reports" })),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "awaiting_review", "{v}");
        assert_eq!(v["request"]["status"], "pending", "{v}");
        assert_eq!(v["request"]["message"], "for the reports", "{v}");
        let id = v["install_id"].as_str().unwrap().to_string();
        // Nothing is listed, let alone installed, before the operator accepts.
        let (_, list) = self.agent("GET", "/requirements", None).await;
        assert!(
            !list["packages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["install_id"] == id),
            "listed before review: {list}"
        );
        let (s, item) = self
            .admin(
                "POST",
                &format!("/api/admin/requests/packages/{id}/accept"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{item}");
        assert_eq!(item["status"], "accepted", "{item}");
        self.wait_install(&id).await
    }

    async fn wait_install(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let (s, v) = self
                .agent("GET", &format!("/requirements/{id}"), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if matches!(v["status"].as_str(), Some("installed" | "failed")) {
                return v;
            }
            assert!(Instant::now() < deadline, "install never finished: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn profile_key(&self) -> String {
        self.locked_profile("t", &[("TOKEN", "v")]).await.1
    }
}

/// Whether the module was loaded before the script imported anything.
const PREIMPORTED: &str = "import sys\nset_result('tinypkg' in sys.modules)";

const USE_SCRIPT: &str = "import tinypkg\nset_result([tinypkg.VALUE, tinypkg.hello('agent')])";

async fn install_use_and_survive_a_restart(installer: &str) {
    let env = start(installer, json!({"wheels": [tinypkg()]})).await;
    let inst = env.install(&["tinypkg==1.0"]).await;
    assert_eq!(inst["status"], "installed", "{inst}");
    assert_eq!(inst["packages"], json!(["tinypkg==1.0"]));
    let (s, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(s, StatusCode::OK);
    let pkgs = list["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), 1, "{list}");
    assert_eq!(pkgs[0]["name"], "tinypkg");
    assert_eq!(pkgs[0]["spec"], "tinypkg==1.0");
    assert_eq!(pkgs[0]["status"], "installed");
    assert_eq!(pkgs[0]["installed_version"], "1.0");
    assert_eq!(pkgs[0]["error"], Value::Null);
    assert_eq!(list["environment"]["state"], "ready");
    assert_eq!(list["environment"]["installer"], installer);
    let (_, health) = send(&env.app, "GET", "/health", None, None, None).await;
    assert_eq!(health["packages"], json!({"state": "ready"}), "{health}");

    // The admin page lists it with its status and version.
    let (s, page) = env.admin("GET", "/ui/packages", None).await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(
        page.contains(r#"<td class="mono">tinypkg==1.0</td>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<span class="badge badge-ok">installed</span>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-action="package-remove" data-name="tinypkg""#),
        "{page}"
    );

    let key = env.profile_key().await;
    let out = env.run(&key, USE_SCRIPT).await;
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["result"], json!([42, "hello agent"]));
    // Not pre-imported unless the operator asks (see the AIRLOCK_PREIMPORT test).
    let out = env.run(&key, PREIMPORTED).await;
    assert_eq!(out["result"], json!(false), "{out}");

    // Read-only for scripts; and the rest of the data dir is not there at all.
    let attack = format!(
        "import os, tinypkg\nres = {{}}\ntry:\n    open(os.path.join(os.path.dirname(tinypkg.__file__), 'evil.py'), 'w').write('x')\n    res['write'] = 'ok'\nexcept OSError as e:\n    res['write'] = type(e).__name__\nfor p in [{:?}, {:?}]:\n    try:\n        open(p, 'rb').read()\n        res[p] = 'read'\n    except OSError as e:\n        res[p] = 'denied'\nset_result(res)",
        env.data_dir.join("master.key").display().to_string(),
        env.data_dir.join("airlock.db").display().to_string()
    );
    let out = env.run(&key, &attack).await;
    assert_eq!(out["status"], "completed", "{out}");
    let res = &out["result"];
    assert_ne!(res["write"], "ok", "{res}");
    for f in ["master.key", "airlock.db"] {
        assert_eq!(
            res[env.data_dir.join(f).display().to_string()],
            "denied",
            "{res}"
        );
    }

    // Restart with the environment gone: it is rebuilt from the stored list, and an
    // execution submitted during the rebuild waits for it.
    let Env {
        base,
        data_dir,
        links,
        config,
        ..
    } = env;
    let common::sandboxed::Sandboxed { dir: _dir, app, .. } = base;
    drop(app);
    let envs = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d.join("packages/envs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let before = envs(&data_dir);
    assert_eq!(before.len(), 1, "{before:?}");
    // A plain restart reuses the environment: ready at once, nothing rebuilt.
    let app = App::open(config.clone()).await.expect("app restarts");
    let (_, list) = send(
        &app,
        "GET",
        "/requirements",
        None,
        Some(key.split_once(':').unwrap().0),
        None,
    )
    .await;
    assert_eq!(list["environment"]["state"], "ready", "{list}");
    assert_eq!(list["packages"][0]["status"], "installed", "{list}");
    assert_eq!(envs(&data_dir), before);
    drop(app);
    std::fs::remove_dir_all(data_dir.join("packages/envs")).unwrap();
    std::fs::remove_file(data_dir.join("packages/current.json")).unwrap();
    let base = common::sandboxed::Sandboxed::reopen(_dir, config.clone()).await;
    let env = Env {
        key_id: key.split_once(':').unwrap().0.to_string(),
        base,
        data_dir,
        links,
        config,
    };
    let out = env.run(&key, USE_SCRIPT).await;
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["result"], json!([42, "hello agent"]));
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"][0]["status"], "installed", "{list}");
    assert_eq!(list["packages"][0]["installed_version"], "1.0");
    assert_eq!(list["environment"]["state"], "ready");

    // The operator removes it: the environment is rebuilt without it.
    let (s, v) = env
        .admin("DELETE", "/api/admin/packages/TinyPkg", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let done = env.wait_install(v["install_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "installed", "{done}");
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"], json!([]));
    let out = env.run(&key, "import tinypkg").await;
    assert_eq!(out["status"], "error", "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("ModuleNotFoundError"),
        "{out}"
    );
    let (s, v) = env
        .admin("DELETE", "/api/admin/packages/tinypkg", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_use_restart_and_remove_with_the_default_installer() {
    let installer = if installer_available("uv") {
        "uv"
    } else {
        "pip"
    };
    install_use_and_survive_a_restart(installer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_use_restart_and_remove_with_pip() {
    install_use_and_survive_a_restart("pip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preimported_package_is_loaded_in_the_warm_workers() {
    let env = start_with("pip", json!({"wheels": [tinypkg()]}), |c| {
        c.preimport = vec!["tinypkg".into()]
    })
    .await;
    let key = env.profile_key().await;
    // Before the install the module does not exist; the workers still run.
    let out = env.run(&key, PREIMPORTED).await;
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["result"], json!(false), "{out}");
    let inst = env.install(&["tinypkg"]).await;
    assert_eq!(inst["status"], "installed", "{inst}");
    for _ in 0..3 {
        let out = env.run(&key, PREIMPORTED).await;
        assert_eq!(out["status"], "completed", "{out}");
        assert_eq!(out["result"], json!(true), "{out}");
    }
    let out = env.run(&key, USE_SCRIPT).await;
    assert_eq!(out["result"], json!([42, "hello agent"]));
}

#[tokio::test]
async fn every_refused_form_is_422_naming_the_item() {
    let env = start("pip", json!({})).await;
    let too_long = "a".repeat(101);
    for bad in [
        "-e .",
        "--index-url=https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "-r requirements.txt",
        "https://evil.example/x-1.0.whl",
        "x @ https://evil.example/x-1.0.whl",
        "git+https://github.com/evil/x",
        "../x",
        "/etc/passwd",
        "x-1.0-py3-none-any.whl",
        "x; os_name == \"a\" --index-url=https://evil.example",
        "x; os_name == '--index-url=https://evil'",
        too_long.as_str(),
    ] {
        let (s, v) = env
            .agent(
                "POST",
                "/requirements",
                Some(json!({"packages": ["httpx", bad]})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(v["code"], "invalid_input");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.starts_with("packages[1]"), "{bad:?}: {detail}");
    }
    let many: Vec<String> = (0..51).map(|i| format!("p{i}")).collect();
    let (s, v) = env
        .agent("POST", "/requirements", Some(json!({"packages": many})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["detail"], "at most 50 packages per request (got 51)");
    // Nothing was recorded.
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"], json!([]));
    let (s, _) = env.agent("GET", "/requirements/inst_nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Without a profile's key id nobody can add (or list) packages.
    for (method, uri) in [("POST", "/requirements"), ("GET", "/requirements")] {
        let (s, v) = send(
            &env.app,
            method,
            uri,
            None,
            None,
            Some(json!({"packages": ["httpx"]})),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}: {v}");
        assert_eq!(v["code"], "missing_key");
    }
}

#[tokio::test]
async fn a_rejected_request_installs_nothing_and_tells_the_agent_why() {
    let env = start("pip", tinypkg()).await;
    let post = |packages: Value| {
        env.agent(
            "POST",
            "/requirements",
            Some(json!({ "packages": packages, "message": "charts" })),
        )
    };
    let (s, v) = post(json!(["tinypkg"])).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["install_id"].as_str().unwrap().to_string();
    let (_, items) = env.admin("GET", "/api/admin/requests", None).await;
    let item = &items["requests"][0];
    assert_eq!(item["kind"], "packages", "{items}");
    assert_eq!(item["subject"], id.as_str());
    assert_eq!(item["summary"], "packages tinypkg");
    assert_eq!(item["message"], "charts");

    let (s, v) = env
        .admin(
            "POST",
            &format!("/api/admin/requests/packages/{id}/reject"),
            Some(json!({ "reason": "use the stdlib csv module" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = env.agent("GET", &format!("/requirements/{id}"), None).await;
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["request"]["status"], "rejected", "{v}");
    assert_eq!(v["request"]["reason"], "use the stdlib csv module", "{v}");
    assert_eq!(
        v["error"], "rejected by the operator: use the stdlib csv module",
        "{v}"
    );
    assert!(v["finished_at"].is_string(), "{v}");
    let (s, v) = env
        .admin(
            "POST",
            &format!("/api/admin/requests/packages/{id}/accept"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"], json!([]), "{list}");
    let key = env.profile_key().await;
    let out = env.run(&key, "import tinypkg").await;
    assert_eq!(out["status"], "error", "{out}");
}

#[tokio::test]
async fn failing_build_is_failed_with_a_sanitized_log() {
    let env = start(
        "pip",
        json!({"sdists": [{"name": "brokenpkg", "version": "1.0", "backend": FAILING_BACKEND}]}),
    )
    .await;
    let inst = env.install(&["brokenpkg"]).await;
    assert_eq!(inst["status"], "failed", "{inst}");
    let log = inst["log"].as_str().unwrap();
    assert!(
        log.contains("deliberate build failure: missing libfoo"),
        "{log}"
    );
    let data = env.data_dir.canonicalize().unwrap().display().to_string();
    assert!(!log.contains(&data), "host data dir path in the log: {log}");
    let links = env.links.canonicalize().unwrap().display().to_string();
    assert!(!log.contains(&links), "find-links path in the log: {log}");
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"][0]["status"], "failed", "{list}");
    assert_eq!(list["packages"][0]["installed_version"], Value::Null);
    assert!(list["packages"][0]["error"]
        .as_str()
        .unwrap()
        .contains(inst["install_id"].as_str().unwrap()));
}

#[tokio::test]
async fn a_failed_request_shows_the_version_still_in_use_and_the_installer_output() {
    let env = start("pip", json!({"wheels": [tinypkg()]})).await;
    let ok = env.install(&["tinypkg"]).await;
    assert_eq!(ok["status"], "installed", "{ok}");
    let failed = env.install(&["tinypkg==9.9"]).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // The row says failed, with no version of its own...
    let (_, list) = env.agent("GET", "/requirements", None).await;
    assert_eq!(list["packages"][0]["status"], "failed", "{list}");
    // ...while scripts still import 1.0, and the operator's page says so, with
    // the installer's output one click away.
    let (s, _, page) = env.base.admin_reply("GET", "/ui/packages", None).await;
    assert_eq!(s, StatusCode::OK);
    let html = page.as_str().unwrap();
    assert!(
        html.contains("The request failed; 1.0 is still installed and scripts import it."),
        "{html}"
    );
    assert!(html.contains("Installer output"), "{html}");
    let log = failed["log"].as_str().unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("9.9"))
        .expect("the log names the version");
    let escaped = line
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;");
    assert!(
        html.contains(line) || html.contains(&escaped),
        "log line {line:?} not in the page"
    );
    let key = env.profile_key().await;
    let v = env.run(&key, USE_SCRIPT).await;
    assert_eq!(v["result"], json!([42, "hello agent"]), "{v}");
}

#[tokio::test]
async fn build_script_cannot_read_the_data_dir_or_master_key() {
    // The backend is written once the data dir exists, with its real paths.
    let env = start("pip", json!({})).await;
    let data = env.data_dir.canonicalize().unwrap();
    let backend = format!(
        r#"
import os
def _try(label, path):
    try:
        with open(path, "rb") as f:
            print("PROBE", label, "READ", f.read().hex())
    except Exception as e:
        print("PROBE", label, "DENIED", type(e).__name__)
def _list(label, path):
    try:
        print("PROBE", label, "LISTED", sorted(os.listdir(path)))
    except Exception as e:
        print("PROBE", label, "DENIED", type(e).__name__)
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _try("master-key", {key:?})
    _try("database", {db:?})
    _list("data-dir", {data:?})
    raise RuntimeError("probe finished")
"#,
        key = data.join("master.key").display().to_string(),
        db = data.join("airlock.db").display().to_string(),
        data = data.display().to_string(),
    );
    make_dists(
        &env.links,
        json!({"sdists": [{"name": "snoop", "version": "1.0", "backend": backend}]}),
    );
    let inst = env.install(&["snoop"]).await;
    assert_eq!(inst["status"], "failed", "{inst}");
    let log = inst["log"].as_str().unwrap();
    assert!(
        log.contains("probe finished"),
        "the probe did not run: {log}"
    );
    for label in ["master-key", "database", "data-dir"] {
        assert!(
            log.contains(&format!("PROBE {label} DENIED")),
            "{label} was not denied: {log}"
        );
    }
    let key = std::fs::read(data.join("master.key")).unwrap();
    assert!(
        !log.contains(&hex::encode(&key)),
        "master key leaked: {log}"
    );
    assert!(!log.contains("READ"), "a probe read something: {log}");
    assert!(
        !log.contains("LISTED"),
        "a probe listed the data dir: {log}"
    );
}

#[tokio::test]
async fn installs_are_refused_clearly_when_the_data_dir_is_under_tmp() {
    // Every sandbox mounts its own /tmp, so an environment there would be invisible.
    let dir = tempfile::Builder::new()
        .prefix("pkgs-tmp")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().join("data");
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    let base = common::sandboxed::Sandboxed::start_in(dir, config(&data_dir, &links, "pip"))
        .await
        .expect("these tests need the real sandbox");
    let env = Env {
        key_id: String::new(),
        base,
        data_dir,
        links,
        config: Config::for_data_dir(Path::new("/unused")),
    };
    let key = env.profile_key().await;
    let key_id = key.split_once(':').unwrap().0;
    let (s, v) = send(
        &env.app,
        "POST",
        "/requirements",
        None,
        Some(key_id),
        Some(json!({"packages": ["httpx"]})),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "packages_unavailable");
    assert!(!v["detail"].as_str().unwrap().contains("/tmp"), "{v}");
    let (_, list) = send(&env.app, "GET", "/requirements", None, Some(key_id), None).await;
    assert_eq!(list["environment"]["state"], "unavailable", "{list}");
    let (_, health) = send(&env.app, "GET", "/health", None, None, None).await;
    assert_eq!(
        health["packages"],
        json!({"state": "unavailable"}),
        "{health}"
    );
    assert!(
        !list["environment"]["reason"]
            .as_str()
            .unwrap()
            .contains("/tmp"),
        "{list}"
    );
    // The operator sees the cause.
    let (s, admin) = env.admin("GET", "/api/admin/packages", None).await;
    assert_eq!(s, StatusCode::OK);
    let reason = admin["environment"]["reason"].as_str().unwrap();
    assert!(reason.contains("/tmp"), "{reason}");
    // Executions still run (without packages).
    let out = env.run(&key, "set_result(1)").await;
    assert_eq!(out["result"], 1, "{out}");
}

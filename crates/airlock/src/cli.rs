//! The `airlock` command-line client: what an agent (or a person scripting one)
//! uses instead of hand-rolling HMACs and polling loops.
//!
//! `airlock exec` signs a script with the profile key, submits it, long-polls to
//! the end, answers `llm.complete` pauses (from stdin or a command), prints the
//! outputs and exits with a code that reflects the status. The key comes from
//! `AIRLOCK_KEY`, `--key` or `--key-file`; it is never printed, and only its id
//! part travels.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::ids::ProfileKey;

/// Exit codes of `airlock exec`.
pub mod exit {
    pub const COMPLETED: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const TIMEOUT: i32 = 2;
    pub const CLIENT: i32 = 3;
}

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct Server {
    /// Airlock's base URL.
    #[arg(long, env = "AIRLOCK_URL", default_value = "http://127.0.0.1:9090")]
    pub url: String,
}

/// Options of `airlock exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub server: Server,
    /// The profile key `ark_ID:SECRET` (prefer the environment variable or --key-file:
    /// command lines are visible to other local users).
    #[arg(long, env = "AIRLOCK_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Read the key from this file instead.
    #[arg(long, conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
    /// Wall-clock limit for the script in seconds (server default when absent).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Answer `llm.complete` pauses by running this shell command with the prompt
    /// on its stdin; its stdout is the answer. Without it, answers are read from stdin.
    #[arg(long)]
    pub llm_command: Option<String>,
    /// Print the whole final execution as JSON instead of its outputs.
    #[arg(long)]
    pub json: bool,
    /// The script file, or `-` for stdin.
    pub script: PathBuf,
}

/// Options of the listing commands.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: Server,
    /// Print raw JSON.
    #[arg(long)]
    pub json: bool,
}

fn load_key(args: &ExecArgs) -> anyhow::Result<ProfileKey> {
    read_key(args.key.as_deref(), args.key_file.as_deref())
}

/// The profile key from `--key`/`AIRLOCK_KEY` or a key file (the file wins).
pub fn read_key(key: Option<&str>, file: Option<&Path>) -> anyhow::Result<ProfileKey> {
    let raw = match (key, file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?,
        (Some(k), None) => k.to_string(),
        (None, None) => bail!("no key: set AIRLOCK_KEY, or pass --key-file (or --key)"),
    };
    ProfileKey::parse(&raw).ok_or_else(|| {
        anyhow!("the key must look like ark_<24 characters>:<secret> (the full key the operator copied)")
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into()
}

/// Sends a request; returns the JSON body of a 2xx answer or an error with the
/// server's `detail`.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let mut resp = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(b) = bearer {
                r = r.header("Authorization", &format!("Bearer {b}"));
            }
            r.call()
        }
        (_, body) => {
            let mut r = agent.post(url);
            if let Some(b) = bearer {
                r = r.header("Authorization", &format!("Bearer {b}"));
            }
            r.send_json(body.cloned().unwrap_or(json!({})))
        }
    }
    .with_context(|| format!("cannot reach Airlock at {url}"))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let detail = value["detail"].as_str().unwrap_or("no detail");
        let code = value["code"].as_str().unwrap_or("");
        bail!(
            "Airlock answered {status}: {detail} {}",
            if code.is_empty() {
                String::new()
            } else {
                format!("({code})")
            }
        );
    }
    Ok(value)
}

fn read_script(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the script from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn answer_llm(args: &ExecArgs, prompt: &str, model: &str) -> anyhow::Result<String> {
    eprintln!("--- llm.complete (model: {model}) ---\n{prompt}\n---");
    match &args.llm_command {
        Some(cmd) => {
            let mut child = Command::new("sh")
                .args(["-c", cmd])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot run --llm-command {cmd:?}"))?;
            child
                .stdin
                .take()
                .context("--llm-command has no stdin")?
                .write_all(prompt.as_bytes())
                .context("cannot send the prompt to --llm-command")?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!("--llm-command exited with {}", out.status);
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("Type the answer, then Ctrl-D:");
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the answer from stdin")?;
            Ok(s.trim_end().to_string())
        }
    }
}

/// `airlock exec`: returns the process exit code.
pub fn exec(args: ExecArgs) -> i32 {
    match exec_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            exit::CLIENT
        }
    }
}

fn exec_inner(args: &ExecArgs) -> anyhow::Result<i32> {
    let key = load_key(args)?;
    let script = read_script(&args.script)?;
    let base = args.server.url.trim_end_matches('/');
    let agent = agent();
    let mut body = crate::ids::signed_body(key.secret.as_bytes(), &script);
    if let Some(t) = args.timeout {
        body["timeout"] = json!(t);
    }
    let submitted = call(
        &agent,
        "POST",
        &format!("{base}/execute"),
        Some(&key.id),
        Some(&body),
    )?;
    let id = submitted["execution_id"]
        .as_str()
        .ok_or_else(|| anyhow!("unexpected answer from /execute: {submitted}"))?
        .to_string();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s.set_message(format!("{id}: pending"));
        s
    });
    // Held for approval: the link is in the submission's answer (a long-poll
    // would only return once someone decided).
    if submitted["status"] == "awaiting_approval" {
        let url = submitted["approval_url"]
            .as_str()
            .unwrap_or("the Approvals page");
        let note = format!("{id}: waiting for a person to approve it at {url}");
        match &spinner {
            Some(s) => s.suspend(|| eprintln!("{note}")),
            None => eprintln!("{note}"),
        }
    }
    let final_state = loop {
        let ex = call(
            &agent,
            "GET",
            &format!("{base}/executions/{id}?wait=30"),
            Some(&key.id),
            None,
        )?;
        let status = ex["status"].as_str().unwrap_or("").to_string();
        if let Some(s) = &spinner {
            s.set_message(format!("{id}: {status}"));
        }
        match status.as_str() {
            "completed" | "error" | "timeout" | "denied" => break ex,
            "awaiting_llm" => {
                if let Some(s) = &spinner {
                    s.suspend(|| ());
                }
                let req = &ex["llm_request"];
                let answer = spinner
                    .as_ref()
                    .map(|s| {
                        s.suspend(|| {
                            answer_llm(
                                args,
                                req["prompt"].as_str().unwrap_or(""),
                                req["model"].as_str().unwrap_or("default"),
                            )
                        })
                    })
                    .unwrap_or_else(|| {
                        answer_llm(
                            args,
                            req["prompt"].as_str().unwrap_or(""),
                            req["model"].as_str().unwrap_or("default"),
                        )
                    })?;
                call(
                    &agent,
                    "POST",
                    &format!("{base}/executions/{id}/respond"),
                    Some(&key.id),
                    Some(&json!({ "response": answer, "request_id": req["request_id"] })),
                )?;
            }
            _ => {}
        }
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let status = final_state["status"].as_str().unwrap_or("");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&final_state)?);
    } else {
        print!("{}", final_state["stdout"].as_str().unwrap_or(""));
        eprint!("{}", final_state["stderr"].as_str().unwrap_or(""));
        if !final_state["result"].is_null() {
            println!("{}", serde_json::to_string_pretty(&final_state["result"])?);
        }
        if let Some(e) = final_state["error"].as_str() {
            eprintln!("{status}: {e}");
        }
    }
    std::io::stdout().flush().ok();
    Ok(match status {
        "completed" => exit::COMPLETED,
        "timeout" => exit::TIMEOUT,
        _ => exit::ERROR,
    })
}

/// `airlock profiles` / `airlock credentials`: returns the exit code.
pub fn list(args: ListArgs, what: &str) -> i32 {
    let base = args.server.url.trim_end_matches('/');
    match call(&agent(), "GET", &format!("{base}/{what}"), None, None) {
        Ok(v) if args.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            0
        }
        Ok(v) => {
            let items = v[what].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no {what}");
            }
            for item in items {
                if what == "profiles" {
                    let state = if item["revoked"] == true {
                        "revoked"
                    } else if item["expired"] == true {
                        "expired"
                    } else if item["locked"] == true {
                        "locked"
                    } else {
                        "unlocked"
                    };
                    let creds: Vec<String> = item["credentials"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            format!(
                                "{}{}",
                                c["name"].as_str().unwrap_or(""),
                                if c["value_exists"] == true {
                                    ""
                                } else {
                                    "(missing)"
                                }
                            )
                        })
                        .collect();
                    println!(
                        "{}  {:9} {}  [{}]  {}",
                        item["id"].as_str().unwrap_or(""),
                        state,
                        item["key_id"].as_str().unwrap_or("-"),
                        creds.join(", "),
                        item["description"].as_str().unwrap_or("")
                    );
                } else {
                    println!(
                        "{:32} {:9} {:40} {}",
                        item["name"].as_str().unwrap_or(""),
                        if item["value_exists"] == true {
                            "set"
                        } else {
                            "missing"
                        },
                        if item["mode"] == "sealed" {
                            let hosts: Vec<&str> = item["bound_hosts"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|h| h.as_str()).collect())
                                .unwrap_or_default();
                            format!("sealed to {}", hosts.join(","))
                        } else {
                            "plain".to_string()
                        },
                        item["description"].as_str().unwrap_or("")
                    );
                }
            }
            0
        }
        Err(e) => {
            eprintln!("airlock: {e:#}");
            exit::CLIENT
        }
    }
}

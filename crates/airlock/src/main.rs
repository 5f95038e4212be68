//! The `airlock` binary: `airlock serve` (the default) runs the server.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};

use airlock::app::App;
use airlock::config::Config;

/// Airlock: agents run code with credentials they never see.
///
/// Every flag can also be set with the environment variable shown next to it.
#[derive(Parser)]
#[command(name = "airlock", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (web UI + agent and admin API on one port). The default.
    Serve(Box<Config>),
    /// Run a script on an Airlock server with a profile key, wait, print the outputs.
    ///
    /// Exit code: 0 completed, 1 error, 2 timeout, 3 client or HTTP error.
    Exec(airlock::cli::ExecArgs),
    /// List the server's profiles (as an agent sees them).
    Profiles(airlock::cli::ListArgs),
    /// List the server's credential slots (names and whether a value is set).
    Credentials(airlock::cli::ListArgs),
    /// Serve Airlock's agent tools over MCP on stdin/stdout (for MCP clients).
    Mcp(airlock::mcp::McpArgs),
    /// Print the static agent guide (the repository's SKILL.md).
    Skill,
    /// The audit log: `airlock audit verify <export.jsonl>` checks an export's hash
    /// chain and signed heads offline (exit 0: intact, 1: broken, 2: unreadable).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an audit export (from `GET /api/admin/audit/export`).
    Verify {
        /// The export file (JSON Lines).
        file: std::path::PathBuf,
    },
}

/// `airlock audit verify`: prints what it found; the exit code says it too.
fn verify_audit(file: &std::path::Path) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return 2;
        }
    };
    match airlock::audit::verify_export(&text) {
        Ok(v) if v.state == "ok" => {
            println!(
                "ok: {} events, {} signed heads, the chain is intact",
                v.events, v.heads
            );
            0
        }
        Ok(v) => {
            println!(
                "BROKEN at {}: {}",
                v.broken_at.unwrap_or_default(),
                v.reason.unwrap_or_default()
            );
            1
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            2
        }
    }
}

fn main() -> anyhow::Result<()> {
    // The sandbox helper is this same binary re-executed with a marker argument;
    // it must take over before any thread or runtime exists.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == airlock::sandbox::HELPER_ARG)
    {
        airlock_sandbox::helper_main();
    }
    let cli = Cli::parse();
    let mut config = match cli.command {
        Some(Command::Serve(c)) => *c,
        None => cli.serve,
        Some(Command::Exec(args)) => std::process::exit(airlock::cli::exec(args)),
        Some(Command::Profiles(args)) => std::process::exit(airlock::cli::list(args, "profiles")),
        Some(Command::Mcp(args)) => return run_mcp(args),
        Some(Command::Skill) => {
            print!("{}", airlock::skill::static_markdown());
            return Ok(());
        }
        Some(Command::Credentials(args)) => {
            std::process::exit(airlock::cli::list(args, "credentials"))
        }
        Some(Command::Audit {
            command: AuditCommand::Verify { file },
        }) => std::process::exit(verify_audit(&file)),
    };
    let exe = std::env::current_exe().context("cannot find the airlock binary's own path")?;
    config.sandbox_helper = Some(vec![exe.into(), airlock::sandbox::HELPER_ARG.into()]);
    init_logs(config.log_format, "info");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// `airlock mcp`: stdout carries the protocol, so logs go to stderr.
fn run_mcp(args: airlock::mcp::McpArgs) -> anyhow::Result<()> {
    init_logs(airlock::config::LogFormat::Text, "warn");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(airlock::mcp::run_stdio(args))
}

/// Logs to stderr, filtered by `AIRLOCK_LOG` (else `default`), as text or JSON lines.
fn init_logs(format: airlock::config::LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        airlock::config::LogFormat::Text => logs.init(),
        airlock::config::LogFormat::Json => logs.json().init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let app = App::open(config.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (set AIRLOCK_BIND or --bind)"))?;
    let local = listener.local_addr()?;
    let setup_required = app
        .state
        .auth
        .setup_required()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = config
        .public_base()
        .map(str::to_string)
        .unwrap_or_else(|| format!("http://{local}"));
    println!("Airlock {} listening on {url}", env!("CARGO_PKG_VERSION"));
    tracing::info!(%url, version = env!("CARGO_PKG_VERSION"), "listening");
    println!("  data dir:   {}", config.data_dir.display());
    println!(
        "  master key: {} ({})",
        config.master_key_path().display(),
        match app.state.key_origin {
            airlock_store::KeyOrigin::Created => "created now",
            airlock_store::KeyOrigin::Loaded => "loaded",
        }
    );
    if setup_required {
        println!("  setup:      required: open {url} and set the admin password");
    } else {
        println!("  setup:      done (log in at {url})");
    }
    match app.state.runner.sandbox() {
        Some(sb) => {
            let layers = sb.layers();
            let missing: Vec<&str> = layers.missing().iter().map(|l| l.name()).collect();
            let tier = layers.tier;
            if !missing.is_empty() {
                println!(
                    "  sandbox:    ready in PERMISSIVE mode (development only: scripts are NOT contained as documented); tier {tier}, missing layers: {}",
                    missing.join(", ")
                );
            } else if tier == airlock_sandbox::Tier::Full {
                println!(
                    "  sandbox:    ready, tier full, every layer active ({} workers, up to {} paused, landlock ABI {})",
                    config.worker_count(),
                    config.max_paused,
                    layers.landlock_abi
                );
            } else {
                println!(
                    "  sandbox:    ready, tier {tier}, every layer of it active ({} workers, up to {} paused, landlock ABI {}); \
                     no namespaces here (README \"Sandbox tiers\" says what this tier does not guarantee)",
                    config.worker_count(),
                    config.max_paused,
                    layers.landlock_abi
                );
            }
        }
        None => println!(
            "  sandbox:    UNAVAILABLE, executions are refused: {}",
            app.state
                .runner
                .unavailable_reason()
                .unwrap_or("unknown reason")
        ),
    }
    let packages = &app.state.packages;
    match packages.unavailable_reason() {
        Some(reason) => println!("  packages:   installs unavailable: {reason}"),
        None => match packages.list().await {
            Ok(list) => println!(
                "  packages:   {} requested, environment {} ({}, index {})",
                list.packages.len(),
                list.environment.state,
                list.environment.installer,
                list.environment.index_url.as_deref().unwrap_or("none")
            ),
            Err(e) => println!("  packages:   cannot read the list: {e}"),
        },
    }
    let router = app.router();
    tokio::select! {
        r = airlock::serve(router, listener) => r.context("server error")?,
        _ = shutdown_signal() => println!("Airlock shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; stop with SIGINT");
            let _ = ctrl_c.await;
        }
    }
}

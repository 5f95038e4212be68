//! One running execution, seen from the server.
//!
//! A driver task owns everything an execution needs (the control socket, the status
//! socket from the supervisor, the output pipes, the slot) and turns it into a stream of
//! [`Event`]s. It enforces the wall-clock timeout (paused while the script waits in
//! `llm.complete`, with every process of the execution stopped meanwhile, so the pause
//! gives no thread extra time), the frame protocol, and kills the whole process tree (SIGKILL to
//! the PID-namespace init through a pidfd) on timeout, on request, or when the
//! [`Execution`] handle is dropped. The slot is released only once the tree is gone.
//!
//! When the worker has sent its final message (`done`/`error`, after closing its
//! stdout/stderr) and both pipes are at EOF, the outcome is known: `Finished` goes out
//! then, and the driver keeps supervising the tree's teardown (namespaces, reaper,
//! supervisor's exit report) off the caller's critical path before it frees the slot.

use crate::protocol::{self, FrameError, WorkerMessage};
use crate::sys;
use crate::LayerReport;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// What an execution tells its runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The script called `llm.complete`; the wall-clock timeout is paused, and every
    /// process of the execution stopped, until [`Execution::respond_llm`] answers it.
    LlmRequest {
        /// The server's number for this request (`"1"`, `"2"`, ...); the id the worker
        /// put in its frame is only ever echoed back to the worker.
        request_id: String,
        prompt: String,
        model: String,
    },
    /// Terminal. The process tree is gone, or, when the worker had already sent its
    /// final message and both output pipes were closed, it is being torn down (it is
    /// still killed on timeout, [`Execution::kill`] or drop, and its slot is reused only
    /// once it is gone). [`Outcome::layers`] is only filled in the first case.
    Finished(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Completed,
    Error,
    Timeout,
}

/// The end of an execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub status: OutcomeStatus,
    /// Last value passed to `set_result`.
    pub result: Option<Value>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The order in which the kept stdout and stderr bytes were read:
    /// (stream, bytes), consecutive pieces of one stream joined, at most
    /// [`MAX_ORDER_PIECES`] pieces (what follows is not ordered). Writes
    /// closer together than the server's reads may come out grouped by
    /// stream.
    pub output_order: Vec<(OutputStream, usize)>,
    /// The Python exception type when the script raised (e.g. `"ValueError"`).
    pub error_type: Option<String>,
    /// Traceback (script frames only) ending with `Type: message`, or a sentence such
    /// as "killed by signal 11 (SIGSEGV: invalid memory reference)".
    pub error: Option<String>,
    /// Wall time from start to finish, including time spent waiting for LLM answers.
    pub duration: Duration,
    /// Layers the script process reported applying (used by start-up probes).
    pub layers: Option<LayerReport>,
}

#[derive(Debug)]
pub(crate) enum Cmd {
    Llm {
        request_id: String,
        response: String,
    },
    Kill,
}

/// A running execution. Dropping it kills the process tree.
#[derive(Debug)]
pub struct Execution {
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) cmds: mpsc::UnboundedSender<Cmd>,
    pub(crate) pid: Arc<AtomicI32>,
    pub(crate) pending: BTreeSet<String>,
    pub(crate) finished: Option<Outcome>,
    pub(crate) proxy: Option<PendingProxy>,
    /// The slot's spare gate and the number of the spare this execution took: once it
    /// is dropped, the slot's zygote may prepare the next.
    pub(crate) spare_taken: Option<(Arc<crate::sandbox::SpareGate>, u64)>,
    /// The pool and the slot this execution holds, for [`Execution::park`].
    pub(crate) slot: Option<(std::sync::Weak<crate::sandbox::Inner>, usize)>,
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Some((gate, seq)) = self.spare_taken.take() {
            gate.release(seq);
        }
    }
}

/// The egress listeners of an execution with [`crate::Job::network`], on their way from
/// the execution's supervisor (which created them inside the execution's network
/// namespace) to the server.
#[derive(Debug)]
pub struct PendingProxy(pub(crate) oneshot::Receiver<Result<EgressListeners, String>>);

/// An execution's listening sockets (non-blocking, ready for
/// `tokio::net::TcpListener::from_std`). Whoever holds them serves the execution's
/// egress; dropping one closes its port.
#[derive(Debug)]
pub struct EgressListeners {
    /// 127.0.0.1:[`crate::PROXY_PORT`] in the execution's own namespace (the spare's
    /// own port in the container tier).
    pub proxy: std::net::TcpListener,
    /// One per [`crate::Job::tcp`] entry, in order, or why the sandbox has none for it.
    pub tcp: Vec<Result<std::net::TcpListener, String>>,
}

impl PendingProxy {
    /// The listening sockets, or why there are none. They arrive before the script
    /// starts.
    pub async fn listeners(self) -> Result<EgressListeners, String> {
        self.0.await.unwrap_or_else(|_| {
            Err("the execution ended before its egress listener was ready".into())
        })
    }

    /// The proxy's listening socket alone (a job without TCP destinations).
    pub async fn listener(self) -> Result<std::net::TcpListener, String> {
        self.listeners().await.map(|l| l.proxy)
    }
}

/// The supervisor's `proxy` message and its fds: the proxy's listener first, then one
/// per TCP destination it could make.
fn egress_listeners(v: &Value, fds: Vec<OwnedFd>) -> Result<EgressListeners, String> {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    let listener = |fd: OwnedFd| {
        let l = std::net::TcpListener::from(fd);
        l.set_nonblocking(true)
            .map(|()| l)
            .map_err(|e| e.to_string())
    };
    let mut fds = fds.into_iter();
    let proxy = listener(fds.next().ok_or("no listener received")?)?;
    let tcp = v
        .get("tcp")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| match r.get("error").and_then(Value::as_str) {
            Some(e) => Err(e.to_string()),
            None => fds
                .next()
                .ok_or_else(|| "no listener received".to_string())
                .and_then(listener),
        })
        .collect();
    Ok(EgressListeners { proxy, tcp })
}

impl Execution {
    /// Next event. After [`Event::Finished`] it keeps returning the same outcome.
    pub async fn next_event(&mut self) -> Event {
        if let Some(o) = &self.finished {
            return Event::Finished(o.clone());
        }
        let ev = self.events.recv().await.unwrap_or_else(|| {
            Event::Finished(Outcome::internal("the execution driver ended unexpectedly"))
        });
        match &ev {
            Event::LlmRequest { request_id, .. } => {
                self.pending.insert(request_id.clone());
            }
            Event::Finished(o) => self.finished = Some(o.clone()),
        }
        ev
    }

    /// Answers an [`Event::LlmRequest`]; the wall-clock timeout resumes.
    pub async fn respond_llm(&mut self, request_id: &str, response: &str) -> crate::Result<()> {
        if self.finished.is_some() {
            return Err(crate::Error::Finished);
        }
        if !self.pending.remove(request_id) {
            return Err(crate::Error::UnknownRequest(request_id.to_string()));
        }
        self.cmds
            .send(Cmd::Llm {
                request_id: request_id.to_string(),
                response: response.to_string(),
            })
            .map_err(|_| crate::Error::Finished)
    }

    /// Tells the pool that this execution will wait a long time (a paused
    /// `llm.complete`): its slot's zygote is retired, since no other job may use it
    /// while this execution holds the slot, and a free slot without one starts one in
    /// the background (so the next job does not wait for an interpreter). The
    /// execution keeps its processes, its uid and its namespaces; only the slot's idle
    /// interpreter goes. Idempotent.
    pub fn park(&mut self) {
        if let Some((inner, idx)) = self.slot.take() {
            if let Some(inner) = inner.upgrade() {
                crate::sandbox::park_slot(&inner, idx, self.pid.clone());
            }
        }
    }

    /// Kills the whole process tree; [`Event::Finished`] follows.
    pub fn kill(&self) {
        let _ = self.cmds.send(Cmd::Kill);
    }

    /// The execution's egress listener, for a job with [`crate::Job::network`]; `None`
    /// otherwise, or when already taken.
    pub fn take_proxy(&mut self) -> Option<PendingProxy> {
        self.proxy.take()
    }

    /// Host pid of the execution's PID-namespace init (the reaper), once known.
    pub fn pid(&self) -> Option<i32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            p => Some(p),
        }
    }
}

/// One of the two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Bound on [`Outcome::output_order`].
pub const MAX_ORDER_PIECES: usize = 65_536;

/// Where both capture tasks note each piece they keep.
type OrderLog = Arc<std::sync::Mutex<Vec<(OutputStream, usize)>>>;

impl Outcome {
    pub(crate) fn internal(msg: &str) -> Outcome {
        Outcome {
            status: OutcomeStatus::Error,
            result: None,
            stdout: vec![],
            stderr: vec![],
            stdout_truncated: false,
            stderr_truncated: false,
            output_order: Vec::new(),
            error_type: None,
            error: Some(msg.to_string()),
            duration: Duration::ZERO,
            layers: None,
        }
    }
}

/// How a process ended, as reported by the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Code(i32),
    Signal(i32),
}

fn parse_wait(v: &Value) -> Option<Wait> {
    if let Some(c) = v.get("code").and_then(Value::as_i64) {
        return Some(Wait::Code(c as i32));
    }
    v.get("signal")
        .and_then(Value::as_i64)
        .map(|s| Wait::Signal(s as i32))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillReason {
    Timeout,
    Requested,
    Dropped,
    Protocol,
}

/// Everything the driver owns.
pub(crate) struct DriverIo {
    pub proto: tokio::net::UnixStream,
    pub status: crate::sandbox::SeqPacket,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub(crate) struct JobSpec {
    pub cgroup: Option<Arc<crate::cgroup::SlotCgroup>>,
    /// What is left to write of the job frame (the start was written before the hand-over);
    /// `None` when the job does not fit in a frame (nothing runs; the worker exits on EOF).
    pub run_frame_rest: Option<Vec<u8>>,
    pub timeout: Duration,
    pub output_bytes: usize,
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    pub scratch_bytes: u64,
    /// Emit [`Event::Finished`] once the worker's final message and the end of both
    /// output pipes are in, without waiting for the supervisor's exit report.
    pub early_finish: bool,
}

async fn capture(
    fd: OwnedFd,
    cap: usize,
    stream: OutputStream,
    order: OrderLog,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return (vec![], false);
    };
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                let kept = n.min(room);
                out.extend_from_slice(&buf[..kept]);
                if kept > 0 {
                    if let Ok(mut log) = order.lock() {
                        let pieces = log.len();
                        match log.last_mut() {
                            Some((s, len)) if *s == stream => *len += kept,
                            _ if pieces < MAX_ORDER_PIECES => log.push((stream, kept)),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    (out, truncated)
}

/// Runs one execution to its end. `release` is dropped (freeing the slot) at the end.
pub(crate) async fn drive<G: Send + 'static>(
    io: DriverIo,
    mut spec: JobSpec,
    events: mpsc::Sender<Event>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    pid_out: Arc<AtomicI32>,
    mut proxy: Option<oneshot::Sender<Result<EgressListeners, String>>>,
    release: G,
) {
    let started = Instant::now();
    let oom_before = spec.cgroup.as_ref().map(|c| c.oom_kills());
    let DriverIo {
        proto,
        mut status,
        stdout,
        stderr,
    } = io;
    let order: OrderLog = Arc::default();
    let mut out_task = tokio::spawn(capture(
        stdout,
        spec.output_bytes,
        OutputStream::Stdout,
        order.clone(),
    ));
    let mut err_task = tokio::spawn(capture(
        stderr,
        spec.output_bytes,
        OutputStream::Stderr,
        order.clone(),
    ));
    let mut out_res: Option<(Vec<u8>, bool)> = None;
    let mut err_res: Option<(Vec<u8>, bool)> = None;
    let (mut proto_r, mut proto_w) = proto.into_split();
    // One writer task serialises frames to the worker.
    let (frame_tx, mut frame_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(f) = frame_rx.recv().await {
            if proto_w.write_all(&f).await.is_err() {
                break;
            }
        }
    });
    if let Some(rest) = spec.run_frame_rest.take().filter(|r| !r.is_empty()) {
        let _ = frame_tx.send(rest);
    }

    let mut result: Option<Value> = None;
    let mut final_msg: Option<WorkerMessage> = None;
    let mut protocol_error: Option<String> = None;
    // The request being answered: the id the server gave it (the only one ever shown
    // outside the sandbox) and the id the worker chose (only echoed back to it).
    let mut pending: Option<(String, String)> = None;
    let mut requests: u64 = 0;
    let mut budget = spec.timeout;
    let mut running_since = Instant::now();
    let mut kill_reason: Option<KillReason> = None;
    let mut kill_sent = false;
    let mut pidfd: Option<OwnedFd> = None;
    let mut exit: Option<Value> = None;
    let mut proto_eof = false;
    let mut status_eof = false;
    let mut handle_gone = false;
    let mut grace: Option<tokio::time::Instant> = None;
    // Set once Event::Finished went out ahead of the exit report (`spec.early_finish`).
    let mut reported = false;

    loop {
        if kill_reason.is_some() && !kill_sent {
            if let Some(fd) = &pidfd {
                let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
                kill_sent = true;
            }
        }
        // The worker sent its final message after closing its stdout/stderr, and both
        // pipes are at EOF (no process of the tree holds them): the outcome is known.
        // Report it now; the loop goes on until the tree is gone (the timeout and kills
        // still apply) and only then releases the slot.
        if spec.early_finish
            && !reported
            && exit.is_none()
            && kill_reason.is_none()
            && protocol_error.is_none()
            && final_msg.is_some()
        {
            if let (Some(out), Some(err)) = (&out_res, &err_res) {
                let outcome = finish(
                    &spec,
                    oom_before,
                    started,
                    Ended {
                        kill_reason: None,
                        protocol_error: None,
                        final_msg: final_msg.clone(),
                        result: result.clone(),
                        exit: None,
                        early: true,
                    },
                    out.clone(),
                    err.clone(),
                    order.lock().map(|o| o.clone()).unwrap_or_default(),
                );
                reported = true;
                if !handle_gone {
                    let _ = events.send(Event::Finished(outcome)).await;
                }
            }
        }
        if (exit.is_some() || status_eof) && proto_eof {
            break;
        }
        if (exit.is_some() || status_eof) && grace.is_none() {
            grace = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
        let deadline = if pending.is_none() && kill_reason.is_none() {
            Some(tokio::time::Instant::from_std(running_since + budget))
        } else {
            None
        };
        tokio::select! {
            frame = protocol::read_frame(&mut proto_r), if !proto_eof => {
                match frame {
                    Ok(None) | Err(_) => proto_eof = true,
                    Ok(Some(Err(e))) => {
                        protocol_error.get_or_insert(e.to_string());
                        kill_reason.get_or_insert(KillReason::Protocol);
                        proto_eof = true;
                    }
                    Ok(Some(Ok(body))) => match protocol::parse_worker_frame(&body) {
                        Err(e) => {
                            protocol_error.get_or_insert(e.to_string());
                            kill_reason.get_or_insert(KillReason::Protocol);
                            proto_eof = true;
                        }
                        Ok(WorkerMessage::Result(v)) => result = Some(v),
                        Ok(WorkerMessage::LlmRequest { request_id, prompt, model }) => {
                            if final_msg.is_some() || pending.is_some() {
                                protocol_error.get_or_insert(FrameError::UnknownType("llm_request out of order".into()).to_string());
                                kill_reason.get_or_insert(KillReason::Protocol);
                                proto_eof = true;
                            } else {
                                // Pause the wall clock while the runner asks the LLM.
                                budget = budget.saturating_sub(running_since.elapsed());
                                // And stop the whole tree, so no other thread of the
                                // script runs while the clock does not.
                                // (Or as soon as the pidfd arrives, below.)
                                if let Some(fd) = &pidfd {
                                    let _ = sys::send_freeze(fd, true);
                                }
                                requests += 1;
                                let ours = requests.to_string();
                                pending = Some((ours.clone(), request_id));
                                if !handle_gone {
                                    let _ = events.send(Event::LlmRequest { request_id: ours, prompt, model }).await;
                                }
                            }
                        }
                        Ok(m @ (WorkerMessage::Done | WorkerMessage::Error { .. })) => {
                            final_msg.get_or_insert(m);
                        }
                    },
                }
            }
            msg = status.recv(), if !status_eof => {
                match msg {
                    Ok(Some((data, mut fds))) => {
                        let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                        match v.get("type").and_then(Value::as_str) {
                            Some("started") => {
                                if let Some(p) = v.get("pid").and_then(Value::as_i64) {
                                    pid_out.store(p as i32, Ordering::SeqCst);
                                }
                                if !fds.is_empty() {
                                    let fd = fds.remove(0);
                                    // A request that came in before the pidfd: stop now.
                                    if pending.is_some() {
                                        let _ = sys::send_freeze(&fd, true);
                                    }
                                    pidfd = Some(fd);
                                }
                            }
                            Some("proxy") => {
                                if let Some(tx) = proxy.take() {
                                    let _ = tx.send(egress_listeners(&v, std::mem::take(&mut fds)));
                                }
                            }
                            Some("exit") => {
                                exit = Some(v);
                                status_eof = true;
                            }
                            _ => {}
                        }
                    }
                    Ok(None) | Err(_) => status_eof = true,
                }
            }
            cmd = cmds.recv(), if !handle_gone => {
                match cmd {
                    Some(Cmd::Llm { request_id, response }) => {
                        if let Some((_, request_id)) = pending.take_if(|(ours, _)| *ours == request_id) {
                            if let Some(fd) = &pidfd {
                                let _ = sys::send_freeze(fd, false);
                            }
                            running_since = Instant::now();
                            let frame = json!({"type": "llm_response", "request_id": request_id, "response": response});
                            match protocol::encode_frame(&frame) {
                                Ok(f) => { let _ = frame_tx.send(f); }
                                Err(e) => {
                                    let frame = json!({"type": "llm_response", "request_id": request_id, "error": e.to_string()});
                                    if let Ok(f) = protocol::encode_frame(&frame) { let _ = frame_tx.send(f); }
                                }
                            }
                        }
                    }
                    Some(Cmd::Kill) => { kill_reason.get_or_insert(KillReason::Requested); }
                    None => {
                        handle_gone = true;
                        kill_reason.get_or_insert(KillReason::Dropped);
                    }
                }
            }
            _ = sleep_until_some(deadline), if deadline.is_some() => {
                kill_reason.get_or_insert(KillReason::Timeout);
            }
            _ = sleep_until_some(grace), if grace.is_some() => {
                break;
            }
            r = &mut out_task, if out_res.is_none() => out_res = Some(r.unwrap_or_default()),
            r = &mut err_task, if err_res.is_none() => err_res = Some(r.unwrap_or_default()),
        }
    }
    // Whatever happens, the tree must be dead before the slot is reused.
    if let Some(fd) = &pidfd {
        if exit.is_none() {
            let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
        }
    }
    drop(status);
    drop(frame_tx);
    writer.abort();
    let grace_out = Duration::from_secs(2);
    let (stdout, stdout_truncated) = match out_res {
        Some(r) => r,
        None => tokio::time::timeout(grace_out, out_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
    };
    let (stderr, stderr_truncated) = match err_res {
        Some(r) => r,
        None => tokio::time::timeout(grace_out, err_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
    };
    // The tree is gone (or was sent SIGKILL through its pidfd) and its pipes are closed.
    if reported {
        drop(release);
        return;
    }
    let outcome = finish(
        &spec,
        oom_before,
        started,
        Ended {
            kill_reason,
            protocol_error,
            final_msg,
            result,
            exit,
            early: false,
        },
        (stdout, stdout_truncated),
        (stderr, stderr_truncated),
        order.lock().map(|o| o.clone()).unwrap_or_default(),
    );
    drop(release);
    if !handle_gone {
        let _ = events.send(Event::Finished(outcome)).await;
    }
}

/// What the driver knows when an execution ends.
struct Ended {
    kill_reason: Option<KillReason>,
    protocol_error: Option<String>,
    final_msg: Option<WorkerMessage>,
    result: Option<Value>,
    /// The supervisor's exit report (`None` if it died, or with `early`).
    exit: Option<Value>,
    /// Reported on the worker's final message, before the exit report.
    early: bool,
}

fn finish(
    spec: &JobSpec,
    oom_before: Option<u64>,
    started: Instant,
    e: Ended,
    (stdout, stdout_truncated): (Vec<u8>, bool),
    (stderr, stderr_truncated): (Vec<u8>, bool),
    output_order: Vec<(OutputStream, usize)>,
) -> Outcome {
    let exit = e.exit.as_ref();
    let script = exit.and_then(|e| e.get("script")).and_then(parse_wait);
    let reaper = exit.and_then(|e| e.get("reaper")).and_then(parse_wait);
    let setup_error = exit
        .and_then(|e| e.get("setup_error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let scratch_exceeded =
        exit.and_then(|e| e.get("limit")).and_then(Value::as_str) == Some("scratch");
    let layers = exit
        .and_then(|e| e.get("layers"))
        .and_then(|l| serde_json::from_value::<LayerReport>(l.clone()).ok());
    let oom_killed = match (&spec.cgroup, oom_before) {
        (Some(c), Some(before)) => c.oom_kills() > before,
        _ => false,
    };
    let (status, error_type, error) = classify(Classify {
        oom_killed,
        scratch_exceeded,
        scratch_bytes: spec.scratch_bytes,
        kill_reason: e.kill_reason,
        timeout: spec.timeout,
        protocol_error: e.protocol_error,
        setup_error,
        final_msg: e.final_msg,
        script,
        reaper,
        exit_known: exit.is_some(),
        early: e.early,
        memory_bytes: spec.memory_bytes,
        cpu_seconds: spec.cpu_seconds,
    });
    Outcome {
        status,
        result: e.result,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        output_order,
        error_type,
        error,
        duration: started.elapsed(),
        layers,
    }
}

struct Classify {
    oom_killed: bool,
    /// Container tier: the reaper ended the execution for filling its scratch directory.
    scratch_exceeded: bool,
    scratch_bytes: u64,
    kill_reason: Option<KillReason>,
    timeout: Duration,
    protocol_error: Option<String>,
    setup_error: Option<String>,
    final_msg: Option<WorkerMessage>,
    script: Option<Wait>,
    reaper: Option<Wait>,
    exit_known: bool,
    /// Classified on the worker's final message, before the exit report.
    early: bool,
    memory_bytes: u64,
    cpu_seconds: u64,
}

fn describe_wait(w: Wait, c: &Classify) -> String {
    match w {
        Wait::Signal(libc::SIGXCPU) => format!("CPU time limit exceeded ({} s)", c.cpu_seconds),
        Wait::Signal(libc::SIGKILL) => format!(
            "killed by signal 9 (SIGKILL; possibly the memory limit of {} MiB)",
            c.memory_bytes >> 20
        ),
        Wait::Signal(s) => format!("killed by signal {s} ({})", sys::signal_name(s)),
        Wait::Code(125) => "sandbox setup failed in the script process".to_string(),
        Wait::Code(n) => format!("worker exited with status {n} without reporting a result"),
    }
}

fn classify(c: Classify) -> (OutcomeStatus, Option<String>, Option<String>) {
    use OutcomeStatus::*;
    match c.kill_reason {
        Some(KillReason::Timeout) => {
            return (
                Timeout,
                None,
                Some(format!(
                    "wall-clock timeout after {} s",
                    c.timeout.as_secs_f64()
                )),
            )
        }
        Some(KillReason::Protocol) => {
            return (
                Error,
                None,
                Some(format!(
                    "protocol violation by the worker: {}",
                    c.protocol_error.as_deref().unwrap_or("?")
                )),
            )
        }
        Some(KillReason::Requested) | Some(KillReason::Dropped) if c.final_msg.is_none() => {
            return (Error, None, Some("killed on request".into()))
        }
        _ => {}
    }
    if c.oom_killed && !matches!(c.final_msg, Some(WorkerMessage::Done)) {
        return (
            Error,
            Some("MemoryError".into()),
            Some(format!(
                "memory limit ({} MiB) exceeded: the kernel's OOM killer ended the script",
                c.memory_bytes >> 20
            )),
        );
    }
    if c.scratch_exceeded && !matches!(c.final_msg, Some(WorkerMessage::Done)) {
        return (
            Error,
            Some("OSError".into()),
            Some(format!(
                "scratch space limit ({} MiB) exceeded: the execution was ended",
                c.scratch_bytes >> 20
            )),
        );
    }
    if let Some(e) = &c.setup_error {
        return (Error, None, Some(format!("sandbox setup failed: {e}")));
    }
    if !c.exit_known && !c.early {
        return (
            Error,
            None,
            Some("the sandbox supervisor died (zygote crashed or was killed)".into()),
        );
    }
    match (&c.final_msg, c.script) {
        (
            Some(WorkerMessage::Error {
                error_type,
                message,
                traceback,
            }),
            _,
        ) => {
            let text = if traceback.is_empty() {
                format!("{error_type}: {message}")
            } else {
                traceback.clone()
            };
            (Error, Some(error_type.clone()), Some(text))
        }
        (Some(WorkerMessage::Done), Some(Wait::Code(0))) => (Completed, None, None),
        (Some(WorkerMessage::Done), None) if c.early => (Completed, None, None),
        (_, Some(w)) => (Error, None, Some(describe_wait(w, &c))),
        (_, None) => match c.reaper {
            Some(w) => (
                Error,
                None,
                Some(format!("sandbox reaper ended: {}", describe_wait(w, &c))),
            ),
            None => (
                Error,
                None,
                Some("the execution ended without a status".into()),
            ),
        },
    }
}

/// Sleeps until `at`; never returns when there is no deadline (a `select!` branch
/// guarded by `at.is_some()` never polls it then).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Classify {
        Classify {
            oom_killed: false,
            scratch_exceeded: false,
            scratch_bytes: 64 << 20,
            kill_reason: None,
            timeout: Duration::from_secs(5),
            protocol_error: None,
            setup_error: None,
            final_msg: Some(WorkerMessage::Done),
            script: Some(Wait::Code(0)),
            reaper: Some(Wait::Code(0)),
            exit_known: true,
            early: false,
            memory_bytes: 256 << 20,
            cpu_seconds: 3,
        }
    }

    #[test]
    fn classifies_outcomes() {
        assert_eq!(classify(base()).0, OutcomeStatus::Completed);
        let t = classify(Classify {
            kill_reason: Some(KillReason::Timeout),
            ..base()
        });
        assert_eq!(
            t,
            (
                OutcomeStatus::Timeout,
                None,
                Some("wall-clock timeout after 5 s".into())
            )
        );
        let seg = classify(Classify {
            final_msg: None,
            script: Some(Wait::Signal(libc::SIGSEGV)),
            ..base()
        });
        assert_eq!(
            seg.2.as_deref(),
            Some("killed by signal 11 (SIGSEGV: invalid memory reference)")
        );
        let cpu = classify(Classify {
            final_msg: None,
            script: Some(Wait::Signal(libc::SIGXCPU)),
            ..base()
        });
        assert_eq!(cpu.2.as_deref(), Some("CPU time limit exceeded (3 s)"));
        let err = classify(Classify {
            final_msg: Some(WorkerMessage::Error {
                error_type: "ValueError".into(),
                message: "bad".into(),
                traceback: String::new(),
            }),
            ..base()
        });
        assert_eq!(
            err,
            (
                OutcomeStatus::Error,
                Some("ValueError".into()),
                Some("ValueError: bad".into())
            )
        );
        let crashed = classify(Classify {
            exit_known: false,
            final_msg: None,
            script: None,
            ..base()
        });
        assert_eq!(crashed.0, OutcomeStatus::Error);
        // Reported on the final message, before the supervisor's exit report.
        let early = Classify {
            early: true,
            exit_known: false,
            script: None,
            reaper: None,
            ..base()
        };
        assert_eq!(classify(early), (OutcomeStatus::Completed, None, None));
        let early_err = classify(Classify {
            early: true,
            exit_known: false,
            script: None,
            reaper: None,
            final_msg: Some(WorkerMessage::Error {
                error_type: "KeyError".into(),
                message: "'x'".into(),
                traceback: String::new(),
            }),
            ..base()
        });
        assert_eq!(early_err.1.as_deref(), Some("KeyError"));
    }
}

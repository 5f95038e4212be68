"""Airlock's sandbox worker: the warm zygote loop and the per-job runner.

Run by the sandbox helper as ``python -s -S -c <this file> MODE ...`` (never imported by
scripts). In ``zygote`` mode it pre-imports common modules once, then forks a spare
ahead of each job; the child calls the helper's Rust isolation routine through ctypes,
which returns only in the fully isolated script process, rehearses a job on /dev/null
(so its copy-on-write faults happen before anyone waits), and then calls the helper
again to wait for the job's file descriptors (the server sends four fds, never the job
itself, to the spare's supervisor). In ``run`` mode (cold start) isolation and the fds are in place before exec.
The zygote hands each spare's socket to the server, which sends the job's fds straight to
the spare's supervisor; the zygote forks the next spare once the server asks for it and
the previous spare has taken its job (or died).
Either way ``run_job`` reads the job from fd 3 and runs the script.
"""

import sys
import os

import gc, json, linecache, random, signal, socket, time, traceback, types  # noqa: E401

# Imported once by the warm zygote: every execution forked from it gets them for free.
# (A cold worker skips them: it pays for an interpreter start already.)
PREIMPORTS = (
    "base64 binascii bisect calendar collections collections.abc contextlib copy csv "
    "dataclasses datetime decimal difflib enum fractions functools hashlib heapq hmac html "
    "io itertools math operator pprint re secrets statistics string struct textwrap "
    "threading typing unicodedata uuid urllib.parse zlib gzip array ipaddress pathlib "
    "shlex tempfile ctypes select urllib.request http.client ssl email.message zoneinfo "
    "sqlite3"
).split()


def _preimport(extra=()):
    for name in PREIMPORTS:
        try:
            __import__(name)
        except Exception:  # pragma: no cover - depends on the interpreter build
            pass
    # Operator-chosen modules (installed packages such as pandas).
    for name in extra:
        try:
            __import__(name)
        except BaseException as e:  # noqa: BLE001 - a bad module must not stop the zygote
            os.write(2, ("airlock zygote: pre-import of %s failed: %s: %s\n" % (name, type(e).__name__, e)).encode())


SCRIPT = "<script>"
SDK = "<airlock>"


def _load_sdk(src):
    mod = types.ModuleType("airlock")
    mod.__file__ = SDK
    exec(compile(src, SDK, "exec"), mod.__dict__)
    sys.modules["airlock"] = mod
    return mod


def _set_paths(paths_json):
    sys.path[:] = [p for p in sys.path if p and p != "."]
    for p in json.loads(paths_json):
        if p not in sys.path:
            sys.path.append(p)


def _format_tb(exc):
    """Traceback with only the script's frames (and library frames it called)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != SCRIPT:
        tb = tb.tb_next
    entries = [fs for fs in traceback.extract_tb(tb) if fs.filename != SDK]
    out = []
    if entries:
        out.append("Traceback (most recent call last):\n")
        out.extend(traceback.format_list(entries))
    out.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(out)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _start(sdk, msg):
    """Sets the process up for the job in ``msg``; returns the script's globals."""
    cwd = os.getcwd()
    if cwd != "/tmp":
        # Container tier: the execution's scratch directory is its working directory,
        # not /tmp; HOME and TMPDIR (and so ``tempfile``) point there.
        os.environ["HOME"] = os.environ["TMPDIR"] = cwd
        tempfile = sys.modules.get("tempfile")
        if tempfile is not None:
            tempfile.tempdir = None
    for k, v in (msg.get("env") or {}).items():
        os.environ[str(k)] = str(v)
    for p in msg.get("python_paths") or []:
        if isinstance(p, str) and p not in sys.path:
            sys.path.append(p)
    sdk._init(3, msg.get("settings") or {})
    script = msg["script"]
    main = types.ModuleType("__main__")
    g = main.__dict__
    g.update(
        __builtins__=__builtins__,
        settings=sdk.settings,
        set_result=sdk.set_result,
        llm=sdk.llm,
        airlock=sdk,
    )
    sys.modules["__main__"] = main
    sys.argv = [SCRIPT]
    linecache.cache[SCRIPT] = (len(script), None, script.splitlines(True), SCRIPT)
    random.seed(0)
    _seed_numpy()
    return g


def _fix_numpy_random(npr):
    """numpy seeds its global generator, and every ``default_rng()`` without a seed,
    from the OS: seed the global one with 0, and give the n-th unseeded
    ``default_rng()`` of the execution the seed sequence (entropy 0, spawn key n)."""
    npr.seed(0)
    make = getattr(npr, "_airlock_default_rng", None) or npr.default_rng
    sequence = npr.SeedSequence
    calls = [0]

    def default_rng(seed=None):
        if seed is None:
            seed = sequence(0, spawn_key=(calls[0],))
            calls[0] += 1
        return make(seed)

    default_rng.__doc__ = make.__doc__
    npr._airlock_default_rng = make
    npr.default_rng = default_rng


class _NumpyRandomHook:
    """A meta-path finder that fixes ``numpy.random`` as soon as it is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "numpy.random":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _fix_numpy_random(module)

        loader.exec_module = exec_module
        return spec


def _seed_numpy():
    """Makes numpy's random numbers the same in every run: now when a warm worker
    pre-imported it, else when the script imports it."""
    npr = sys.modules.get("numpy.random")
    if npr is not None:
        try:
            _fix_numpy_random(npr)
        except Exception:  # noqa: BLE001 - an unusual numpy must not stop the script
            pass
    elif not any(isinstance(f, _NumpyRandomHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _NumpyRandomHook())


def _execute(g, script, limits):
    """Runs the script; returns the final message for the runner."""
    final = {"type": "done"}
    try:
        code = compile(script, SCRIPT, "exec", dont_inherit=True)
        exec(code, g)
    except SystemExit as e:
        code = e.code
        if code not in (None, 0):
            final = {
                "type": "error",
                "error_type": "SystemExit",
                "message": "script exited with status %s" % (code,),
                "traceback": "",
            }
    except MemoryError:
        mib = int(limits.get("memory_bytes", 0)) // (1024 * 1024)
        final = {
            "type": "error",
            "error_type": "MemoryError",
            "message": "memory limit (%d MiB) exceeded" % mib,
            "traceback": "",
        }
    except BaseException as e:  # noqa: BLE001 - everything the script raises is reported
        try:
            final = {
                "type": "error",
                "error_type": type(e).__name__,
                "message": str(e),
                "traceback": _format_tb(e),
            }
        except BaseException:
            final = {"type": "error", "error_type": type(e).__name__, "message": "", "traceback": ""}
    return final


REHEARSAL = """\
value = settings.get("AIRLOCK_REHEARSAL")
set_result({"value": value, "items": [1, 2.5, None, True], "keys": settings.keys()})
print(value)
"""


def _rehearse(sdk):
    """Runs a made-up job in the isolated spare before the real one exists.

    fd 3 is /dev/null until the job arrives, so nothing leaves the process. The pages a
    job writes (reference counts of shared objects, allocator arenas, the compiler and
    JSON machinery) are copied now, while the slot is idle, instead of on the caller's
    clock. The real job replaces every piece of state this touches.
    """
    saved_main = sys.modules.get("__main__")
    try:
        msg = json.loads(json.dumps({
            "type": "run", "script": REHEARSAL, "settings": {"AIRLOCK_REHEARSAL": "x" * 16},
            "env": {}, "python_paths": [], "limits": {},
        }))
        g = _start(sdk, msg)
        null = open(os.devnull, "w")
        real_stdout, sys.stdout = sys.stdout, null
        try:
            sdk._channel.send(_execute(g, msg["script"], {}))
        finally:
            sys.stdout = real_stdout
            null.close()
    except BaseException:  # noqa: BLE001 - a failed rehearsal only costs speed
        pass
    finally:
        sdk._init(3, {})
        linecache.cache.pop(SCRIPT, None)
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def run_job(sdk):
    """Runs one job in the (already isolated) script process. Never returns."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except Exception:
        pass
    try:
        channel = sdk._Channel(3)
        msg = channel.recv()
    except Exception as e:
        os.write(2, ("airlock worker: cannot read the job: %r\n" % (e,)).encode())
        os._exit(3)
    if not msg or msg.get("type") != "run" or not isinstance(msg.get("script"), str):
        os.write(2, b"airlock worker: no run frame\n")
        os._exit(3)
    limits = msg.get("limits") or {}
    g = _start(sdk, msg)
    final = _execute(g, msg["script"], limits)
    _flush()
    # Close stdout/stderr before the final message: once the runner has both pipes at
    # EOF and this message, the outcome is known and the tree's teardown can finish off
    # its critical path (if another process still holds a pipe, it waits as before).
    for fd in (1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        sdk._channel.send(final)
    except BaseException:
        try:
            sdk._channel.send({"type": "error", "error_type": "InternalError", "message": "could not report", "traceback": ""})
        except BaseException:
            pass
    os._exit(0)


def zygote(ctrl_fd, isolate_addr, await_addr, sdk, extra=(), tier="full"):
    import ctypes
    import select

    _preimport(extra)
    isolate = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)(isolate_addr)
    await_job = ctypes.PYFUNCTYPE(ctypes.c_int)(await_addr)
    sock = socket.socket(fileno=ctrl_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically

    def make_spare():
        """Forks the next execution ahead of time: it isolates itself, then waits.

        Returns our end of the supervisor's socket (at EOF once the supervisor has its
        job, or has died) and
        the server's end of the script process's job socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        job_srv, job_s = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener = None
        if tier == "container":
            # The spare's own proxy listener on the shared loopback, made before the
            # fork: its port goes into the script process's Landlock rules and is
            # announced with the spare.
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
        req = json.dumps({
            "spare": theirs.fileno(), "zygote_pid": os.getpid(),
            "job_srv": job_srv.fileno(), "job_s": job_s.fileno(),
            "proxy_fd": listener.fileno() if listener else None,
            "proxy_port": listener.getsockname()[1] if listener else None,
        }).encode()
        port = listener.getsockname()[1] if listener else None
        _flush()
        if os.fork() == 0:
            # Python objects must not close fd numbers the isolation code reuses.
            for s in (sock, ours, theirs, job_srv, job_s) + ((listener,) if listener else ()):
                s.detach()
            isolate(req, len(req))  # returns only in the isolated script process
            _rehearse(sdk)
            await_job()  # the job's fds are in place when it returns
            run_job(sdk)
            os._exit(0)
        theirs.close()
        job_s.close()
        if listener:
            listener.close()
        return ours, job_srv, port

    def announce(spare, job_srv, port):
        """Hands the server the spare's sockets: the job goes there, not through us."""
        msg = json.dumps({"type": "spare", "port": port}).encode()
        socket.send_fds(sock, [msg], [spare.fileno(), job_srv.fileno()])
        job_srv.close()

    # Everything allocated so far is shared copy-on-write with every execution: keep the
    # collector from touching (and so copying) it in the children.
    gc.collect()
    gc.freeze()
    spare, job_srv, port = make_spare()
    sock.send(b'{"type":"ready"}')
    announce(spare, job_srv, port)
    # Spares the server asked for (`prepare`) and not yet forked: the next one is forked
    # once it is asked for and the previous spare has taken its job (or died); the
    # server asks once the last execution is over and delivered, or for a waiting job.
    asked = 0
    while True:
        try:
            readable, _, _ = select.select([sock] if spare is None else [sock, spare], [], [])
        except InterruptedError:
            continue
        if spare is not None and spare in readable:
            # The spare's supervisor has its job (it closed the socket), or it died.
            spare.close()
            spare = None
        if sock in readable:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 8)
            except InterruptedError:
                continue
            if not msg and not fds:
                os._exit(0)
            for fd in fds:  # the server sends no fds; never keep a stray one
                os.close(fd)
            if msg == b'{"type":"prepare"}':
                asked += 1
        if spare is None and asked:
            asked -= 1
            spare, job_srv, port = make_spare()
            announce(spare, job_srv, port)


def main():
    mode = sys.argv[1]
    if mode == "zygote":
        ctrl_fd, isolate_addr, await_addr = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        sdk_src, paths = sys.argv[5], sys.argv[6]
        extra = json.loads(sys.argv[7]) if len(sys.argv) > 7 else []
        tier = sys.argv[8] if len(sys.argv) > 8 else "full"
        _set_paths(paths)
        sdk = _load_sdk(sdk_src)
        sys.argv = [SCRIPT]
        zygote(ctrl_fd, isolate_addr, await_addr, sdk, extra, tier)
    elif mode == "run":
        sdk_src, paths = sys.argv[2], sys.argv[3]
        _set_paths(paths)
        sdk = _load_sdk(sdk_src)
        sys.argv = [SCRIPT]
        run_job(sdk)
    else:
        sys.exit("unknown mode")


main()

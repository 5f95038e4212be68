"""Airlock's in-sandbox SDK.

Scripts see these names as globals and through ``import airlock``:

* ``settings.get(name, default=None)`` / ``settings.keys()``: the profile's settings.
* ``set_result(obj)``: the execution's JSON result (the last call wins).
* ``llm.complete(prompt, model="default")``: ask the operator's LLM; blocks until the
  runner answers.
* ``airlock.now()``: the execution's clock, a UTC ``datetime`` fixed when the
  execution started (the same value on every call; recorded with the execution's
  inputs), for scripts whose numbers depend on "today".

The module is compiled into the sandbox's interpreter from the server binary (no file
on disk). It talks to the runner over file descriptor 3 with frames of a 4-byte
big-endian length followed by a UTF-8 JSON object.
"""

import json as _json
import os as _os
import threading as _threading

MAX_FRAME = 8 * 1024 * 1024
MAX_PROMPT_BYTES = 256 * 1024
MAX_MODEL_CHARS = 200

__all__ = ["settings", "set_result", "llm", "now"]


class _Channel:
    """Framed JSON over a raw file descriptor."""

    def __init__(self, fd):
        self._fd = fd
        self._send_lock = _threading.Lock()

    def send_bytes(self, body):
        if len(body) > MAX_FRAME:
            raise ValueError(
                "message of %d bytes exceeds the %d-byte limit" % (len(body), MAX_FRAME)
            )
        data = len(body).to_bytes(4, "big") + body
        with self._send_lock:
            view = memoryview(data)
            while view:
                n = _os.write(self._fd, view)
                view = view[n:]

    def send(self, obj):
        self.send_bytes(_json.dumps(obj, allow_nan=False, ensure_ascii=False).encode("utf-8"))

    def _read_exact(self, n):
        chunks = []
        while n:
            chunk = _os.read(self._fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv(self):
        """Next frame as a dict, or None at end of stream."""
        head = self._read_exact(4)
        if head is None:
            return None
        size = int.from_bytes(head, "big")
        if size > MAX_FRAME:
            raise RuntimeError("airlock: oversized frame from the runner")
        body = self._read_exact(size)
        if body is None:
            return None
        msg = _json.loads(body.decode("utf-8"))
        if not isinstance(msg, dict):
            raise RuntimeError("airlock: malformed frame from the runner")
        return msg


_channel = None


class _Settings:
    """Read-only view of the profile's settings."""

    def __init__(self):
        self._values = {}

    def get(self, name, default=None):
        if not isinstance(name, str):
            raise TypeError("settings.get: name must be a str")
        return self._values.get(name, default)

    def keys(self):
        return sorted(self._values)

    def __contains__(self, name):
        return name in self._values

    def __repr__(self):
        return "<airlock settings: %s>" % ", ".join(self.keys())


settings = _Settings()


def set_result(obj):
    """Set the execution's result. It must be JSON-serializable (no NaN/Infinity)."""
    try:
        text = _json.dumps(obj, allow_nan=False, ensure_ascii=False)
    except ValueError as e:
        raise ValueError(
            "set_result: value is not valid JSON (%s); NaN and Infinity are not allowed" % e
        ) from None
    except TypeError as e:
        raise TypeError("set_result: value is not JSON-serializable: %s" % e) from None
    except RecursionError:
        raise ValueError("set_result: value is nested too deeply (or is circular)") from None
    body = ('{"type":"result","value":' + text + "}").encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ValueError(
            "set_result: result is %d bytes, more than the %d-byte limit" % (len(body), MAX_FRAME)
        )
    _channel.send_bytes(body)


def now():
    """The execution's clock: a timezone-aware UTC datetime, fixed at the start."""
    import datetime as _dt

    text = _os.environ.get("AIRLOCK_NOW")
    if not text:
        raise RuntimeError("airlock.now(): the execution has no clock (AIRLOCK_NOW unset)")
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class _LLM:
    def __init__(self):
        self._lock = _threading.Lock()
        self._next_id = 0

    def complete(self, prompt, model="default"):
        """Send ``prompt`` to the runner's LLM and return its answer (a str)."""
        if not isinstance(prompt, str):
            raise TypeError("llm.complete: prompt must be a str")
        if not isinstance(model, str):
            raise TypeError("llm.complete: model must be a str")
        size = len(prompt.encode("utf-8", "surrogatepass"))
        if size > MAX_PROMPT_BYTES:
            raise ValueError(
                "llm.complete: prompt is %d bytes, more than the %d-byte limit"
                % (size, MAX_PROMPT_BYTES)
            )
        if len(model) > MAX_MODEL_CHARS or not model:
            raise ValueError(
                "llm.complete: model name must be 1 to %d characters" % MAX_MODEL_CHARS
            )
        with self._lock:
            self._next_id += 1
            request_id = str(self._next_id)
            _channel.send(
                {"type": "llm_request", "request_id": request_id, "prompt": prompt, "model": model}
            )
            while True:
                msg = _channel.recv()
                if msg is None:
                    raise RuntimeError("llm.complete: the connection to Airlock was closed")
                if msg.get("type") != "llm_response" or msg.get("request_id") != request_id:
                    continue
                if msg.get("error") is not None:
                    raise RuntimeError("llm.complete failed: %s" % msg.get("error"))
                response = msg.get("response")
                if not isinstance(response, str):
                    raise RuntimeError("llm.complete: malformed response from Airlock")
                return response


llm = _LLM()


def _init(fd, values):
    """Called once by the worker before the script runs."""
    global _channel
    _channel = _Channel(fd)
    settings._values = {str(k): str(v) for k, v in dict(values).items()}
    return _channel

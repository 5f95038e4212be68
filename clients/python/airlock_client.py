"""Airlock client for Python: standard library only, one module.

    from airlock_client import Airlock
    ab = Airlock("http://127.0.0.1:9090", os.environ["AIRLOCK_KEY"])
    ex = ab.run("set_result(6 * 7)", llm=lambda prompt, model: my_model(prompt))
    print(ex["status"], ex["result"])

The key (``ark_ID:SECRET``) stays in this process: only the id part is sent, and
each request is signed with HMAC-SHA256 of the secret over a timestamp, a fresh
nonce and the script, so a captured request cannot be sent again.
"""

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request

__all__ = ["Airlock", "AirlockError"]

TERMINAL = ("completed", "error", "timeout", "denied")


class AirlockError(Exception):
    """An error answer from Airlock: ``status`` (HTTP), ``code`` and ``detail``."""

    def __init__(self, status, code, detail):
        super().__init__(f"Airlock answered {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Airlock:
    def __init__(self, url, key=None, timeout=90):
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._key_id = self._secret = None
        if key:
            key_id, sep, secret = key.strip().partition(":")
            if not sep or not key_id.startswith("ark_") or not secret:
                raise ValueError("key must look like ark_<id>:<secret>")
            self._key_id, self._secret = key_id, secret

    def __repr__(self):
        return f"Airlock({self.url!r}, key={'ark_…:***' if self._key_id else None})"

    def _call(self, method, path, body=None, auth=True):
        headers = {"Content-Type": "application/json"}
        if auth:
            if not self._key_id:
                raise ValueError("this call needs a profile key")
            headers["Authorization"] = "Bearer " + self._key_id
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())
            except ValueError:
                err = {}
            raise AirlockError(e.code, err.get("code", ""), err.get("detail", str(e))) from None
        return json.loads(raw) if raw else None

    def sign(self, script, ts=None, nonce=None):
        """The signing fields of ``POST /execute`` for ``script``: ``{"hash", "ts",
        "nonce"}``, the hash being hex HMAC-SHA256 (keyed with the secret) of
        ``ts + "\\n" + nonce + "\\n" + script``; now and a fresh nonce by default."""
        ts = int(time.time()) if ts is None else int(ts)
        nonce = secrets.token_urlsafe(24) if nonce is None else nonce
        message = f"{ts}\n{nonce}\n{script}".encode()
        digest = hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()
        return {"hash": digest, "ts": ts, "nonce": nonce}

    # --- agent catalog (no key needed) ---
    def credentials(self):
        return self._call("GET", "/credentials", auth=False)["credentials"]

    def declare(self, credentials, message=None):
        """Declare slots: ``{"NAME": "description", ...}`` → ``{"created", "skipped",
        "reopened"}``. ``message`` tells the operator why (shown with the request)."""
        items = [{"name": n, "description": d} for n, d in credentials.items()]
        body = {"credentials": items}
        if message:
            body["message"] = message
        return self._call("POST", "/credentials", body, auth=False)

    def profiles(self):
        return self._call("GET", "/profiles", auth=False)["profiles"]

    def create_profile(self, description, credentials=(), message=None):
        """An unlocked profile; its ``request`` says whether the operator accepted or
        rejected it (with ``reason``)."""
        body = {"description": description, "credentials": list(credentials)}
        if message:
            body["message"] = message
        return self._call("POST", "/profiles", body, auth=False)

    # --- executions (key needed) ---
    def submit(self, script, timeout=None, llm_timeout=None):
        body = {"script": script, **self.sign(script)}
        if timeout is not None:
            body["timeout"] = timeout
        if llm_timeout is not None:
            body["llm_timeout"] = llm_timeout
        return self._call("POST", "/execute", body)["execution_id"]

    def get(self, execution_id, wait=0):
        return self._call("GET", f"/executions/{execution_id}?wait={int(wait)}")

    def respond(self, execution_id, response, request_id=None):
        body = {"response": response}
        if request_id is not None:
            body["request_id"] = request_id
        return self._call("POST", f"/executions/{execution_id}/respond", body)

    def wait_for_approval(self, execution_id, timeout=None, on_pending=None):
        """Waits while the execution is ``awaiting_approval`` (a profile with script
        approval); returns it once an approver decided: running or later, or
        ``denied`` with the reason in ``error``. ``on_pending(approval_url)`` is
        called once, to hand the link to a person. Raises ``TimeoutError`` after
        ``timeout`` seconds (default: wait as long as the server lets it wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A first look without waiting: a long-poll returns only once someone decided.
        ex = self.get(execution_id)
        if ex["status"] == "awaiting_approval" and on_pending is not None:
            on_pending(ex.get("approval_url"))
        while ex["status"] == "awaiting_approval":
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{execution_id} still awaits approval at {ex.get('approval_url')}")
            wait = 30 if deadline is None else max(0, min(30, deadline - time.monotonic()))
            ex = self.get(execution_id, wait=wait)
        return ex

    def run(self, script, llm=None, timeout=None, llm_timeout=None, on_approval=None):
        """Submits ``script``, answers ``llm.complete`` pauses with
        ``llm(prompt, model) -> str``, and returns the finished execution. When
        the profile asks a person to approve it, ``on_approval(approval_url)`` is
        called once and the wait goes on until they decide."""
        execution_id = self.submit(script, timeout=timeout, llm_timeout=llm_timeout)
        ex = self.wait_for_approval(execution_id, on_pending=on_approval)
        while True:
            if ex["status"] in TERMINAL:
                return ex
            if ex["status"] == "awaiting_llm":
                request = ex["llm_request"]
                if llm is None:
                    raise RuntimeError("the script called llm.complete but run() got no llm callable")
                answer = llm(request["prompt"], request["model"])
                self.respond(execution_id, str(answer), request["request_id"])
            ex = self.get(execution_id, wait=30)

//! `GET /skill.md`: the instance describing itself to an agent.
//!
//! An agent that has never seen Airlock reads this one page and can onboard
//! itself: what the instance is, its URL, the flow, every agent endpoint, how to
//! sign a script, the in-script SDK, the profiles that exist right now, the
//! limits and the error codes. It never contains a value or a key secret: it is
//! built only from the same views the agent API serves.

use crate::app::AppState;
use crate::catalog::ProfileView;
use crate::error::ApiResult;

/// Renders the markdown for `base` (the instance's public URL).
pub async fn render(state: &AppState, base: &str) -> ApiResult<String> {
    let profiles = state.catalog.list_profiles().await?;
    let limits = &state.runner.limits;
    let sandbox = match state.runner.sandbox() {
        Some(sb) => match sb.layers().tier {
            airlock_sandbox::Tier::Full => "ready, full tier (own namespaces, read-only filesystem view; /tmp is the scratch space)".to_string(),
            airlock_sandbox::Tier::Container => "ready, container tier (no namespaces: write only to the working directory, which is also HOME and TMPDIR, not to /tmp; only TCP through the proxy; no subprocess may start its own session or process group)".to_string(),
        },
        None => format!(
            "UNAVAILABLE ({}); executions are refused until the operator fixes it",
            state.runner.unavailable_reason().unwrap_or("unknown")
        ),
    };
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(&HEADER.replace("{base}", base));
    out.push_str(&format!(
        "\n## This instance\n\n- URL: {base}\n- Version: {}\n- Sandbox: {sandbox}\n- Limits: timeout 1..={} s (default {} s), script ≤ {} bytes, stdout/stderr kept up to {} bytes each, \
         LLM answer wait ≤ {} s, {} concurrent executions (and {} more paused in `llm.complete`), queue of {}.\n",
        env!("CARGO_PKG_VERSION"),
        limits.max_timeout_secs,
        limits.default_timeout_secs,
        limits.max_script_bytes,
        limits.output_cap_bytes,
        limits.llm_wait.as_secs(),
        limits.concurrency,
        limits.max_paused,
        limits.queue_size,
    ));
    out.push_str("\n## Profiles on this instance\n\n");
    if profiles.is_empty() {
        out.push_str("None yet. Create one with `POST /profiles` (step 2 below).\n");
    }
    for p in &profiles {
        out.push_str(&profile_line(p, base));
    }
    out.push_str(&BODY.replace("{base}", base));
    Ok(out)
}

/// The static `SKILL.md` of the repository: the same guide for an agent whose
/// operator has not deployed Airlock yet, with deployment steps. Generated
/// from the same text as `/skill.md` so the two cannot drift apart
/// (`airlock skill > SKILL.md`; a test checks the file is current).
pub fn static_markdown() -> String {
    let base = "http://127.0.0.1:9090";
    let mut out = HEADER.replace("{base}", base);
    out.push_str(DEPLOY);
    out.push_str(&BODY.replace("{base}", base));
    out
}

const DEPLOY: &str = r#"
This is the static copy of the guide. A running instance serves its own version at
`GET /skill.md`, with its URL, limits and the profiles that exist; prefer that one.

## Deploying Airlock (ask the operator to do this)

On a Linux host (root, kernel with user namespaces and Landlock) with a Rust toolchain
and CPython 3 with its shared library (`apt-get install python3 libpython3.11`):

```text
git clone <the Airlock repository> && cd airlock
cargo run --release            # serves http://127.0.0.1:9090, data in ./airlock-data
```

Configuration is by environment variables (`AIRLOCK_BIND`, `AIRLOCK_DATA_DIR`,
`AIRLOCK_MASTER_KEY_FILE`, `AIRLOCK_PUBLIC_URL`, ... see the README). The operator opens
the URL, sets the admin password, and from then on fills credential values and locks
profiles in the web UI. Put it behind a TLS reverse proxy before exposing it beyond
localhost. The examples below assume `http://127.0.0.1:9090`; replace it with the
instance's URL (or set `AIRLOCK_URL`).
"#;

fn profile_line(p: &ProfileView, base: &str) -> String {
    let state = if p.revoked {
        "revoked"
    } else if p.expired {
        "expired"
    } else if p.locked {
        "locked"
    } else {
        "unlocked (waiting for the operator)"
    };
    let creds = if p.credentials.is_empty() {
        "no credentials".to_string()
    } else {
        p.credentials
            .iter()
            .map(|c| {
                let sealed = match (&c.database, c.mode) {
                    (Some(d), _) => format!(
                        ", sealed PostgreSQL login {}@{}:{}/{}{}",
                        d.user,
                        d.host,
                        d.port,
                        d.database,
                        if d.read_only { " (read-only)" } else { "" }
                    ),
                    (None, airlock_store::CredentialMode::Sealed) => {
                        format!(", sealed to {}", c.bound_hosts.join(" "))
                    }
                    (None, _) => String::new(),
                };
                format!(
                    "`{}` ({}{sealed})",
                    c.name,
                    if c.value_exists {
                        "value set"
                    } else {
                        "VALUE MISSING"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hosts = match &p.allowed_hosts {
        None => "unrestricted network (any public host) ⚠".to_string(),
        Some(h) if h.is_empty() => "no network".to_string(),
        Some(h) => h.join(", "),
    };
    let expiry = p
        .expires_at
        .map(|e| e.to_rfc3339())
        .unwrap_or_else(|| "never".into());
    format!(
        "- `{}` — {} — {state}; expires: {expiry}; credentials: {creds}; allowed hosts: {hosts}. Operator page: {base}/ui/profiles/{}\n",
        p.id,
        if p.description.is_empty() {
            "(no description)"
        } else {
            &p.description
        },
        p.id,
    )
}

const HEADER: &str = r#"# Airlock — skill for agents

Airlock runs your Python scripts with production credentials that you never see.
A person (the operator) types credential values into Airlock's web UI; you only
ever learn whether a value exists. You send a script signed with your profile
key; Airlock runs it in an isolated sandbox with the credentials available
through `settings.get(NAME)`, scrubs every secret from the output, and returns
the result. Business numbers come out the same every time: compute them in the
script, not in your head.

**Never ask the user to paste a secret into the chat.** Send them to the web UI
({base}) to fill in values and lock the profile.
"#;

const BODY: &str = r#"
## Onboarding, step by step

1. **Declare the credentials you need** (names only, never values):
   `POST {base}/credentials` with
   `{"credentials": [{"name": "STRIPE_KEY", "description": "Stripe restricted key, read-only charges"}], "message": "for the monthly revenue report"}`
   → `201 {"created": [...], "skipped": [...], "reopened": [...]}` (existing names are
   skipped, never changed). Names: `[A-Za-z_][A-Za-z0-9_]{0,63}`. `message` (optional, at
   most 1000 characters) tells the operator why.
2. **Create a profile** (a scoped set of credentials):
   `POST {base}/profiles` with `{"description": "monthly revenue report", "credentials": ["STRIPE_KEY"], "message": "reads charges, writes nothing"}`
   → `201` profile JSON with its `id`. Add or remove credentials later with
   `POST|DELETE {base}/profiles/{id}/credentials` and `{"credentials": [names]}` while it is unlocked.
3. **Ask the operator** to open `{base}/ui/profiles/<id>`, fill in the values, set the
   allowed hosts, and lock the profile. Locking shows them a key `ark_<id>:<secret>` once;
   they give it to you (for example as the `AIRLOCK_KEY` environment variable).
   Check progress with `GET {base}/profiles/<id>` (`locked`, `value_exists`, `request`).
   What you ask for is a request the operator answers: `request.status` is `pending`,
   then `accepted` or `rejected` with `request.reason` (on the profile, and on each slot
   in `GET {base}/credentials`). After a rejection, read the reason and revise: changing
   the profile's credentials, or declaring the slot again with a new `message`, asks again.
4. **Execute**: sign the current time, a fresh nonce and the exact script text, submit
   them; poll for the result.

## Signing and running a script (Python, standard library only)

Set `AIRLOCK_KEY` to the key and run:

```python
import hashlib, hmac, json, os, secrets, time, urllib.request

URL = os.environ.get("AIRLOCK_URL", "{base}")
KEY_ID, SECRET = os.environ["AIRLOCK_KEY"].split(":", 1)

def call(method, path, body=None):
    req = urllib.request.Request(
        URL + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + KEY_ID, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)

script = "set_result({'credentials': settings.keys(), 'answer': 6 * 7})"
ts, nonce = int(time.time()), secrets.token_urlsafe(24)  # a fresh nonce per request
digest = hmac.new(SECRET.encode(), f"{ts}\n{nonce}\n{script}".encode(), hashlib.sha256).hexdigest()
run = call("POST", "/execute", {"script": script, "hash": digest, "ts": ts, "nonce": nonce, "timeout": 30})
while True:
    ex = call("GET", "/executions/" + run["execution_id"] + "?wait=30")
    if ex["status"] == "awaiting_llm":
        answer = "Revenue grew."  # ask your own model here, with ex["llm_request"]["prompt"]
        call("POST", "/executions/" + ex["execution_id"] + "/respond",
             {"response": answer, "request_id": ex["llm_request"]["request_id"]})
    elif ex["status"] == "awaiting_approval":  # the profile wants a person to approve it
        print("ask the operator to approve:", ex["approval_url"])
    elif ex["status"] in ("completed", "error", "timeout", "denied"):
        break
print(ex["status"], json.dumps(ex["result"]), ex["stdout"], ex["error"] or "")
```

## The same from a shell (curl, openssl, jq)

```sh
URL="${AIRLOCK_URL:-{base}}"
KEY_ID="${AIRLOCK_KEY%%:*}"; SECRET="${AIRLOCK_KEY#*:}"
SCRIPT='set_result(6 * 7)'
TS=$(date +%s); NONCE=$(openssl rand -hex 16)
HASH=$(printf '%s\n%s\n%s' "$TS" "$NONCE" "$SCRIPT" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //')
ID=$(curl -sf -X POST "$URL/execute" -H "Authorization: Bearer $KEY_ID" \
  -H 'Content-Type: application/json' \
  -d "$(jq -n --arg s "$SCRIPT" --arg h "$HASH" --argjson t "$TS" --arg n "$NONCE" \
        '{script: $s, hash: $h, ts: $t, nonce: $n}')" | jq -r .execution_id)
while :; do  # each long-poll returns when the status changes; stop at a final one
  EX=$(curl -sf "$URL/executions/$ID?wait=30" -H "Authorization: Bearer $KEY_ID")
  case "$(printf '%s' "$EX" | jq -r .status)" in completed|error|timeout|denied) break ;; esac
done
printf '%s' "$EX" | jq -c '{status, result}'
```

The hash is the lowercase hex HMAC-SHA256 of `ts + "\n" + nonce + "\n" + script`
(UTF-8), keyed with the part of the key after `:`; `ts` is the current Unix time in
seconds (the server accepts ±300 s) and `nonce` a fresh random string of 16 to 128
characters from `A-Z a-z 0-9 _ -`. The server refuses a nonce it has seen
(`403 replayed`), so a captured request cannot be sent again. Send only the part
before `:` in `Authorization: Bearer`. The secret never travels. (Profiles made
before replay protection existed may still accept the old form, the HMAC of the
script alone; the form above works on every profile.)

## When a person must approve the script

A profile may require approval (`"approval": "first_run"` or `"every_run"` in
`/profiles`). Then `POST /execute` answers `202` with `"status": "awaiting_approval"`
and an `approval_url`: give that link to the operator and keep polling. The execution
runs once they approve (`pending`, `running`, … as usual), or ends `denied` with their
reason (or the expiry) in `error`. Under `first_run` an approved script runs again
without asking, as long as it is byte-for-byte the same; any change asks again.

## Inside the script

- `settings.get("NAME")` → the value (a string) or `None`; `settings.keys()` → the
  profile's credential names. Use values directly in API calls; never print them
  (output is scrubbed anyway: every value of 4+ characters, raw, encoded (base64, hex,
  base32, URL, JSON/HTML escapes, gzip+base64), reversed, spaced out or split between
  stdout and stderr, and any 16 consecutive characters of it, becomes `[REDACTED:NAME]`).
- **Sealed credentials** (`"mode": "sealed"` in `/credentials` and `/profiles`, with
  `bound_hosts`): the value never enters the sandbox. `settings.get("NAME")` returns a
  placeholder (`airlock-sealed:NAME:<random>`, new for every execution), and Airlock's
  egress proxy replaces it with the real value in request headers (and, if the operator
  allowed it, the URL query and body) of requests to the bound hosts only. Write code
  exactly as usual, e.g.
  `requests.get(url, headers={"Authorization": f"Bearer {settings.get('STRIPE_KEY')}"})`.
  Any HTTP client that honours `HTTP(S)_PROXY` and the CA bundle in `SSL_CERT_FILE` /
  `REQUESTS_CA_BUNDLE` works (urllib, requests, httpx; all set for you). Sending the
  placeholder anywhere else is refused with 403 and recorded as a violation (the operator
  may have set it to revoke the profile at once); do not transform it (hash, sign, slice):
  only the literal placeholder is replaced. Use `https://` URLs for bound hosts: over
  plain `http://` the placeholder is usually refused (403) so the value never travels in
  clear. Responses from bound hosts that echo the value
  come back with the placeholder instead.
- **Databases.** A sealed credential with a `database` login (PostgreSQL) gives a
  connection string: `psycopg.connect(settings.get("SHOP_DB"))` (declare `psycopg[binary]`
  as a package) works as is; its password is a placeholder, and Airlock signs in to the
  database for you. Do not take the URI apart or change its user or database. Other
  databases are reachable when the profile lists `tcp://host:port` in `allowed_hosts`:
  connect to `host:port` as usual, with a plain credential's value as the password. A
  refused or unreachable destination resets the connection; the operator's log says why.
- `set_result(obj)` → the JSON-serializable result you get back (last call wins).
- `llm.complete(prompt, model="default")` → pauses the script (`awaiting_llm`) until you
  answer with `POST /executions/{id}/respond`; returns your answer as a string. Use it
  for prose; keep numbers in code. The prompt is scrubbed before you see it.
- `airlock.now()` → the execution's clock: a UTC `datetime` fixed when the execution
  started (recorded, so a rerun can be explained). Use it, not `datetime.now()`, for
  "today" in a report.
- The same through `import airlock` (`airlock.settings`, `airlock.set_result`, `airlock.llm`).
- Deterministic: `TZ=UTC`, UTF-8, `PYTHONHASHSEED=0`, `random` seeded with 0, numpy's
  global generator seeded with 0 and each unseeded `default_rng()` given a fixed seed.
  Not fixed: the wall clock, `os.urandom` (`secrets`, `uuid4`). A request whose URL
  depends on them cannot be replayed from a record.
- Sandboxed: no access to the host's files; write scratch files to the working directory
  (`os.getcwd()`, also `HOME` and `TMPDIR`, so `tempfile` works): it is a private `/tmp` in
  the full tier, and `/tmp` itself is not writable in the container tier ("This instance"
  below says which); network only through
  Airlock's egress rules for the profile's allowed hosts (none by default); limited memory,
  CPU time, processes and output.
- An uncaught exception ends as `error` with the traceback of your script's lines.
- Importable: the standard library plus the packages requested below.

## Python packages

Need a library (`httpx`, `pandas`, `openpyxl`...)? Ask for it once; every later
script can import it.

1. `POST /requirements {"packages": ["httpx", "pandas>=2", "openpyxl==3.1.5"], "message": "why"}` with
   `Authorization: Bearer <key id>` → 202 `{"install_id", "status": "awaiting_review", ...}`:
   the operator accepts the request first (then it is `pending`, `installing`), or rejects it
   (`rejected`, the reason in `request.reason`; nothing is installed). On an instance without
   package review the status starts at `pending`.
   Only PEP 508 names with optional `[extras]`, version specifiers and plain markers
   (`tomli; python_version < "3.11"`); at most 50 per request. URLs, paths, VCS links
   and pip options (`-e`, `-r`, `--index-url`...) are refused with 422 naming the item.
2. Poll `GET /requirements/{install_id}` every few seconds until `status` is
   `installed`, `failed` or `rejected` (`log` holds the installer's output tail). Small packages
   take seconds; big ones (pandas + numpy) as long as their download. If one package
   of a request fails, none of that request is added: fix the name/version and retry.
3. `GET /requirements` lists every package (`spec`, `name`, `installed_version`,
   `status`, `error`, `requested_at`) and the environment (`state`: `ready`,
   `rebuilding` after a restart, or `unavailable` with a `reason`).

Packages are installed in a sandbox into one shared, read-only environment; the
operator can remove them. Executions submitted while the environment is rebuilt after
a restart stay `pending` until it is ready.

## Agent endpoints

| Method and path | Auth | What it does |
|---|---|---|
| `GET /skill.md` | none | this page |
| `GET /health` | none | status, version, sandbox layers |
| `GET /credentials` | none | `{"credentials": [{"name", "description", "value_exists", "mode", "bound_hosts", "database" (sealed database logins only), "request"}]}` |
| `POST /credentials` | none | declare slots: `{"credentials": [{"name", "description"}], "message"?}` |
| `GET /profiles` | none | `{"profiles": [Profile]}` |
| `GET /profiles/{id}` | none | one profile (by id or key id) |
| `POST /profiles` | none | `{"description", "credentials"?: [names], "message"?}` → 201 Profile |
| `POST /profiles/{id}/credentials` | none | add `{"credentials": [names]}` (unlocked only) |
| `DELETE /profiles/{id}/credentials` | none | remove `{"credentials": [names]}` (unlocked only) |
| `POST /execute` | Bearer key id | `{"script", "hash", "timeout"?, "llm_timeout"?}` → 202 `{"execution_id", "poll_url", "status"}` |
| `GET /executions/{id}?wait=N` | Bearer key id | the execution; `wait` (≤ 60 s) long-polls until the status changes |
| `GET /executions?status=&limit=&offset=` | Bearer key id | your profile's executions, newest first |
| `POST /executions/{id}/respond` | Bearer key id | `{"response", "request_id"?}` answers a paused `llm.complete` |
| `POST /requirements` | Bearer key id | `{"packages": [requirement], "message"?}` → 202 Install |
| `GET /requirements` | Bearer key id | `{"packages": [Package], "environment": {...}}` |
| `GET /requirements/{install_id}` | Bearer key id | one Install: `{"install_id", "status", "packages", "error", "log", "created_at", "finished_at", "request"}` |
| `GET /openapi.json` | none | the OpenAPI 3.1 description of every endpoint (schemas, error responses) |
| `/mcp` | Bearer full key | the same tools over MCP (streamable HTTP); see below |

Profile JSON (`key_id` is shown only to a caller that sends that key id as `Authorization: Bearer` or looks the profile up by it): `{"id", "description", "locked", "revoked", "expired", "key_id", "credentials": [{"name", "description", "value_exists", "mode", "bound_hosts", "database" (sealed database logins only), "request"}], "allowed_hosts", "record", "replay_protection", "approval", "request", "expires_at", "created_at", "updated_at", "last_used_at"}`. `request` is `null` for what the operator made, else `{"status": "pending"|"accepted"|"rejected", "message", "reason", "created_at", "decided_at"}`.

Execution JSON: `{"execution_id", "status", "result", "stdout", "stderr", "error", "llm_request", "execution_time_ms", "llm_wait_ms", "created_at", "completed_at"}`.
Statuses: `pending` → `running` → (`awaiting_llm` ↔ `running`) → `completed` | `error` | `timeout`.

## Using Airlock as MCP tools

If your client speaks the Model Context Protocol, Airlock's agent API is also a set of
MCP tools: `list_credentials`, `list_profiles`, `create_credentials`, `create_profile`,
`attach_credentials`, `detach_credentials`, `execute_script` (signs the script for you,
waits, and returns the result, or the pending `llm.complete` prompt), `respond_llm`
(answers the prompt and waits again), `get_execution`, `request_packages` and
`list_package_requests`. Two ways to connect:

- **stdio**: the client runs `airlock mcp --url {base}` with the key in the `AIRLOCK_KEY`
  environment variable (or `--key-file`). Without a key, only the catalog tools work.
- **streamable HTTP**: `{base}/mcp` with the header `Authorization: Bearer ark_<id>:<secret>`
  (the full key: the server computes the HMAC for you, so it needs the secret; a wrong or
  unusable key gets `401`). Only the hosts of the instance's public URL and loopback are
  accepted.

```json
{"mcpServers": {"airlock": {"command": "airlock", "args": ["mcp", "--url", "{base}"],
  "env": {"AIRLOCK_KEY": "ark_<id>:<secret>"}}}}
```

The key goes into the client's configuration by the operator, never through the chat.

## Errors

Every error is JSON `{"detail": "...", "code": "..."}`; `detail` says what to fix.

| Status | Codes | Meaning |
|---|---|---|
| 400 | `bad_request` | malformed JSON |
| 401 | `missing_key`, `malformed_key`, `unknown_key`, `profile_unlocked`, `profile_revoked`, `profile_expired` | the key is absent, not `Bearer ark_<24 chars>`, unknown, or its profile cannot run code |
| 403 | `hash_mismatch`, `signature_required`, `stale_signature`, `replayed` | the hash is not the HMAC of this `ts`, `nonce` and exact script with this key's secret; the profile needs `ts` and `nonce`; `ts` is over 300 s off the server's clock; the nonce was used before (send a fresh one) |
| 404 | `not_found` | no such profile/execution for this key |
| 409 | `profile_locked`, `profile_revoked`, `credential_exists`, `not_awaiting_llm`, `llm_request_mismatch` | the state does not allow it (e.g. changing a locked profile, answering twice or a stale `request_id`) |
| 413 | `too_large` | script or body over the limit |
| 422 | `invalid_input` | a field breaks a rule (named in `detail`), e.g. timeout out of range, unknown credential |
| 429 | `rate_limited` | the queue is full, or too many executions are paused in `llm.complete` (answer yours); retry after `Retry-After` seconds |
| 503 | `sandbox_unavailable`, `packages_unavailable` | the sandbox (or the package installer) cannot run on this host right now |
"#;

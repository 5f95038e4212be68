#!/usr/bin/env bash
# Builds the Airlock image with Docker Engine, runs it in both sandbox tiers and
# attacks each from inside the container. Exits non-zero on any failure.
#
#   bash deploy/test-image.sh
#
# (a) no security options at all (the quick start's one-liner): the container tier,
#     a script reads a credential and its output is redacted;
# (b) --security-opt seccomp=deploy/seccomp.json --security-opt systempaths=unconfined:
#     the full tier, without seccomp=unconfined; syscalls only "unconfined" would allow
#     stay refused in the server's container.
# In both, the sandbox's own attack suites (the escape and egress tests of
# crates/airlock-sandbox, built on the host) run inside the container against that
# tier. Containers run with --network none: every probe stays on the container's own
# loopback.
#
# Follows DESIGN §9 for machines without a registry: a private Docker daemon (no
# bridge, no iptables, all state in $SCRATCH) when none answers on DOCKER_HOST; a
# debootstrap base image when debian:bookworm-slim cannot be pulled; a Rust builder
# image made from that base (rustup) when rust:1-bookworm cannot be pulled; builds with
# --network host.
#
# Environment:
#   SCRATCH=/var/tmp/airlock-docker      daemon state, logs (kept)
#   IMAGE=localhost/airlock:test         tag of the built image
#   SKIP_BUILD=1                         reuse an already built $IMAGE
#   EXTRA_CA_DIR=/usr/local/share/ca-certificates   *.crt trusted by the base image
#                                        (hosts behind a TLS-intercepting proxy)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${SCRATCH:-/var/tmp/airlock-docker}
IMAGE=${IMAGE:-localhost/airlock:test}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
mkdir -p "$SCRATCH"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || fail "no docker CLI (apt-get install docker.io)"

# --- the daemon ------------------------------------------------------------------------
OWN_DAEMON=""
if ! docker version >/dev/null 2>&1; then
    command -v dockerd >/dev/null || fail "no Docker daemon answers and dockerd is not installed"
    export DOCKER_HOST="unix://$SCRATCH/docker.sock"
    if ! docker version >/dev/null 2>&1; then
        say "starting a private dockerd in $SCRATCH"
        setsid dockerd --iptables=false --ip6tables=false --bridge=none \
            --data-root "$SCRATCH/root" --exec-root "$SCRATCH/exec" \
            -H "$DOCKER_HOST" --pidfile "$SCRATCH/docker.pid" >"$SCRATCH/dockerd.log" 2>&1 &
        OWN_DAEMON=$!
        for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
        docker version >/dev/null 2>&1 || fail "dockerd did not start (see $SCRATCH/dockerd.log)"
    fi
fi
CONTAINERS=()
cleanup() {
    for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
    docker volume rm -f airlock-test-a airlock-test-b >/dev/null 2>&1 || true
    if [ -n "$OWN_DAEMON" ]; then kill "$OWN_DAEMON" 2>/dev/null || true; wait "$OWN_DAEMON" 2>/dev/null || true; fi
}
trap cleanup EXIT

try_pull() { timeout 60 docker pull -q "$1" >/dev/null 2>&1; }

apt_mirror() {
    local m
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    echo "${m:-http://deb.debian.org/debian}"
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # --- base image -----------------------------------------------------------------------
    BASE_IMAGE=${BASE_IMAGE:-}
    if [ -z "$BASE_IMAGE" ]; then
        if docker image inspect localhost/debian:bookworm-slim >/dev/null 2>&1; then
            BASE_IMAGE=localhost/debian:bookworm-slim
        elif try_pull debian:bookworm-slim; then
            BASE_IMAGE=debian:bookworm-slim
        else
            command -v debootstrap >/dev/null || fail "no registry and no debootstrap"
            say "debian:bookworm-slim cannot be pulled: debootstrap a base image"
            rm -rf "$SCRATCH/rootfs"
            debootstrap --variant=minbase bookworm "$SCRATCH/rootfs" "$(apt_mirror)" \
                >"$SCRATCH/debootstrap.log" 2>&1 || fail "debootstrap (see $SCRATCH/debootstrap.log)"
            # Trusted before ca-certificates is installed, so update-ca-certificates
            # picks them up (a TLS-intercepting proxy in front of PyPI).
            mkdir -p "$SCRATCH/rootfs/usr/local/share/ca-certificates"
            cp "$EXTRA_CA_DIR"/*.crt "$SCRATCH/rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
            tar -C "$SCRATCH/rootfs" -c . | docker import - localhost/debian:bookworm-slim >/dev/null
            rm -rf "$SCRATCH/rootfs"
            BASE_IMAGE=localhost/debian:bookworm-slim
        fi
    fi
    echo "base image: $BASE_IMAGE"

    # --- Rust builder image -----------------------------------------------------------------
    RUST_IMAGE=${RUST_IMAGE:-}
    if [ -z "$RUST_IMAGE" ]; then
        if docker image inspect localhost/airlock-rust:bookworm >/dev/null 2>&1; then
            RUST_IMAGE=localhost/airlock-rust:bookworm
        elif try_pull rust:1-bookworm; then
            RUST_IMAGE=rust:1-bookworm
        else
            say "rust:1-bookworm cannot be pulled: make a builder image from $BASE_IMAGE"
            ctx="$SCRATCH/rust-ctx"
            rm -rf "$ctx"; mkdir -p "$ctx"
            cat >"$ctx/Dockerfile" <<'CF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -fsSL -o /tmp/rustup-init \
        https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain stable \
 && rm /tmp/rustup-init && cargo --version
CF
            docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
                -t localhost/airlock-rust:bookworm "$ctx" >"$SCRATCH/rust-image.log" 2>&1 \
                || { tail -20 "$SCRATCH/rust-image.log"; fail "building the Rust builder image"; }
            RUST_IMAGE=localhost/airlock-rust:bookworm
        fi
    fi
    echo "rust image: $RUST_IMAGE"

    # --- the image ----------------------------------------------------------------------------
    say "docker build $IMAGE (compiles the workspace: 10+ minutes on two cores)"
    start=$(date +%s)
    docker build --network host \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg RUST_IMAGE="$RUST_IMAGE" \
        -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$SCRATCH/build.log" 2>&1 \
        || { tail -30 "$SCRATCH/build.log"; fail "docker build (see $SCRATCH/build.log)"; }
    echo "built in $(( $(date +%s) - start )) s"
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "image $IMAGE does not exist"

# --- the attack suites, built on the host (the image's Debian runs them) ----------------------
say "building the sandbox's attack suites on the host"
cd "$ROOT"
TESTS=$(cargo test -p airlock-sandbox --test escape --test egress --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
HELPER=$(cargo build -p airlock-sandbox --bin airlock-sandbox-helper --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -n "$TESTS" ] && [ -n "$HELPER" ] || fail "cannot find the test executables"
TARGET_TMP="$ROOT/target/tmp"

# Starts a container of $IMAGE named $1 with the remaining arguments as options;
# waits for /health (reached inside the container: --network none).
# A run killed before its cleanup leaves the container and its volume behind (the admin
# password already set): both are removed first so every run starts from an empty /data.
run_container() {
    local name=$1; shift
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm -f "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --network none "$@" "$IMAGE" >/dev/null
    CONTAINERS+=("$name")
    for _ in $(seq 1 60); do
        docker exec "$name" curl -fsS http://127.0.0.1:9090/health >"$SCRATCH/$name.health" 2>/dev/null && return 0
        sleep 1
    done
    docker logs "$name" 2>&1 | tail -20
    fail "$name: /health did not answer within 60 s"
}

# One script through the API, from inside the container: setup, credential, profile,
# lock, execute, poll; checks the result and the redaction.
api_round_trip() {
    docker exec -i "$1" python3 - <<'PY' || fail "$1: API round trip"
import hashlib, hmac, http.cookiejar, json, secrets, time, urllib.request
base = "http://127.0.0.1:9090"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Origin", base)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with opener.open(req, timeout=60) as r:
        raw = r.read()
        return json.loads(raw) if raw else None
call("POST", "/api/admin/setup", {"password": "correct horse battery staple"})
call("POST", "/api/admin/credentials",
     {"name": "DEMO_TOKEN", "description": "demo", "value": "s3cr3t-demo-token-value"})
profile = call("POST", "/api/admin/profiles", {"description": "demo", "credentials": ["DEMO_TOKEN"]})["id"]
key = call("POST", f"/api/admin/profiles/{profile}/lock")["key"]
key_id, secret = key.split(":", 1)
script = ('token = settings.get("DEMO_TOKEN")\n'
          'print("token is", token)\n'
          'set_result({"length": len(token)})\n')
ts, nonce = int(time.time()), secrets.token_urlsafe(24)
digest = hmac.new(secret.encode(), f"{ts}\n{nonce}\n{script}".encode(), hashlib.sha256).hexdigest()
auth = {"Authorization": f"Bearer {key_id}"}
eid = call("POST", "/execute", {"script": script, "hash": digest, "ts": ts, "nonce": nonce}, auth)["execution_id"]
for _ in range(10):
    r = call("GET", f"/executions/{eid}?wait=30", None, auth)
    if r["status"] not in ("pending", "running"):
        break
assert r["status"] == "completed", r
assert r["result"] == {"length": 23}, r["result"]
assert r["stdout"] == "token is [REDACTED:DEMO_TOKEN]\n", r["stdout"]
assert "s3cr3t" not in json.dumps(r), "credential value leaked"
print("execution", eid, "completed, output redacted")
PY
}

# Runs the host-built attack suites inside container $1 against tier $2.
attack_suites() {
    local name=$1 tier=$2 t
    docker exec "$name" mkdir -p "$(dirname "$HELPER")" "$TARGET_TMP"
    docker cp "$HELPER" "$name:$HELPER" >/dev/null
    for t in $TESTS; do
        docker exec "$name" mkdir -p "$(dirname "$t")"
        docker cp "$t" "$name:$t" >/dev/null
        say "$name: $(basename "$t") against the $tier tier, inside the container"
        docker exec -e AIRLOCK_TEST_REQUIRE_SANDBOX=1 -e AIRLOCK_TEST_SANDBOX_TIER="$tier" \
            -e RUST_BACKTRACE=0 -w /tmp "$name" "$t" --test-threads=2 >"$SCRATCH/$name-$(basename "$t").log" 2>&1 || true
        grep -E "^test .*(FAILED|ok)$|SKIPPED|^test result" "$SCRATCH/$name-$(basename "$t").log" | grep -v " ok$" || true
        grep -q "^test result: ok" "$SCRATCH/$name-$(basename "$t").log" \
            || fail "$name: $(basename "$t") failed in the $tier tier (see $SCRATCH/$name-$(basename "$t").log)"
    done
}

# Syscalls the shipped profile refuses that seccomp=unconfined would allow, tried by
# root in the server's container (outside Airlock's own sandbox).
profile_refuses() {
    docker exec -i "$1" python3 - <<'PY' || fail "$1: the seccomp profile lets an unconfined-only syscall through"
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return "OK" if rc != -1 else ctypes.get_errno()
out = {
    "keyctl": err(libc.syscall(250, 0, -3, 0, 0, 0)),       # KEYCTL_GET_KEYRING_ID(session)
    "add_key": err(libc.syscall(248, b"user", b"airlock", b"x", 1, -3)),
    "ptrace_traceme": err(libc.syscall(101, 0, 0, 0, 0)),
    "io_uring_setup": err(libc.syscall(425, 1, ctypes.create_string_buffer(120))),
    "userfaultfd": err(libc.syscall(323, 1)),                 # UFFD_USER_MODE_ONLY
}
print(json.dumps(out))
bad = {k: v for k, v in out.items() if v != 1}
assert not bad, "not refused with EPERM: %s" % bad
PY
}

# --- (a) no security options: the container tier -----------------------------------------------
say "(a) docker run with no security options"
run_container airlock-test-a -v airlock-test-a:/data
# The logs are read once: `docker logs | grep -q` fails under pipefail when grep
# stops reading at the first match and docker gets SIGPIPE.
banner=$(docker logs airlock-test-a 2>&1 | grep "sandbox:" || true)
echo "$banner"
grep -q "sandbox:    ready, tier container, every layer of it active" <<<"$banner" \
    || fail "(a): the banner does not say the container tier is ready"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["sandbox"]; assert s["tier"]=="container" and s["missing"]==[], s' \
    "$SCRATCH/airlock-test-a.health" || fail "(a): /health does not report the container tier"
api_round_trip airlock-test-a
attack_suites airlock-test-a container

# --- (b) the shipped seccomp profile: the full tier ----------------------------------------------
say "(b) docker run with deploy/seccomp.json and systempaths=unconfined"
run_container airlock-test-b -v airlock-test-b:/data \
    --security-opt seccomp="$ROOT/deploy/seccomp.json" --security-opt systempaths=unconfined
banner=$(docker logs airlock-test-b 2>&1 | grep "sandbox:" || true)
echo "$banner"
grep -q "sandbox:    ready, tier full, every layer active" <<<"$banner" \
    || fail "(b): the banner does not say the full tier is ready"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["sandbox"]; assert s["tier"]=="full" and s["missing"]==[], s' \
    "$SCRATCH/airlock-test-b.health" || fail "(b): /health does not report the full tier"
profile_refuses airlock-test-b
api_round_trip airlock-test-b
attack_suites airlock-test-b full

# Builds leave the builder stage behind as a dangling image: keep the scratch disk bounded.
docker image prune -f >/dev/null 2>&1 || true
say "PASS: the image runs the container tier with no options and the full tier with deploy/seccomp.json"

#!/usr/bin/env bash
# Builds the Airlock container image with podman, runs it, and drives one script
# through the API. Exits non-zero on any failure.
#
#   bash deploy/test-image.sh
#
# Not part of .ci/run: it compiles the workspace inside a container (about 5 minutes on
# two cores). Without podman it prints "SKIPPED: podman not installed" and exits 0.
#
# Follows the recipe of DESIGN §9 for machines with no container registry and no
# Docker engine: runc (crun refuses hybrid cgroup layouts) and explicit ulimits in a
# private containers.conf; every bit of podman state in a scratch directory; base image
# from debootstrap when debian:bookworm-slim cannot be pulled, and a Rust builder image
# made from that base (rustup from static.rust-lang.org) when rust:1-bookworm cannot.
#
# Environment:
#   SCRATCH=/var/tmp/airlock-image-test   podman state, root file system, logs (kept)
#   IMAGE=localhost/airlock:test          tag of the built image
#   SKIP_BUILD=1                          reuse an already built $IMAGE
#   BASE_IMAGE=..., RUST_IMAGE=...        use these instead of pulling/making them
#   PORT=19090                            host port mapped to the container's 9090
#   EXTRA_CA_DIR=/usr/local/share/ca-certificates   *.crt added to the builder image
#                                         (hosts behind a TLS-intercepting proxy)
#   KEEP=1                                leave the container and its volume behind
set -euo pipefail

if ! command -v podman >/dev/null 2>&1; then
    echo "######################################################################"
    echo "## SKIPPED: podman not installed (apt-get install podman runc debootstrap)"
    echo "## The container image was NOT built or tested."
    echo "######################################################################"
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${SCRATCH:-/var/tmp/airlock-image-test}
IMAGE=${IMAGE:-localhost/airlock:test}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
PORT=${PORT:-19090}
NAME=airlock-image-test
VOLUME=airlock-image-test-data
mkdir -p "$SCRATCH/storage" "$SCRATCH/run" "$SCRATCH/tmp"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# --- podman configuration, all state under $SCRATCH --------------------------------
cat >"$SCRATCH/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
cat >"$SCRATCH/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$SCRATCH/storage"
runroot = "$SCRATCH/run"
CONF
export CONTAINERS_CONF="$SCRATCH/containers.conf"
export CONTAINERS_STORAGE_CONF="$SCRATCH/storage.conf"
export TMPDIR="$SCRATCH/tmp"

try_pull() { timeout 60 podman pull -q "$1" >/dev/null 2>&1; }

apt_mirror() {
    local m
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    echo "${m:-http://deb.debian.org/debian}"
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # --- runtime base image -----------------------------------------------------
    if [ -z "${BASE_IMAGE:-}" ]; then
        if podman image exists localhost/debian:bookworm; then
            BASE_IMAGE=localhost/debian:bookworm
        elif try_pull docker.io/library/debian:bookworm-slim; then
            BASE_IMAGE=docker.io/library/debian:bookworm-slim
        else
            command -v debootstrap >/dev/null || fail "no registry and no debootstrap (apt-get install debootstrap)"
            say "debian:bookworm-slim cannot be pulled: debootstrap a base image"
            rm -rf "$SCRATCH/rootfs"
            debootstrap --variant=minbase bookworm "$SCRATCH/rootfs" "$(apt_mirror)" \
                >"$SCRATCH/debootstrap.log" 2>&1 || fail "debootstrap (see $SCRATCH/debootstrap.log)"
            tar -C "$SCRATCH/rootfs" -c . | podman import - localhost/debian:bookworm >/dev/null
            rm -rf "$SCRATCH/rootfs"
            BASE_IMAGE=localhost/debian:bookworm
        fi
    fi
    echo "base image: $BASE_IMAGE"

    # --- Rust builder image -------------------------------------------------------
    if [ -z "${RUST_IMAGE:-}" ]; then
        if podman image exists localhost/airlock-rust:bookworm; then
            RUST_IMAGE=localhost/airlock-rust:bookworm
        elif try_pull docker.io/library/rust:1-bookworm; then
            RUST_IMAGE=docker.io/library/rust:1-bookworm
        else
            say "rust:1-bookworm cannot be pulled: make a builder image from $BASE_IMAGE"
            rm -rf "$SCRATCH/rust-ctx"; mkdir -p "$SCRATCH/rust-ctx/ca"
            # A host behind a TLS-intercepting egress proxy trusts extra CAs; the
            # builder (rustup, cargo fetching crates) needs them too. Only the builder
            # image gets them, never the runtime image.
            cp "$EXTRA_CA_DIR"/*.crt "$SCRATCH/rust-ctx/ca/" 2>/dev/null || true
            cat >"$SCRATCH/rust-ctx/Containerfile" <<'CF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -fsSL -o /tmp/rustup-init \
        https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain stable \
 && rm /tmp/rustup-init && cargo --version
CF
            podman build --build-arg BASE_IMAGE="$BASE_IMAGE" -t localhost/airlock-rust:bookworm \
                "$SCRATCH/rust-ctx" >"$SCRATCH/rust-image.log" 2>&1 \
                || fail "building the Rust builder image (see $SCRATCH/rust-image.log)"
            RUST_IMAGE=localhost/airlock-rust:bookworm
        fi
    fi
    echo "rust image: $RUST_IMAGE"

    # --- the image itself -------------------------------------------------------------
    say "podman build $IMAGE (compiles the workspace: 10+ minutes on two cores)"
    start=$(date +%s)
    # --format docker: the OCI image format has no HEALTHCHECK; podman drops it.
    podman build --format docker \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg RUST_IMAGE="$RUST_IMAGE" \
        -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$SCRATCH/build.log" 2>&1 \
        || { tail -30 "$SCRATCH/build.log"; fail "podman build (see $SCRATCH/build.log)"; }
    echo "built in $(( $(date +%s) - start )) s"
fi
podman image exists "$IMAGE" || fail "image $IMAGE does not exist"

# --- run it ---------------------------------------------------------------------------
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo "KEEP=1: container $NAME and volume $VOLUME left in place"
        return
    fi
    podman rm -f "$NAME" >/dev/null 2>&1 || true
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
podman rm -f "$NAME" >/dev/null 2>&1 || true
podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true

say "podman run $IMAGE (systempaths=unconfined, port $PORT)"
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:9090" -v "$VOLUME:/data" \
    --security-opt systempaths=unconfined "$IMAGE" >/dev/null

B="http://127.0.0.1:$PORT"
ok=0
for _ in $(seq 1 60); do
    if curl -fsS "$B/health" >"$SCRATCH/health.json" 2>/dev/null; then ok=1; break; fi
    sleep 1
done
podman logs "$NAME" >"$SCRATCH/container.log" 2>&1 || true
cat "$SCRATCH/container.log"
[ "$ok" = 1 ] || fail "/health did not answer within 60 s"
echo "/health: $(cat "$SCRATCH/health.json")"
grep -q 'sandbox:    ready, every layer active' "$SCRATCH/container.log" \
    || fail "banner does not say the sandbox is ready with every layer active"
podman healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK did not pass"
echo "HEALTHCHECK: healthy"

say "one script through the API"
python3 - "$B" <<'PY' || fail "API round trip"
import hashlib, hmac, http.cookiejar, json, sys, urllib.request

base = sys.argv[1]
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with opener.open(req, timeout=60) as r:
        raw = r.read()
        return json.loads(raw) if raw else None

health = call("GET", "/health")
assert health["sandbox"]["ready"] is True, health
layers = health["sandbox"]["layers"]
print("layers:", json.dumps(layers))
call("POST", "/api/admin/setup", {"password": "correct horse battery staple"})
call("POST", "/api/admin/credentials",
     {"name": "DEMO_TOKEN", "description": "demo", "value": "s3cr3t-demo-token-value"})
profile = call("POST", "/api/admin/profiles",
               {"description": "demo", "credentials": ["DEMO_TOKEN"]})["id"]
key = call("POST", f"/api/admin/profiles/{profile}/lock")["key"]
key_id, secret = key.split(":", 1)
script = ('token = settings.get("DEMO_TOKEN")\n'
          'print("token is", token)\n'
          'import os\n'
          'print("uid", os.getuid(), "pid", os.getpid())\n'
          'set_result({"length": len(token)})\n')
digest = hmac.new(secret.encode(), script.encode(), hashlib.sha256).hexdigest()
auth = {"Authorization": f"Bearer {key_id}"}
resp = call("POST", "/execute", {"script": script, "hash": digest}, auth)
eid = resp["execution_id"]
for _ in range(10):
    r = call("GET", f"/executions/{eid}?wait=30", None, auth)
    if r["status"] not in ("pending", "running"):
        break
print(json.dumps(r, indent=1))
assert r["status"] == "completed", r["status"]
assert r["result"] == {"length": 23}, r["result"]
assert "token is [REDACTED:DEMO_TOKEN]" in r["stdout"], r["stdout"]
assert "s3cr3t" not in json.dumps(r), "credential value leaked"
PY

say "PASS: image $IMAGE builds, starts with every sandbox layer active and runs a script"

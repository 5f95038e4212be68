# Airlock container image: a Rust build stage and a slim Debian runtime with a real
# CPython 3 (plus libpython3.11, so sandbox workers run "warm").
#
#   docker build -t airlock .        (podman: podman build --format docker -t airlock .,
#                                     since the OCI format drops the HEALTHCHECK)
#   docker run -p 9090:9090 -v airlock_data:/data airlock
#       the container tier (no namespaces needed), or, with the shipped profile:
#   docker run -p 9090:9090 -v airlock_data:/data --security-opt systempaths=unconfined \
#     --security-opt seccomp=deploy/seccomp.json airlock
#       the full tier (deploy/test-image.sh checks both on a real Docker Engine)
#
# Both base images are build arguments so the file also builds where the public
# registries are unreachable (deploy/test-image.sh imports a debootstrap root file
# system as BASE_IMAGE and makes its own RUST_IMAGE from it).
# See README.md, sections "Docker" and "Sandbox tiers", for what each tier guarantees.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- build stage
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p airlock \
 && install -D -m 0755 target/release/airlock /out/airlock

# -------------------------------------------------------------- runtime stage
FROM ${BASE_IMAGE} AS runtime
# python3 + libpython3.11: the interpreter the sandbox runs (AIRLOCK_PYTHON) and its
# shared library (warm workers). ca-certificates: scripts' TLS through the egress proxy
# (the sandbox binds /etc/ssl read-only). curl: HEALTHCHECK. tini: PID 1 that forwards
# signals and reaps any orphan that escapes the sandbox's own per-execution reapers.
# python3-pip + uv (pinned, from PyPI): the installers of POST /requirements (uv when
# present, pip as the fallback); both run inside the install sandbox.
ARG UV_VERSION=0.13.9
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip libpython3.11 ca-certificates curl tini \
 && python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}" \
 && uv --version \
 && rm -rf /var/lib/apt/lists/*
# An unprivileged account for operators who choose `--user airlock` together with
# AIRLOCK_SANDBOX=permissive (development only: the uid_drop layer is then missing).
# /data belongs to it so a fresh named volume is writable either way; root (the
# default) writes to it through CAP_DAC_OVERRIDE. Mode 0711: others may only traverse
# it (the sandbox slots reach /data/packages/envs, nothing else; files are 0600).
RUN groupadd --system --gid 10001 airlock \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin airlock \
 && install -d -m 0711 -o 10001 -g 10001 /data
COPY --from=builder /out/airlock /usr/local/bin/airlock

ENV AIRLOCK_BIND=0.0.0.0:9090 \
    AIRLOCK_DATA_DIR=/data \
    AIRLOCK_PYTHON=/usr/bin/python3 \
    AIRLOCK_SANDBOX=auto
VOLUME /data
EXPOSE 9090
WORKDIR /data

# Deliberately root inside the container: the sandbox's first layer (uid_drop) drops
# every worker slot from root to its own uid (2100000 + slot) before anything else
# (CAP_SETUID is in Docker's default set); without root that layer is missing and
# neither tier starts.
# No code from a script ever runs as root. To run unprivileged instead:
#   docker run --user airlock -e AIRLOCK_SANDBOX=permissive ...
USER root

# /health answers 200 whenever the server is up, even if the sandbox is unavailable
# (the JSON says so: sandbox.ready / sandbox.layers), so the container stays
# reachable for the operator to read why.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/health >/dev/null || exit 1

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/airlock"]
CMD ["serve"]

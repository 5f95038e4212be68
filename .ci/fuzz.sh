#!/usr/bin/env bash
# A bounded run of the redactor's fuzz target (crates/airlock-redact/fuzz):
# fails when the target panics (a value survived where the reference search
# finds it, or the redactor itself panicked). FUZZ_SECONDS bounds the run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null | cut -d' ' -f2)" != "$CARGO_FUZZ_VERSION" ]; then
  cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# libFuzzer's instrumentation needs nightly flags: the nightly toolchain when the
# machine has one, else the stable compiler with its unstable features unlocked.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

cd crates/airlock-redact/fuzz
"${fuzz[@]}" build redact
# From the committed corpus (kept minimal with `cargo fuzz cmin redact`), with a fixed
# seed so that a failure here reproduces; longer, unseeded runs belong in development.
"${fuzz[@]}" run redact corpus/redact -- -max_total_time="${FUZZ_SECONDS:-120}" \
  -seed="${FUZZ_SEED:-1}" -rss_limit_mb=2048 2>&1 \
  | grep -Ev '^#[0-9]+\s+(NEW|REDUCE|pulse)' || { echo "fuzzing found a failure (above)"; exit 1; }

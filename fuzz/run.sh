#!/usr/bin/env bash
# Fuzz djauth's parsers with libFuzzer on the stable toolchain.
#
#   fuzz/run.sh TARGET|all|smoke SECONDS [LIBFUZZER_ARG...]   (0 s: replay the corpus once)
#   fuzz/run.sh list                      # the targets
#   fuzz/run.sh build                     # build every target, run nothing
#
# Builds fuzz/fuzz_targets/*.rs the way cargo-fuzz does (sancov instrumentation,
# AddressSanitizer, --cfg fuzzing, release with debug info) but on stable, through
# RUSTC_BOOTSTRAP=1, plus debug assertions and overflow checks. Then runs each target for
# SECONDS on fuzz/corpus/<target> (committed seeds are the seed-* files there; libFuzzer adds
# the rest), crashes going to fuzz/artifacts/<target>/. Exits 1 if any target crashed.
# `smoke` is the cheap subset `make test FUZZ_SMOKE_SECONDS=N` runs (see the Makefile).
#
# If cargo-fuzz is installed (0.13 works on stable this way), `cargo fuzz build/run -a` is used
# instead, with RUSTC_BOOTSTRAP=1 too; DJAUTH_FUZZ_CARGO_FUZZ=0 keeps the plain cargo build.
# Environment: DJAUTH_FUZZ_JOBS (cargo -j), NICE (default 10), FUZZ_TARGET_DIR (fuzz/target).
set -euo pipefail
# FUZZ_TARGET_DIR may be relative to where this was started.
TARGET_DIR="$(realpath -m "${FUZZ_TARGET_DIR:-$(dirname "${BASH_SOURCE[0]}")/target}")"
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

ALL_TARGETS=()
for f in fuzz_targets/*.rs; do ALL_TARGETS+=("$(basename "$f" .rs)"); done
# The CI smoke run: the cheapest targets by exec/s, together covering cookie and form input,
# CSRF and host/URL checks (the request-facing parsers). See fuzz/README.md.
SMOKE_TARGETS=(cookie_header form_body csrf http)

what="${1:-}"
case "$what" in
    ""|-h|--help) usage ;;
    list) printf '%s\n' "${ALL_TARGETS[@]}"; exit 0 ;;
    build) targets=("${ALL_TARGETS[@]}"); seconds=0 ;;
    all) targets=("${ALL_TARGETS[@]}") ;;
    smoke) targets=("${SMOKE_TARGETS[@]}") ;;
    *)
        [ -f "fuzz_targets/$what.rs" ] || { echo "unknown target $what (fuzz/run.sh list)" >&2; exit 2; }
        targets=("$what") ;;
esac
if [ "$what" != build ]; then
    seconds="${2:-}"
    [[ "$seconds" =~ ^[0-9]+$ ]] || usage
    shift 2
else
    shift 1
fi
extra_args=("$@")

TRIPLE=x86_64-unknown-linux-gnu
NICE="${NICE:-10}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

use_cargo_fuzz=0
if [ "${DJAUTH_FUZZ_CARGO_FUZZ:-1}" = 1 ] && cargo fuzz --version >/dev/null 2>&1; then
    use_cargo_fuzz=1
fi

build() {
    local start=$SECONDS
    # What cargo-fuzz 0.12/0.13 passes for `cargo fuzz build -a` on Linux (src/project.rs),
    # with -Zsanitizer (this rustc has no -Csanitizer) and overflow checks spelled out.
    local flags=(
        -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares
        -Cllvm-args=-sanitizer-coverage-stack-depth
        -Cllvm-args=-simplifycfg-branch-fold-threshold=0
        --cfg fuzzing
        -Zsanitizer=address
        -Cdebug-assertions
        -Coverflow-checks
    )
    local bins=()
    for t in "${targets[@]}"; do bins+=(--bin "$t"); done
    echo "== fuzz: building ${targets[*]} (sancov + ASan, release, $TRIPLE) in $TARGET_DIR" >&2
    # --target keeps build scripts and proc macros uninstrumented, as cargo-fuzz does.
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]} ${RUSTFLAGS:-}" \
        nice -n "$NICE" cargo build --release --target "$TRIPLE" \
        --target-dir "$TARGET_DIR" "${bins[@]}" ${DJAUTH_FUZZ_JOBS:+-j "$DJAUTH_FUZZ_JOBS"}
    echo "== fuzz: build took $((SECONDS - start)) s" >&2
}

cargo_fuzz_build() {
    local start=$SECONDS
    echo "== fuzz: cargo fuzz build -a ${targets[*]} in $TARGET_DIR" >&2
    for t in "${targets[@]}"; do
        (cd .. && RUSTC_BOOTSTRAP=1 nice -n "$NICE" cargo fuzz build -a --target-dir "$TARGET_DIR" "$t")
    done
    echo "== fuzz: build took $((SECONDS - start)) s" >&2
}

# The dependency versions are the main crate's: start from its lock file (not committed here);
# cargo adds libfuzzer-sys and drops what only the main crate's tests use.
if [ ! -f Cargo.lock ] || [ ../Cargo.lock -nt Cargo.lock ]; then
    cp ../Cargo.lock Cargo.lock
fi

if [ "$use_cargo_fuzz" = 1 ]; then cargo_fuzz_build; else build; fi
[ "$what" = build ] && exit 0

summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$(mktemp)"
    echo "== fuzz: $t for ${seconds}s" >&2
    # 0 seconds: run the corpus once (a regression replay), no fuzzing.
    if [ "$seconds" -eq 0 ]; then limit=(-runs=0); else limit=(-max_total_time="$seconds"); fi
    args=("${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$PWD/artifacts/$t/" "${extra_args[@]}")
    set +e
    if [ "$use_cargo_fuzz" = 1 ]; then
        (cd .. && RUSTC_BOOTSTRAP=1 nice -n "$NICE" cargo fuzz run -a --target-dir "$TARGET_DIR" \
            "$t" "fuzz/corpus/$t" -- "${args[@]}") 2>&1 | tee "$log" >&2
    else
        nice -n "$NICE" "$TARGET_DIR/$TRIPLE/release/$t" "${args[@]}" "corpus/$t" 2>&1 | tee "$log" >&2
    fi
    rc=${PIPESTATUS[0]}
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # "Done 123 runs in 10 second(s)" is printed on a clean finish only.
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    rate="-"
    if [ -n "$runs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then rate=$((runs / secs)); fi
    if [ "$rc" -ne 0 ]; then
        failed=1
        status="CRASH (exit $rc): $(ls -t "artifacts/$t" | head -1)"
    else
        status=ok
    fi
    summary+=("$(printf '%-16s %10s runs %8s exec/s  %s' "$t" "${runs:--}" "$rate" "$status")")
    rm -f "$log"
done

echo "== fuzz: summary" >&2
printf '%s\n' "${summary[@]}" >&2
if [ "$failed" -ne 0 ]; then
    echo "== fuzz: crash found; reproduce with $TARGET_DIR/$TRIPLE/release/TARGET fuzz/artifacts/TARGET/FILE" >&2
    exit 1
fi

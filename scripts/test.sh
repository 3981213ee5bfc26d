#!/usr/bin/env bash
# The one test command for chatgroup: installs the test tools it needs, then runs every check.
#
#   bash scripts/test.sh
#
# Stages, in order (the first failure stops the run):
#   tools    install what the tests need, each step skipped when already present
#   fmt      cargo fmt --all --check
#   web      node --test web/test/: the browser client's logic modules, in Node (no install)
#   clippy   cargo clippy --workspace --all-targets --all-features -- -D warnings, and the codec
#            core alone without features (no tokio, no RNG in its dependency tree)
#   test     cargo test --workspace --all-features (unit, integration and doc tests), after
#            building the binaries with the same selection perf/smoke.sh uses (one build); a
#            scratch PostgreSQL cluster and a scratch Redis on loopback (scripts/postgres.sh,
#            scripts/redis.sh) run beside it, so the store's tests run on both backends and the
#            multi-node tests run real nodes (CHATGROUP_REQUIRE_{POSTGRES,REDIS}=1: none may skip)
#   browser  tests/browser/run.sh: the page at / end to end in headless Debian Chromium, driven
#            by playwright-core against target/debug/chatgroup (built by the test stage)
#   doc      cargo doc of the library crates with warnings denied (house style §3.10)
#   benches  cargo build --benches: keeps the criterion benches compiling without running them
#   fuzz     every cargo-fuzz target for FUZZ_SECONDS, seeded from fuzz/seeds/<target>
#   perf     perf/smoke.sh, when it exists
#   interop  tests/interop/run.sh, when it exists
#
# Knobs (environment):
#   FUZZ_SECONDS=30        seconds per fuzz target
#   FUZZ_SANITIZER=address cargo-fuzz sanitizer (address, none, ...)
#   SKIP_FUZZ=1            skip installing cargo-fuzz and the fuzz stage (quick local runs)
#   CI=1                   plain output (set by .ci/run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
SKIP_FUZZ="${SKIP_FUZZ:-0}"

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
if [[ -n "${CI:-}" ]]; then
    export CARGO_TERM_COLOR=never
    # A CI build starts from scratch; incremental state would only cost time and disk.
    export CARGO_INCREMENTAL=0
fi
# cargo-installed tools land here; a fresh shell may not have it on PATH yet.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# Lets Node scripts anywhere in the repo `require('ws')` from the interop package.
export NODE_PATH="$ROOT/tests/interop/node_modules${NODE_PATH:+:$NODE_PATH}"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/chatgroup-test.XXXXXX")"
PG_STARTED=0
REDIS_STARTED=0
trap 'if ((PG_STARTED)); then stop_postgres; fi; if ((REDIS_STARTED)); then bash scripts/redis.sh stop >/dev/null 2>&1 || true; fi; rm -rf "$SCRATCH"' EXIT

RUN_START=$SECONDS
PASSED=0
SUMMARY=()

fmt_secs() {
    local s=$1
    if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

note() { printf '    %s\n' "$*"; }

# Runs one stage: a banner, the stage function in a subshell with errexit on (so every failing
# command inside it stops it), and its elapsed time. The first failing stage ends the script.
stage() {
    local name=$1
    shift
    printf '\n==================== stage %s ====================\n' "$name"
    local start=$SECONDS rc
    set +e
    (
        set -euo pipefail
        "$@"
    )
    rc=$?
    set -e
    local took
    took=$(fmt_secs $((SECONDS - start)))
    if ((rc != 0)); then
        printf '\n!!!!!!!!!!!!!!!!!!!! stage %s FAILED (exit %d) after %s !!!!!!!!!!!!!!!!!!!!\n' \
            "$name" "$rc" "$took"
        print_times
        printf 'stages: %d passed, 1 failed (%s)\n' "$PASSED" "$name"
        exit "$rc"
    fi
    PASSED=$((PASSED + 1))
    SUMMARY+=("$(printf '%-8s %8s' "$name" "$took")")
    printf -- '-------------------- stage %s passed in %s --------------------\n' "$name" "$took"
}

print_times() {
    printf '\nstage times:\n'
    local line
    for line in "${SUMMARY[@]+"${SUMMARY[@]}"}"; do printf '  %s\n' "$line"; done
    printf '  %-8s %8s\n' total "$(fmt_secs $((SECONDS - RUN_START)))"
}

# ---------------------------------------------------------------------------------------------
# tools

install_rust_components() {
    # Normally shipped with the toolchain; added only if this machine lacks them.
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

install_cargo_fuzz() {
    if [[ "$SKIP_FUZZ" == 1 ]]; then
        note "cargo-fuzz: skipped (SKIP_FUZZ=1)"
        return
    fi
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "the fuzz stage needs a nightly toolchain (rustup toolchain install nightly)" >&2
        return 1
    fi
    if cargo fuzz --version >/dev/null 2>&1; then
        note "cargo-fuzz: $(cargo fuzz --version) already installed"
    else
        note "cargo-fuzz: installing"
        cargo install cargo-fuzz --locked
    fi
}

# The Python interop client lives in a scratch virtual environment (git-ignored), so nothing
# is installed into the system interpreter (no pip "running as root" warning, no PEP 668
# refusal). The tests find it through CHATGROUP_PYTHON, or at this path when run directly.
PY_VENV="$ROOT/tests/interop/.venv"
export CHATGROUP_PYTHON="$PY_VENV/bin/python"

install_python_websockets() {
    if "$CHATGROUP_PYTHON" -c 'import websockets' >/dev/null 2>&1; then
        note "python websockets: $("$CHATGROUP_PYTHON" -c 'import websockets; print(websockets.__version__)') already in tests/interop/.venv"
        return
    fi
    note "python websockets: installing into tests/interop/.venv"
    if ! python3 -m venv "$PY_VENV" >/dev/null 2>&1; then
        # Debian ships venv separately; ensurepip is what it lacks.
        apt-get update -qq && apt-get install -y -qq python3-venv
        python3 -m venv "$PY_VENV"
    fi
    "$PY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check websockets
    "$CHATGROUP_PYTHON" -c 'import websockets'
}

install_node_clients() {
    local dir="$ROOT/tests/interop"
    if [[ ! -f "$dir/package.json" ]]; then
        note "node clients: no tests/interop/package.json, nothing to install"
        return
    fi
    command -v npm >/dev/null 2>&1 || {
        echo "npm not found: the interop tests need Node.js 18+ with npm" >&2
        return 1
    }
    # npm writes node_modules/.package-lock.json on every install; when it is newer than the
    # manifests, the tree is already what they ask for.
    local stamp="$dir/node_modules/.package-lock.json"
    if [[ -f "$stamp" && "$stamp" -nt "$dir/package.json" &&
        (! -f "$dir/package-lock.json" || "$stamp" -nt "$dir/package-lock.json") ]]; then
        note "node clients: tests/interop/node_modules up to date"
        return
    fi
    note "node clients: installing into tests/interop/node_modules"
    if [[ -f "$dir/package-lock.json" ]]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
}

# The browser end-to-end tests drive Debian's Chromium (never a browser download) with
# playwright-core, installed project-locally into tests/browser/node_modules.
export CHROME_BIN="${CHROME_BIN:-/usr/bin/chromium}"

install_browser() {
    if [[ -x "$CHROME_BIN" ]]; then
        note "chromium: $("$CHROME_BIN" --version 2>/dev/null | head -n 1) already installed"
    else
        note "chromium: installing the Debian package"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
        [[ -x "$CHROME_BIN" ]] || {
            echo "chromium installed but $CHROME_BIN is missing (set CHROME_BIN)" >&2
            return 1
        }
    fi
    local dir="$ROOT/tests/browser"
    command -v npm >/dev/null 2>&1 || {
        echo "npm not found: the browser tests need Node.js 20+ with npm" >&2
        return 1
    }
    local stamp="$dir/node_modules/.package-lock.json"
    if [[ -d "$dir/node_modules/playwright-core" && -f "$stamp" && "$stamp" -nt "$dir/package-lock.json" ]]; then
        note "playwright-core: tests/browser/node_modules up to date"
        return
    fi
    note "playwright-core: installing into tests/browser/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# The store's PostgreSQL backend is tested against Debian's server, in a scratch cluster that
# scripts/postgres.sh starts on loopback (never the system cluster the package may create).
install_postgres() {
    if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        note "postgresql: $(ls -d /usr/lib/postgresql/*/bin | head -n 1) already installed"
        return
    fi
    note "postgresql: installing the Debian package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
}

# The multi-node tests use Debian's redis-server as the bus, a scratch instance that
# scripts/redis.sh starts on loopback (never a system one).
install_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        note "redis: $(redis-server --version | cut -d' ' -f1-3) already installed"
        return
    fi
    note "redis: installing the Debian package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
}

stage_tools() {
    install_postgres
    install_redis
    install_rust_components
    install_cargo_fuzz
    install_python_websockets
    install_node_clients
    install_browser
}

# ---------------------------------------------------------------------------------------------
# cargo checks

stage_fmt() {
    cargo fmt --all --check
}

stage_clippy() {
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    # The codec's core must build without its optional tokio adapter, and must not pull in
    # tokio or a random number generator (the tests enable the feature, so check it here).
    cargo clippy -p rfc6455 --lib --no-default-features -- -D warnings
    local deps
    deps="$(cargo tree -p rfc6455 --no-default-features -e normal --prefix none)"
    if grep -Eq '^(tokio|getrandom) ' <<<"$deps"; then
        echo "rfc6455 without features depends on tokio or getrandom:" >&2
        echo "$deps" >&2
        return 1
    fi
}

# Starts the scratch PostgreSQL cluster for the test stage (stopped by the EXIT trap). Its
# directory is outside $SCRATCH: the cluster belongs to the postgres user, who cannot enter
# root's private mktemp directory.
start_postgres() {
    export CHATGROUP_PG_DIR
    CHATGROUP_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/chatgroup-pg.XXXXXX")"
    CHATGROUP_TEST_POSTGRES="$(bash scripts/postgres.sh start)"
    export CHATGROUP_TEST_POSTGRES CHATGROUP_REQUIRE_POSTGRES=1
    PG_STARTED=1
    note "postgresql: scratch cluster at $CHATGROUP_TEST_POSTGRES"
}

stop_postgres() {
    bash scripts/postgres.sh stop >/dev/null 2>&1 || true
    rm -rf "$CHATGROUP_PG_DIR"
}

# Starts the scratch Redis for the multi-node tests (stopped by the EXIT trap).
start_redis() {
    export CHATGROUP_REDIS_DIR="$SCRATCH/redis"
    CHATGROUP_TEST_REDIS="$(bash scripts/redis.sh start)"
    export CHATGROUP_TEST_REDIS CHATGROUP_REQUIRE_REDIS=1
    REDIS_STARTED=1
    note "redis: scratch instance at $CHATGROUP_TEST_REDIS"
}

stage_test() {
    # The binaries too (the loadgen one is no test's dependency), with the selection
    # perf/smoke.sh builds: one feature resolution, so the perf stage compiles nothing.
    cargo build --workspace --all-features --bins --tests
    # --no-fail-fast: one CI run reports every failing test binary, not just the first.
    cargo test --workspace --all-features --no-fail-fast
}

stage_doc() {
    # Libraries only: a binary's doc comments are its clap --help text, written for a
    # terminal rather than for rustdoc's markdown (brackets there are not intra-doc links).
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --lib --document-private-items
}

stage_benches() {
    # Running criterion benches (even in --test mode) takes too long for CI; building them
    # with the test profile reuses the artifacts of the test stage and proves they compile.
    cargo build --benches --workspace --all-features
}

# ---------------------------------------------------------------------------------------------
# browser client logic

stage_web() {
    # Plain ES modules tested with Node's built-in runner: nothing to install, a few seconds,
    # so it runs early and a broken client fails the run before the long cargo stages.
    command -v node >/dev/null 2>&1 || {
        echo "node not found: the web stage needs Node.js 18+" >&2
        return 1
    }
    node --test web/test/
}

# ---------------------------------------------------------------------------------------------
# fuzz smoke

stage_fuzz() {
    if [[ ! -d fuzz ]]; then
        note "no fuzz/ directory yet: nothing to fuzz"
        return
    fi
    if [[ ! -f fuzz/Cargo.toml ]]; then
        note "fuzz/ has no Cargo.toml yet: nothing to fuzz"
        return
    fi
    local listing targets=()
    listing="$(cargo +nightly fuzz list)"
    mapfile -t targets < <(printf '%s\n' "$listing" | grep -v '^[[:space:]]*$' || true)
    if ((${#targets[@]} == 0)); then
        echo "fuzz/Cargo.toml exists but 'cargo fuzz list' shows no targets" >&2
        return 1
    fi
    note "targets: ${targets[*]} (${FUZZ_SECONDS}s each, sanitizer $FUZZ_SANITIZER)"

    # One build for all targets; the runs below then start at once.
    cargo +nightly fuzz build --sanitizer "$FUZZ_SANITIZER"

    local target corpus log rc
    for target in "${targets[@]}"; do
        # libFuzzer writes new inputs into its corpus dir: work on a copy so the committed
        # seeds stay small and unchanged.
        corpus="$SCRATCH/corpus/$target"
        log="$SCRATCH/fuzz-$target.log"
        mkdir -p "$corpus"
        if [[ -d "fuzz/seeds/$target" ]]; then
            cp -R "fuzz/seeds/$target/." "$corpus/"
        else
            note "WARNING: no committed seeds in fuzz/seeds/$target; starting from an empty corpus"
        fi
        note "fuzz $target: $(find "$corpus" -type f | wc -l) seeds, ${FUZZ_SECONDS}s"
        rc=0
        # -timeout: an input taking longer than 10 s counts as a hang, which is a failure.
        cargo +nightly fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" "$corpus" -- \
            -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
            >"$log" 2>&1 || rc=$?
        if ((rc != 0)); then
            tail -n 80 "$log"
            echo "fuzz target $target FAILED (exit $rc); the crashing input is under fuzz/artifacts/$target/" >&2
            echo "reproduce: cargo +nightly fuzz run $target fuzz/artifacts/$target/<file>" >&2
            return "$rc"
        fi
        # The final stats say how much ground the run covered.
        grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' "$log" |
            sed 's/^/        /' || true
    done
}

# ---------------------------------------------------------------------------------------------
# optional scripts owned by other parts of the project

stage_perf() {
    if [[ -f perf/smoke.sh ]]; then
        bash perf/smoke.sh
    else
        note "no perf/smoke.sh yet: skipped"
    fi
}

stage_browser() {
    # The debug binary the test stage built (cargo build --workspace --all-features --bins
    # --tests), with web/ embedded: the tests check the page that ships.
    CHATGROUP_BIN="$ROOT/target/debug/chatgroup" bash tests/browser/run.sh
}

stage_interop() {
    if [[ -f tests/interop/run.sh ]]; then
        bash tests/interop/run.sh
    else
        note "no tests/interop/run.sh: the interop clients run from the cargo tests"
    fi
}

# ---------------------------------------------------------------------------------------------

stage tools stage_tools
stage fmt stage_fmt
stage web stage_web
stage clippy stage_clippy
start_postgres
start_redis
stage test stage_test
stage browser stage_browser
stage doc stage_doc
stage benches stage_benches
if [[ "$SKIP_FUZZ" == 1 ]]; then
    printf '\n(fuzz stage skipped: SKIP_FUZZ=1)\n'
else
    stage fuzz stage_fuzz
fi
stage perf stage_perf
stage interop stage_interop

print_times
printf 'stages: %d passed, 0 failed\n' "$PASSED"

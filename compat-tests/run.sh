#!/usr/bin/env bash
# Cross-language compatibility suite: djauth against real Django from PyPI.
#
#   compat-tests/run.sh            # Django 4.2, 5.2 and 6.1
#   compat-tests/run.sh 5.2        # only the named ones (4.2 | 5.2 | 6.1)
#
# For each Django version: make (or reuse) a venv under target/compat-venvs/django-<ver>
# (Python 3.11 for 4.2/5.2, Python >= 3.12 for 6.1), pip install requirements-<ver>.txt and
# django-app/ (the djauth-django package test_django_app.py tests; reinstalled when its files
# change), then run pytest with DJAUTH_DJANGO_VERSION=<ver>.  The djauth binary and the
# example app (<dir of DJAUTH_BIN>/examples/shared_login) are built with `cargo build --bin
# djauth --example shared_login` unless DJAUTH_BIN names one.  Extra pytest options can be
# passed through PYTEST_ADDOPTS.  Exit status is non-zero if any version fails.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENVS="$REPO/target/compat-venvs"
APP="$REPO/django-app"

log() { printf '== compat: %s\n' "$*" >&2; }
die() { printf 'compat: error: %s\n' "$*" >&2; exit 2; }

versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(4.2 5.2 6.1)
for v in "${versions[@]}"; do
    [ -f "$HERE/requirements-$v.txt" ] || die "unknown Django version '$v' (no compat-tests/requirements-$v.txt)"
done

# --- interpreters ----------------------------------------------------------------------
# Usable = runs, reports the wanted major.minor and has the venv module (pyenv shims exist
# for versions that are not active and fail when run, hence the real check).
py_ok() { # py_ok EXE MAJOR.MINOR_MIN MAJOR.MINOR_MAX
    "$1" - "$2" "$3" >/dev/null 2>&1 <<'EOF'
import sys, venv, ensurepip
lo, hi = (tuple(int(x) for x in a.split(".")) for a in sys.argv[1:3])
sys.exit(0 if lo <= sys.version_info[:2] <= hi else 1)
EOF
}

pyenv_versions() { # pyenv-installed interpreters of one minor version, newest patch first
    local root
    root="$(pyenv root 2>/dev/null)" || root="${PYENV_ROOT:-$HOME/.pyenv}"
    [ -d "$root/versions" ] || return 0
    local minor
    for minor in "$@"; do
        ls -1d "$root/versions/$minor".* 2>/dev/null | grep -E "/$minor\.[0-9]+$" | sort -rV |
            while read -r d; do echo "$d/bin/python"; done
    done
}

find_python() { # find_python MIN MAX MINOR  (pyenv's versions first, then PATH)
    local lo="$1" hi="$2" m="$3"
    local c
    for c in $(pyenv_versions "$m") $(command -v "python$m" 2>/dev/null) $(command -v python3 2>/dev/null); do
        if py_ok "$c" "$lo" "$hi"; then echo "$c"; return 0; fi
    done
    return 1
}

python_for() {
    case "$1" in
        4.2|5.2) find_python 3.11 3.11 3.11 ;;
        6.1)     { find_python 3.12 3.12 3.12 || find_python 3.13 3.13 3.13; } ;;
        *) return 1 ;;
    esac
}

# --- venvs -----------------------------------------------------------------------------
setup_venv() { # setup_venv VERSION -> prints the venv's python
    local v="$1" venv="$VENVS/django-$v" req="$HERE/requirements-$v.txt" py stamp
    if ! "$venv/bin/python" -c "import sys" >/dev/null 2>&1; then
        py="$(python_for "$v")" || { log "no suitable Python for Django $v"; return 1; }
        log "creating $venv with $("$py" -c 'import sys; print(sys.version.split()[0])') ($py)"
        rm -rf "$venv"
        mkdir -p "$VENVS"
        "$py" -m venv "$venv" >&2 || return 1
    fi
    stamp="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
        log "installing $(basename "$req")"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2 || return 1
        echo "$stamp" >"$venv/.requirements.sha256"
    fi
    install_app "$venv" || return 1
    echo "$venv/bin/python"
}

app_files() { # the files django-app/ is built from, relative to it
    (cd "$APP" && find pyproject.toml README.md djauth_django -name __pycache__ -prune -o -type f -print | LC_ALL=C sort)
}

install_app() { # install_app VENV: (re)install django-app, without dependencies, when its files changed
    local venv="$1" stamp tmp rc
    stamp="$(cd "$APP" && app_files | xargs sha256sum | sha256sum | cut -d' ' -f1)"
    [ "$(cat "$venv/.djauth-django.sha256" 2>/dev/null)" = "$stamp" ] && return 0
    log "installing django-app (djauth-django)"
    # Built from a copy of just those files: no build/ or *.egg-info in the work tree, and no
    # module deleted from the app lingering in a stale build/lib.
    tmp="$(mktemp -d)"
    tar -C "$APP" -cf - $(app_files) | tar -C "$tmp" -xf -
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$tmp" >&2
    rc=$?
    rm -rf "$tmp"
    [ $rc -eq 0 ] || return 1
    echo "$stamp" >"$venv/.djauth-django.sha256"
}

# --- the binary ------------------------------------------------------------------------
if [ -z "${DJAUTH_BIN:-}" ]; then
    log "cargo build --bin djauth --example shared_login --features ${DJAUTH_CARGO_FEATURES:-mysql}"
    # the example app (djauth's extractors) is what test_shared_login.py runs beside the binary
    (cd "$REPO" && cargo build --bin djauth --example shared_login --features "${DJAUTH_CARGO_FEATURES:-mysql}") ||
        die "cargo build failed"
    # honours CARGO_TARGET_DIR / build.target-dir
    target_dir="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" || target_dir="$REPO/target"
    DJAUTH_BIN="${target_dir:-$REPO/target}/debug/djauth"
fi
[ -x "$DJAUTH_BIN" ] || die "DJAUTH_BIN=$DJAUTH_BIN is not an executable"
DJAUTH_BIN="$(cd "$(dirname "$DJAUTH_BIN")" && pwd)/$(basename "$DJAUTH_BIN")"  # pytest runs elsewhere
export DJAUTH_BIN

# --- run -------------------------------------------------------------------------------
ONE_VERSION="${DJAUTH_ONE_VERSION:-5.2}"
declare -A status
failed=0
for v in "${versions[@]}"; do
    start=$SECONDS
    if ! py="$(setup_venv "$v")"; then
        status[$v]="FAILED (environment setup)"
        failed=1
        continue
    fi
    # Suites marked one_version test djauth's own behaviour (browser, lockout, faults), not
    # a Django format: they run with the default version only, to keep CI within its budget.
    select=()
    [ "$v" = "$ONE_VERSION" ] || select=(-m "not one_version")
    log "Django $v: pytest ${select[*]}"
    (cd "$HERE" && DJAUTH_DJANGO_VERSION="$v" "$py" -m pytest -q "${select[@]}")
    rc=$?
    if [ $rc -eq 0 ]; then
        status[$v]="passed ($((SECONDS - start)) s)"
    else
        status[$v]="FAILED (pytest exit $rc, $((SECONDS - start)) s)"
        failed=1
    fi
done

for v in "${versions[@]}"; do
    log "Django $v: ${status[$v]}"
done
exit $failed

"""Soak smoke (issue 7): `bench/soak.py --minutes 0.5` on the debug binary the suite tests.

Two `djauth serve` processes and Django under gunicorn on one throw-away PostgreSQL, 30 s of
mixed load (logins, logouts, password changes, revocations, forward-auth) with the database
stopped and restarted half-way; see bench/soak.py for what it checks.  It must exit 0 and
print PASS; its whole output is shown when it does not.

Needs PostgreSQL's server binaries (skipped when missing, failed under CI, as dbfixtures does)
and gunicorn (requirements-5.2.txt).  soak.py is written against Django 5.2, so this runs
with that version only (one_version; skipped under any other).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dbservers
import djcompat
from dbfixtures import REQUIRED

HERE = Path(__file__).resolve().parent
SOAK = HERE.parent / "bench" / "soak.py"
MINUTES = 0.5
# About 40 s on two busy cores (set-up, 30 s of load, the final checks); the limit is only
# there to turn a hang into a failure.
TIMEOUT = 240

pytestmark = [
    pytest.mark.skipif(djcompat.INPROCESS, reason="needs the djauth binary"),
    pytest.mark.skipif(os.environ.get("DJAUTH_DJANGO_VERSION", "5.2") != "5.2",
                       reason="bench/soak.py is written against Django 5.2"),
    pytest.mark.one_version,
]


def _missing(what):
    if REQUIRED:
        pytest.fail(what + " (required: CI / DJAUTH_REQUIRE_DBSERVERS=1)", pytrace=False)
    pytest.skip(what)


def test_soak_smoke_passes():
    if not dbservers.postgres_available():
        _missing(f"PostgreSQL not installed: apt-get install -y {dbservers.PG_APT_PACKAGES}")
    if importlib.util.find_spec("gunicorn") is None:
        _missing("gunicorn not installed in this Python (compat-tests/requirements-5.2.txt)")

    cmd = [sys.executable, str(SOAK), "--minutes", str(MINUTES), "--djauth", str(djcompat.DJAUTH_BIN)]
    start = time.monotonic()
    # Its own session: on a timeout, SIGTERM lets soak.py stop its servers (PostgreSQL,
    # djauth, gunicorn) itself; SIGKILL to the whole group only if that does not end it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"bench/soak.py did not finish within {TIMEOUT} s:\n{out}", pytrace=False)
    took = time.monotonic() - start
    lines = out.splitlines()
    assert proc.returncode == 0 and "PASS" in lines, (
        f"{' '.join(cmd)}\nexit {proc.returncode} after {took:.0f} s:\n{out}")

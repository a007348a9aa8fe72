"""Shared helpers for the compat suite: running djauth, Django-side oracles, random inputs."""

import json
import os
import random
import subprocess
import sys
import threading
import types
from collections import namedtuple
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# COMPAT_REFERENCE=inprocess: run reference_djauth.py (Django itself) in this process
# instead of the binary -- validates the tests, not djauth.
INPROCESS = os.environ.get("COMPAT_REFERENCE") == "inprocess"
DJAUTH_BIN = Path(os.environ.get("DJAUTH_BIN") or REPO / "target" / "debug" / "djauth")

DJANGO_VERSION = "%d.%d" % django.VERSION[:2]

# Process TZ handed to djauth: deliberately neither UTC nor America/Chicago, so an
# implementation that reads the machine's local time instead of DJAUTH_TIME_ZONE fails.
DJAUTH_PROCESS_TZ = "Asia/Kathmandu"

Result = namedtuple("Result", "rc stdout stderr")


class DjauthResult(Result):
    """(rc, stdout, stderr) with ``out`` = stdout minus one trailing newline."""

    @property
    def out(self):
        s = self.stdout
        if s.endswith("\r\n"):
            return s[:-2]
        if s.endswith("\n"):
            return s[:-1]
        return s

    @property
    def json(self):
        return json.loads(self.stdout)

    def __str__(self):
        return f"rc={self.rc} stdout={self.stdout!r} stderr={self.stderr!r}"


def _bool(v):
    return "true" if v else "false"


def settings_env():
    """DJAUTH_* variables mirroring Django's current (possibly overridden) settings."""
    return {
        "DJAUTH_SECRET_KEY": settings.SECRET_KEY,
        "DJAUTH_SECRET_KEY_FALLBACKS": ",".join(settings.SECRET_KEY_FALLBACKS),
        "DJAUTH_PASSWORD_HASHERS": ",".join(settings.PASSWORD_HASHERS),
        "DJAUTH_SESSION_COOKIE_AGE": str(settings.SESSION_COOKIE_AGE),
        "DJAUTH_PASSWORD_RESET_TIMEOUT": str(settings.PASSWORD_RESET_TIMEOUT),
        "DJAUTH_TIME_ZONE": settings.TIME_ZONE,
        "DJAUTH_USE_TZ": _bool(settings.USE_TZ),
        "DJAUTH_CSRF_TRUSTED_ORIGINS": ",".join(settings.CSRF_TRUSTED_ORIGINS),
        "DJAUTH_DJANGO_VERSION": DJANGO_VERSION,
    }


def djauth(*args, stdin=None, env=None, timeout=120):
    """Run djauth; returns DjauthResult(rc, stdout, stderr) (text, UTF-8).

    ``env`` entries override the settings-derived DJAUTH_* values; a value of None
    removes the variable.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_")}
    full_env["TZ"] = DJAUTH_PROCESS_TZ
    full_env.update(settings_env())
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    if INPROCESS:
        import reference_djauth

        rc, o, e = reference_djauth.run_inprocess([str(a) for a in args], stdin or b"", full_env)
        return DjauthResult(rc, o.decode("utf-8", "surrogateescape"), e.decode("utf-8", "replace"))
    proc = subprocess.run(
        [str(DJAUTH_BIN), *map(str, args)],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )
    return DjauthResult(
        proc.returncode,
        proc.stdout.decode("utf-8", "surrogateescape"),
        proc.stderr.decode("utf-8", "replace"),
    )


def ok(res):
    """Assert success and return stdout minus the trailing newline."""
    assert res.rc == 0, f"djauth failed: {res}"
    return res.out


def refused(res, rc=1):
    """Assert a refusal with exit status ``rc`` and a reason on stderr."""
    assert res.rc == rc, f"expected exit {rc}: {res}"
    assert res.stderr.strip(), f"expected a reason on stderr: {res}"


# --------------------------------------------------------------------------------------
# Clock pinning on the Django side
# --------------------------------------------------------------------------------------
@contextmanager
def django_time(t):
    """Pin time.time() as seen by django.core.signing (TimestampSigner) to ``t``."""
    from django.core import signing

    with mock.patch.object(signing, "time", types.SimpleNamespace(time=lambda: t)):
        yield


def naive_local(t, tz=None):
    """What datetime.now() returns at Unix time ``t`` in a process whose TZ is ``tz``."""
    tz = tz or settings.TIME_ZONE
    return datetime.fromtimestamp(t, ZoneInfo(tz)).replace(tzinfo=None)


@contextmanager
def token_time(t):
    """Pin PasswordResetTokenGenerator._now() to Unix time ``t`` (local TIME_ZONE wall clock)."""
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    with mock.patch.object(PasswordResetTokenGenerator, "_now", return_value=naive_local(t)):
        yield


# --------------------------------------------------------------------------------------
# Password hashers
# --------------------------------------------------------------------------------------
def installed_algorithms():
    from django.contrib.auth.hashers import get_hashers

    return [h.algorithm for h in get_hashers()]


def hasher_path(algorithm):
    from django.contrib.auth.hashers import get_hashers

    for h in get_hashers():
        if h.algorithm == algorithm:
            return "%s.%s" % (type(h).__module__, type(h).__qualname__)
    raise KeyError(algorithm)


def django_verify(password, encoded):
    """Django's (is_correct, must_update) for check_password with the preferred hasher.

    Uses verify_password() (5.0+) or the identical logic inlined in 4.2's check_password.
    Returns (False, False) when Django's hasher raises on a malformed hash of a known
    algorithm (a login would fail with a server error, i.e. not succeed).
    """
    from django.contrib.auth import hashers

    try:
        if hasattr(hashers, "verify_password"):
            return hashers.verify_password(password, encoded)
        if password is None or not hashers.is_password_usable(encoded):
            return False, False
        preferred = hashers.get_hasher("default")
        try:
            hasher = hashers.identify_hasher(encoded)
        except ValueError:
            return False, False
        hasher_changed = hasher.algorithm != preferred.algorithm
        must_update = hasher_changed or preferred.must_update(encoded)
        return hasher.verify(password, encoded), must_update
    except Exception:  # malformed hash of a known algorithm
        return False, False


def django_identify(encoded):
    from django.contrib.auth.hashers import identify_hasher, is_password_usable

    if not is_password_usable(encoded):
        return None
    try:
        return identify_hasher(encoded).algorithm
    except ValueError:
        return None


# --------------------------------------------------------------------------------------
# Auth backend used by the session-hash tests (no database)
# --------------------------------------------------------------------------------------
class MemoryBackend:
    users = {}

    def authenticate(self, request, **kwargs):
        return None

    def get_user(self, user_id):
        return self.users.get(str(user_id))


def make_user(pk=1, password="", last_login=None, email=""):
    from django.contrib.auth.models import User

    return User(pk=pk, username=f"user{pk}", password=password, last_login=last_login, email=email)


class DuckUser:
    """Minimal user for PasswordResetTokenGenerator with an arbitrary pk (e.g. a UUID string)."""

    def __init__(self, pk, password, last_login, email):
        self.pk = pk
        self.password = password
        self.last_login = last_login
        self.email = email

    @classmethod
    def get_email_field_name(cls):
        return "email"


def user_json(pk, password, last_login, email):
    return json.dumps(
        {
            "pk": str(pk),
            "password": password,
            "last_login": last_login.isoformat() if last_login is not None else None,
            "email": email,
        }
    )


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


# --------------------------------------------------------------------------------------
# Random inputs
# --------------------------------------------------------------------------------------
UNICODE_SAMPLES = "éèüßøåñçЖжЯ中文字日本語한국어العربيةעברית€£¥©®™✓☃★♥\u2028\u2029\u00a0\u200b"
ASTRAL_SAMPLES = ["😀", "🐍", "🦀", "👩\u200d💻", "𝄞", "𐍈", "🇫🇷"]
ASCII_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
ASCII_CONTROL = "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f"


def random_text(rng, min_len=0, max_len=24, *, controls=True, astral=True, ascii_only=False):
    n = rng.randint(min_len, max_len)
    out = []
    for _ in range(n):
        r = rng.random()
        if ascii_only or r < 0.55:
            out.append(rng.choice(ASCII_PRINTABLE))
        elif r < 0.8:
            out.append(rng.choice(UNICODE_SAMPLES))
        elif r < 0.92 and astral:
            out.append(rng.choice(ASTRAL_SAMPLES))
        elif controls:
            out.append(rng.choice(ASCII_CONTROL))
        else:
            out.append(rng.choice(ASCII_PRINTABLE))
    return "".join(out)


def random_password(rng, min_len=0, max_len=30):
    """A password: ASCII/Unicode/emoji, never ending in a newline (djauth strips one)."""
    pw = random_text(rng, min_len, max_len, controls=False)
    return pw.rstrip("\n")


def random_json_value(rng, depth=0, *, floats=True):
    kinds = ["str", "int", "bool", "null", "list", "dict", "str", "int"]
    if floats:
        kinds.append("float")
    if depth >= 3:
        kinds = [k for k in kinds if k not in ("list", "dict")]
    k = rng.choice(kinds)
    if k == "str":
        return random_text(rng)
    if k == "int":
        return rng.choice([0, 1, -1, rng.randint(-1000, 1000), rng.randint(-(2**53), 2**53)])
    if k == "bool":
        return rng.random() < 0.5
    if k == "null":
        return None
    if k == "float":
        return rng.choice([0.5, -2.25, 1.0, rng.uniform(-1e6, 1e6), rng.random()])
    if k == "list":
        return [random_json_value(rng, depth + 1, floats=floats) for _ in range(rng.randint(0, 4))]
    return random_json_dict(rng, depth + 1, floats=floats)


def random_json_dict(rng, depth=0, *, floats=True, max_keys=6):
    d = {}
    for _ in range(rng.randint(0, max_keys)):
        d[random_text(rng, 0, 12)] = random_json_value(rng, depth, floats=floats)
    return d


def random_session_dict(rng):
    d = random_json_dict(rng, floats=True)
    if rng.random() < 0.5:
        d["_auth_user_id"] = str(rng.randint(1, 10**6))
        d["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        d["_auth_user_hash"] = "%064x" % rng.getrandbits(256)
    if rng.random() < 0.3:
        d["_session_expiry"] = rng.choice([0, 300, "2026-11-24T08:04:14.853841+00:00"])
    return d


def canonical(obj):
    """Order-sensitive canonical form for comparing decoded JSON (dict order preserved)."""
    return json.dumps(obj, ensure_ascii=True, sort_keys=False)


def random_key(rng, prefix):
    """A secret key for SECRET_KEY(_FALLBACKS): printable ASCII, no comma (the env list
    separator), no leading/trailing whitespace (djauth trims list items of the env form)."""
    body = "".join(rng.choice(ASCII_PRINTABLE.replace(",", "")) for _ in range(rng.randint(10, 40)))
    return (prefix + body).strip()


def seeded(rng, *parts):
    return random.Random(f"{rng.random()}:{parts}")


# The end of a JsonLinesChild script: answer each JSON line on stdin with the script's
# `op_<name>` function, after the greeting the script defined as GREETING. Needs json, sys,
# traceback and django.db.connections imported by the script; anything Django prints goes
# to stderr.
JSON_LINES_SERVE = '''
out = sys.stdout
sys.stdout = sys.stderr
out.write(json.dumps(GREETING) + "\\n")
out.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd.pop("op")
    try:
        ans = {"ok": True, "result": globals()["op_" + op](**cmd)}
    except Exception as e:
        ans = {"ok": False, "error": repr(e), "traceback": traceback.format_exc()}
    connections.close_all()
    out.write(json.dumps(ans) + "\\n")
    out.flush()
'''


class JsonLinesChild:
    """A Python script run in its own process (a Django configured apart from this one),
    driven by JSON lines: ``{"op": NAME, ...}`` in, ``{"ok": true, "result": ...}`` or
    ``{"ok": false, "error": ..., "traceback": ...}`` out. The script's first line is a
    greeting, kept in ``self.greeting``. Thread-safe; the script's stderr goes to a file
    shown when it dies."""

    def __init__(self, script: Path, arg: dict, cwd: Path):
        self.stderr_path = cwd / "django.stderr"
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, str(script), json.dumps(arg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "wb"), text=True,
                                     cwd=cwd, env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"})
        self.greeting = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"Django side exited: {self.stderr_path.read_text(errors='replace')[-3000:]}")
        return json.loads(line)

    def __call__(self, op, **kw):
        with self.lock:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
            ans = self._read()
        if not ans["ok"]:
            raise AssertionError(f"Django side {op}({kw}) failed: {ans['error']}\n{ans['traceback']}")
        return ans["result"]

    def close(self):
        self.proc.kill()
        self.proc.wait()

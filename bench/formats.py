"""PBKDF2 and session decoding: djauth against Python/Django, one run, one core each.

Run with a Python that has Django installed (bench/run.sh sets one up):
    python bench/formats.py [--iterations N] [--sessions N]
Prints each side's figure and the ratio; the issue's targets are PBKDF2 djauth/OpenSSL time
<= 1.0 and session decode >= 10x Django's rate per core.
"""

import argparse
import hashlib
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "".join(random.choices(string.ascii_letters, k=40))


def django_setup():
    import django
    from django.conf import settings

    settings.configure(SECRET_KEY=SECRET, USE_TZ=True, INSTALLED_APPS=["django.contrib.sessions"])
    django.setup()
    return django.get_version()


def rust_bench_binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "formats", "--no-run", "--message-format=json"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "formats" and msg.get("executable"):
            return msg["executable"]
    sys.exit("could not find the formats bench executable")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def make_sessions(n):
    """Blobs shaped like real ones: a login session, sometimes with more app data."""
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    blobs = []
    for i in range(n):
        data = {
            "_auth_user_id": str(random.randint(1, 10**6)),
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": "".join(random.choices("0123456789abcdef", k=64)),
        }
        if i % 4 == 0:
            data["cart"] = [random.randint(1, 999) for _ in range(random.randint(1, 20))]
            data["_session_expiry"] = 3600
        if i % 10 == 0:
            data["note"] = "".join(random.choices(string.ascii_letters + "éü日本", k=200))
        blobs.append(store.encode(data))
    return blobs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1_000_000, help="PBKDF2 iterations (Django 5.2: 1,000,000)")
    ap.add_argument("--hashes", type=int, default=7)
    ap.add_argument("--sessions", type=int, default=5000)
    args = ap.parse_args()

    version = django_setup()
    exe = rust_bench_binary()
    env = dict(os.environ, DJAUTH_SECRET_KEY=SECRET)
    # Both sides on one core, so neither borrows the other's.
    pin = ["taskset", "-c", "0"] if subprocess.run(["which", "taskset"], capture_output=True).returncode == 0 else []
    if pin:
        os.sched_setaffinity(0, {0})

    print(f"Django {version}, Python {sys.version.split()[0]}, OpenSSL {__import__('ssl').OPENSSL_VERSION}")
    print(f"one core each; PBKDF2-SHA256 {args.iterations:,} iterations, {args.hashes} hashes, median")

    py_times = []
    for i in range(args.hashes):
        t = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"correct horse battery staple", f"benchsaltbenchsalt{i:04}".encode(), args.iterations)
        py_times.append((time.perf_counter() - t) * 1e3)
    py_ms = median(py_times)
    rs_ms = float(subprocess.run(pin + [exe, "pbkdf2", str(args.iterations), str(args.hashes)],
                                 env=env, check=True, capture_output=True, text=True).stdout)
    print(f"  hashlib (OpenSSL) {py_ms:8.1f} ms   djauth {rs_ms:8.1f} ms   djauth/OpenSSL time ratio {rs_ms / py_ms:.2f}")

    from django.contrib.sessions.backends.db import SessionStore

    blobs = make_sessions(args.sessions)
    store = SessionStore()
    assert all(store.decode(b) for b in blobs)
    repeat = 3
    t = time.perf_counter()
    for _ in range(repeat):
        for b in blobs:
            store.decode(b)
    dj_rate = len(blobs) * repeat / (time.perf_counter() - t)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(blobs))
        path = f.name
    try:
        rate, _keys = subprocess.run(pin + [exe, "decode", path, "20"], env=env, check=True,
                                     capture_output=True, text=True).stdout.split()
    finally:
        os.unlink(path)
    rs_rate = float(rate)
    print(f"session decode ({len(blobs)} Django-made blobs):")
    print(f"  Django SessionStore.decode {dj_rate:10,.0f}/s   djauth {rs_rate:10,.0f}/s   ratio {rs_rate / dj_rate:.1f}x")


if __name__ == "__main__":
    main()

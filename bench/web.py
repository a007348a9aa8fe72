"""djauth serve against Django under gunicorn, same SQLite database, same core count, one run.

    python bench/web.py [--seconds 10] [--connections 16] [--djauth PATH | --build]

Needs: wrk (Debian package `wrk`), gunicorn and Django 5.2 in this Python, a release build
(target/release/djauth, or --djauth PATH; --build runs `cargo build --release --features mysql`). Measures the login page (anonymous GET) and the
password-change page for a logged-in user (session + user lookup + CSRF token), and prints
requests/s, p99 latency and the djauth/Django ratios. Issue 4's target: authenticated page
>= 10x Django's requests/s with p99 under 5 ms.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, free_port, run_wrk, start_djauth, start_gunicorn, stop, wait_port, write_django_site


def wrk(url, cookie, seconds, connections):
    r = run_wrk(url, cookie, seconds, connections, threads=2)
    return r["rps"], r["p99"], r["non2xx"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--djauth", type=Path, default=REPO / "target" / "release" / "djauth")
    ap.add_argument("--build", action="store_true", help="run cargo build --release --features mysql first")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    if args.build:
        subprocess.run(["cargo", "build", "--release", "--features", "mysql", "--bin", "djauth"], cwd=REPO, check=True)
    djauth = args.djauth
    if not djauth.exists():
        sys.exit(f"{djauth} does not exist: build it (--build) or name one with --djauth")
    cores = os.cpu_count() or 2

    tmp = Path(tempfile.mkdtemp(prefix="djauth-bench-web-"))
    db = tmp / "db.sqlite3"
    secret = secrets.token_urlsafe(40)
    env = dict(os.environ, DATABASE_URL=f"sqlite://{db}", DJAUTH_SECRET_KEY=secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
               DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher")
    subprocess.run([djauth, "migrate"], env=env, check=True, capture_output=True)
    login_form = "<form method=post>{% csrf_token %}{{ form.as_p }}</form>"
    denv = write_django_site(
        tmp, secret, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)},
        'from django.urls import include, path\nurlpatterns = [path("accounts/", include("django.contrib.auth.urls"))]\n',
        templates={"registration/login.html": login_form, "registration/password_change_form.html": login_form})
    subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.contrib.auth.models import User; "
                    "User.objects.create_user('bench', 'b@example.com', 'bench-pass')"], env=denv, check=True)
    key = subprocess.run([djauth, "session", "login", "bench"], env=env, check=True, capture_output=True, text=True).stdout.strip()

    results = {}
    dport, gport = free_port(), free_port()
    dj = start_djauth(djauth, env, dport)
    gu = start_gunicorn(denv, gport, cores)
    try:
        wait_port(dport, dj, "djauth")
        wait_port(gport, gu, "gunicorn")
        for name, path, cookie in [("login page (anonymous GET)", "/accounts/login/", None),
                                   ("password change (logged-in GET)", "/accounts/password_change/", f"sessionid={key}")]:
            for side, port in [("djauth", dport), ("django", gport)]:
                wrk(f"http://127.0.0.1:{port}{path}", cookie, 2, args.connections)  # warm-up
                results[(name, side)] = wrk(f"http://127.0.0.1:{port}{path}", cookie, args.seconds, args.connections)
    finally:
        stop(dj, gu)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{cores} cores; wrk -t2 -c{args.connections} -d{args.seconds}s; djauth serve ({cores} workers) vs "
          f"gunicorn ({cores} sync workers), one SQLite file")
    for name in dict.fromkeys(n for n, _ in results):
        d, g = results[(name, "djauth")], results[(name, "django")]
        print(f"{name}:")
        print(f"  djauth {d[0]:10,.0f} req/s  p99 {d[1]:7.2f} ms  non-2xx/3xx {d[2]}")
        print(f"  django {g[0]:10,.0f} req/s  p99 {g[1]:7.2f} ms  non-2xx/3xx {g[2]}")
        print(f"  ratio  {d[0] / g[0]:.1f}x requests/s")


if __name__ == "__main__":
    main()

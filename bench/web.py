"""djauth serve against Django under gunicorn, same SQLite database, same core count, one run.

    python bench/web.py [--seconds 10] [--connections 16]

Needs: wrk (Debian package `wrk`), gunicorn and Django 5.2 in this Python, a release build
(`cargo build --release` is run for you). Measures the login page (anonymous GET) and the
password-change page for a logged-in user (session + user lookup + CSRF token), and prints
requests/s, p99 latency and the djauth/Django ratios. Issue 4's target: authenticated page
>= 10x Django's requests/s with p99 under 5 ms.
"""

import argparse
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start")


def wrk(url, cookie, seconds, connections):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: 127.0.0.1", url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    subprocess.run(["cargo", "build", "--release", "--bin", "djauth"], cwd=REPO, check=True)
    djauth = REPO / "target" / "release" / "djauth"
    cores = os.cpu_count() or 2

    tmp = Path(tempfile.mkdtemp(prefix="djauth-bench-web-"))
    db = tmp / "db.sqlite3"
    secret = secrets.token_urlsafe(40)
    env = dict(os.environ, DATABASE_URL=f"sqlite://{db}", DJAUTH_SECRET_KEY=secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
               DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher")
    subprocess.run([djauth, "migrate"], env=env, check=True, capture_output=True)
    (tmp / "benchsite.py").write_text(textwrap.dedent(f"""
        SECRET_KEY = {secret!r}
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        USE_TZ = True
        INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(db)!r}}}}}
        PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ]
        ROOT_URLCONF = "benchurls"
        TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {{
            "loaders": [("django.template.loaders.locmem.Loader", {{
                "registration/login.html": "<form method=post>{{% csrf_token %}}{{{{ form.as_p }}}}</form>",
                "registration/password_change_form.html": "<form method=post>{{% csrf_token %}}{{{{ form.as_p }}}}</form>",
            }})]}}}}]
    """))
    (tmp / "benchurls.py").write_text('from django.urls import include, path\nurlpatterns = [path("accounts/", include("django.contrib.auth.urls"))]\n')
    denv = dict(os.environ, DJANGO_SETTINGS_MODULE="benchsite", PYTHONPATH=str(tmp))
    subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.contrib.auth.models import User; "
                    "User.objects.create_user('bench', 'b@example.com', 'bench-pass')"], env=denv, check=True)
    key = subprocess.run([djauth, "session", "login", "bench"], env=env, check=True, capture_output=True, text=True).stdout.strip()

    results = {}
    dport, gport = free_port(), free_port()
    dj = subprocess.Popen([djauth, "serve", "--bind", f"127.0.0.1:{dport}"], env=env, stderr=subprocess.PIPE)
    gu = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(cores), "-b", f"127.0.0.1:{gport}",
                           "--log-level", "warning", "django.core.wsgi:get_wsgi_application()"], env=denv,
                          stderr=subprocess.PIPE)
    try:
        wait_port(dport, dj, "djauth")
        wait_port(gport, gu, "gunicorn")
        for name, path, cookie in [("login page (anonymous GET)", "/accounts/login/", None),
                                   ("password change (logged-in GET)", "/accounts/password_change/", f"sessionid={key}")]:
            for side, port in [("djauth", dport), ("django", gport)]:
                wrk(f"http://127.0.0.1:{port}{path}", cookie, 2, args.connections)  # warm-up
                results[(name, side)] = wrk(f"http://127.0.0.1:{port}{path}", cookie, args.seconds, args.connections)
    finally:
        for p in (dj, gu):
            p.terminate()
            p.wait(timeout=20)
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

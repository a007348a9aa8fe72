"""Helpers shared by the wrk benchmarks (bench/web.py, bench/verify.py): ports, wrk runs and
their parsing, the Django settings module both benchmarks serve under gunicorn, and a line
describing the machine."""

import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# startproject's MIDDLEWARE minus MessageMiddleware (no messages app installed), in its order.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


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


def _ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(url, cookie, seconds, connections, threads=2, cpus=None, host="127.0.0.1"):
    """One wrk run with --latency. Returns a dict: rps, p50/p75/p90/p99 (ms), requests,
    non2xx (count of non-2xx/3xx answers), errors (socket errors: connect+read+write+timeout),
    and the raw output. `cpus` pins wrk with taskset (e.g. "1")."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", "Host: " + host, url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    if cpus is not None:
        cmd[:0] = ["taskset", "-c", str(cpus)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = {"out": out, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in (50, 75, 90, 99):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[f"p{pct}"] = _ms(*m.groups())
    r["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(map(int, errs.groups())) if errs else 0
    return r


def write_django_site(tmp, secret, database, urls_source, templates=None, extra=""):
    """Writes benchsite.py (settings) and benchurls.py (ROOT_URLCONF) into `tmp`; returns the
    environment that runs Django with them. `database` is the DATABASES["default"] dict,
    `templates` an optional {name: source} for the locmem template loader."""
    loaders = [("django.template.loaders.locmem.Loader", templates or {})]
    (Path(tmp) / "benchsite.py").write_text(textwrap.dedent(f"""
        SECRET_KEY = {secret!r}
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        USE_TZ = True
        INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
        DATABASES = {{"default": {database!r}}}
        PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        MIDDLEWARE = {MIDDLEWARE!r}
        ROOT_URLCONF = "benchurls"
        TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates",
                      "OPTIONS": {{"loaders": {loaders!r}}}}}]
    """) + textwrap.dedent(extra))
    (Path(tmp) / "benchurls.py").write_text(textwrap.dedent(urls_source))
    return dict(os.environ, DJANGO_SETTINGS_MODULE="benchsite", PYTHONPATH=str(tmp))


def start_gunicorn(env, port, workers, cpus=None, worker_class="sync", threads=1):
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
           "--log-level", "warning"]
    if worker_class != "sync":
        cmd += ["-k", worker_class, "--threads", str(threads)]
    cmd.append("django.core.wsgi:get_wsgi_application()")
    if cpus is not None:
        cmd[:0] = ["taskset", "-c", str(cpus)]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)


def start_djauth(binary, env, port, cpus=None):
    cmd = [str(binary), "serve", "--bind", f"127.0.0.1:{port}"]
    if cpus is not None:
        cmd[:0] = ["taskset", "-c", str(cpus)]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)


def stop(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            p.terminate()
    for p in procs:
        if p is not None:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def newest_source(root=REPO / "src"):
    return max(p.stat().st_mtime for p in Path(root).rglob("*") if p.is_file())


def machine_note():
    import django

    load = os.getloadavg()
    return (f"{os.cpu_count()} cores {platform.machine()}, load average {load[0]:.2f} at start, "
            f"Python {platform.python_version()}, Django {django.get_version()}")

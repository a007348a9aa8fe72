"""Forward-auth and the current-user API under wrk: djauth serve against the same views in
Django under gunicorn, same database, same logged-in session cookie, one run (issue 6).

    python bench/verify.py [--seconds 15] [--connections 16] [--threads 2] [--backend sqlite|postgres]
                           [--pin] [--django-conn-max-age SECONDS|none] [--djauth PATH] [--build]

Needs: wrk (Debian package `wrk`), gunicorn and Django 5.2 in this Python (e.g.
target/compat-venvs/django-5.2/bin/python after `make test`), psycopg 3 for --backend postgres
(a throw-away cluster from compat-tests/dbservers.py), and a release build of djauth: the script
refuses a target/release/djauth older than the newest file in src/ unless --build is given
(which runs `cargo build --release --features mysql`); an explicit --djauth (e.g. a copy
of a release build, safe from concurrent rebuilds) is used as it is.

One database (a temporary SQLite file, or a PostgreSQL database), migrated by `djauth migrate`.
Django creates the user (two groups, one with a comma in its name, group and user permissions,
a non-ASCII first name) and logs in with its test Client; that session cookie is what both
sides get. Django serves, with startproject's middleware (minus messages), two views written
to match djauth's handlers: a forward-auth view answering 200 with X-Auth-User-Id,
X-Auth-Username, X-Auth-Email, X-Auth-Is-Staff, X-Auth-Is-Superuser and X-Auth-Groups (values
percent-encoded as djauth does) or a JSON 401, and /api/v1/me with the same JSON fields.
Django keeps its database connection across requests (CONN_MAX_AGE=None) unless told otherwise,
the setting most favourable to Django.

Before measuring, both sides must answer 401 without the cookie and 200 with it, with equal
identity headers and equal JSON (session_expiry within 5 s); the script stops otherwise.
Then for each endpoint and side: a 2 s warm-up and one wrk --latency run. The anonymous
/auth/verify (401: no session row, no user) is measured too, as a floor: the HTTP stack and
middleware without the session and user queries.
Prints requests/s, p50/p99 and the djauth/Django ratios, and markdown rows for RESULTS.md.
Issue 6's target: /auth/verify >= 20x Django's requests/s, with p99 under 3 ms.
Exit status 1 if a check failed or a wrk run saw non-2xx answers or socket errors where
none were expected.

Without --pin, wrk and both servers share all cores (as bench/web.py measures), and each server
gets one worker per core. With --pin, wrk runs on the last core and the servers on the others
(one worker per remaining core); PostgreSQL's processes are not pinned.
"""

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

from _common import (REPO, free_port, machine_note, newest_source, run_wrk, start_djauth, start_gunicorn,
                     stop, wait_port, write_django_site)

DEFAULT_DJAUTH = REPO / "target" / "release" / "djauth"
IDENTITY_HEADERS = ["X-Auth-User-Id", "X-Auth-Username", "X-Auth-Email", "X-Auth-Is-Staff",
                    "X-Auth-Is-Superuser", "X-Auth-Groups"]

# The Django side: views written to answer what djauth's src/web/api.rs answers.
URLS = r'''
from datetime import timezone

from django.http import HttpResponse, JsonResponse
from django.urls import path


def header_text(s):
    """djauth's header_text: visible ASCII and space kept; %, comma and all else percent-encoded UTF-8."""
    return "".join(chr(b) if (0x21 <= b <= 0x7E and b not in (0x25, 0x2C)) or b == 0x20 else "%%%02X" % b
                   for b in s.encode())


def iso(dt):
    return dt.astimezone(timezone.utc).isoformat() if dt is not None else None


def not_logged_in():
    return JsonResponse({"error": "not logged in"}, status=401)


def verify(request):
    user = request.user
    if not user.is_authenticated:
        return not_logged_in()
    groups = sorted(user.groups.values_list("name", flat=True))
    response = HttpResponse()
    response["X-Auth-User-Id"] = header_text(str(user.pk))
    response["X-Auth-Username"] = header_text(user.username)
    response["X-Auth-Email"] = header_text(user.email)
    response["X-Auth-Is-Staff"] = "true" if user.is_staff else "false"
    response["X-Auth-Is-Superuser"] = "true" if user.is_superuser else "false"
    response["X-Auth-Groups"] = ",".join(header_text(g) for g in groups)
    return response


def me(request):
    user = request.user
    if not user.is_authenticated:
        return not_logged_in()
    return JsonResponse({
        "id": str(user.pk),
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "last_login": iso(user.last_login),
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(user.get_all_permissions()),
        "session_expiry": iso(request.session.get_expiry_date()),
    })


urlpatterns = [path("auth/verify", verify), path("api/v1/me", me)]
'''

# Run in a Django process: the user, groups, permissions, and a login by the test Client.
SETUP = r'''
import json
import django
django.setup()
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

def perm(label):
    app, codename = label.split(".")
    return Permission.objects.get(content_type__app_label=app, codename=codename)

user = User.objects.create_user("bench", "bench@example.com", "bench-pass", first_name="Zoë",
                                last_name="Bench", is_staff=True)
editors = Group.objects.create(name="editors")
editors.permissions.set([perm("auth.change_user"), perm("auth.view_user")])
ops = Group.objects.create(name="ops, eu")
ops.permissions.set([perm("auth.view_group")])
user.groups.set([editors, ops])
user.user_permissions.set([perm("sessions.delete_session")])
client = Client()
assert client.login(username="bench", password="bench-pass"), "Django's test Client could not log in"
print(json.dumps({"pk": user.pk, "cookie": client.cookies["sessionid"].value}))
'''

failures = []


def check(ok, msg):
    if not ok:
        failures.append(msg)
        print(f"CHECK FAILED: {msg}", file=sys.stderr)


def get(port, path, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": "127.0.0.1"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def agree(ports, cookie, expected):
    """Both sides answer alike; stops the run (exit 1) if they do not."""
    for path in ("/auth/verify", "/api/v1/me"):
        for side, port in ports.items():
            status, _, body = get(port, path)
            check(status == 401, f"{side} {path} without the cookie: {status} {body[:200]!r}, expected 401")
    answers = {side: get(port, "/auth/verify", cookie) for side, port in ports.items()}
    for side, (status, headers, body) in answers.items():
        check(status == 200, f"{side} /auth/verify with the cookie: {status} {body[:200]!r}")
        got = {h: headers.get(h.lower()) for h in IDENTITY_HEADERS}
        check(got == expected["headers"], f"{side} /auth/verify identity headers {got} != expected {expected['headers']}")
    mes = {}
    for side, port in ports.items():
        status, headers, body = get(port, "/api/v1/me", cookie)
        check(status == 200, f"{side} /api/v1/me with the cookie: {status} {body[:200]!r}")
        check(headers.get("content-type", "").startswith("application/json"), f"{side} /api/v1/me content-type {headers.get('content-type')}")
        try:
            mes[side] = json.loads(body)
        except ValueError:
            check(False, f"{side} /api/v1/me is not JSON: {body[:200]!r}")
    if len(mes) == 2:
        d, g = mes["djauth"], mes["django"]
        check(set(d) == set(g), f"/api/v1/me fields differ: djauth {sorted(d)} django {sorted(g)}")
        same = {k: v for k, v in d.items() if k != "session_expiry"}
        check(same == {k: v for k, v in g.items() if k != "session_expiry"},
              f"/api/v1/me differs:\n  djauth {json.dumps(d, ensure_ascii=False)}\n  django {json.dumps(g, ensure_ascii=False)}")
        for k, v in expected["me"].items():
            check(d.get(k) == v, f"/api/v1/me {k}: {d.get(k)!r}, expected {v!r}")
        try:
            de = datetime.fromisoformat(d["session_expiry"])
            ge = datetime.fromisoformat(g["session_expiry"])
            check(abs(de - ge) < timedelta(seconds=5), f"session_expiry djauth {de} django {ge}")
        except (KeyError, TypeError, ValueError) as e:
            check(False, f"session_expiry unreadable: {e}: {d.get('session_expiry')!r} {g.get('session_expiry')!r}")
        print("agreement: /api/v1/me =", json.dumps(d, ensure_ascii=False))
    print("agreement: /auth/verify headers =", expected["headers"])
    if failures:
        sys.exit(f"{len(failures)} check(s) failed before measuring; nothing measured")


def git_describe():
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return rev + ("+dirty src" if dirty else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, choices=(1, 2), default=2, help="wrk threads")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pin", action="store_true", help="wrk on the last core, the servers on the others")
    ap.add_argument("--django-conn-max-age", default="none",
                    help="Django's CONN_MAX_AGE: 'none' (persistent, default) or seconds (0 = Django's default)")
    ap.add_argument("--djauth", type=Path, default=DEFAULT_DJAUTH,
                    help="the djauth binary (default target/release/djauth, refused if older than src/)")
    ap.add_argument("--build", action="store_true", help="run cargo build --release --features mysql first")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    if args.pin and not shutil.which("taskset"):
        sys.exit("--pin needs taskset (util-linux)")
    if args.build:
        subprocess.run(["cargo", "build", "--release", "--features", "mysql"], cwd=REPO, check=True)
    djauth = args.djauth.resolve()
    if not djauth.exists():
        sys.exit(f"{djauth} missing: cargo build --release --features mysql (or pass --build)")
    if args.djauth == DEFAULT_DJAUTH and djauth.stat().st_mtime < newest_source():
        sys.exit(f"{djauth} is older than src/: cargo build --release --features mysql (or pass --build)")
    import django

    conn_max_age = None if args.django_conn_max_age.lower() == "none" else int(args.django_conn_max_age)
    cores = os.cpu_count() or 2
    if args.pin:
        if cores < 2:
            sys.exit("--pin needs at least 2 cores")
        server_cpus, wrk_cpus = (f"0-{cores - 2}" if cores > 2 else "0"), str(cores - 1)
        workers = cores - 1
    else:
        server_cpus = wrk_cpus = None
        workers = cores
    note = machine_note()
    results = {}

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="djauth-bench-verify-")))
        if args.backend == "sqlite":
            db = tmp / "db.sqlite3"
            url, database = f"sqlite://{db}", {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)}
            db_note = "one SQLite file"
        else:
            sys.path.insert(0, str(REPO / "compat-tests"))
            import dbservers

            server = stack.enter_context(dbservers.postgres_server())
            server.create_database("bench")
            url, database = server.url_for("bench"), server.django_database("bench")
            version = server.psql("SHOW server_version").strip()
            db_note = f"one PostgreSQL {version} database (throw-away cluster, fsync off, loopback TCP)"
        database["CONN_MAX_AGE"] = conn_max_age
        secret = secrets.token_urlsafe(40)
        env = dict(os.environ, DATABASE_URL=url, DJAUTH_SECRET_KEY=secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
                   DJAUTH_DJANGO_VERSION="%d.%d" % django.VERSION[:2],
                   DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher")
        subprocess.run([djauth, "migrate"], env=env, check=True, capture_output=True)
        denv = write_django_site(tmp, secret, database, URLS)
        made = json.loads(subprocess.run([sys.executable, "-c", SETUP], env=denv, check=True, capture_output=True,
                                         text=True).stdout)
        cookie = f"sessionid={made['cookie']}"
        pk = str(made["pk"])
        expected = {
            "headers": {"X-Auth-User-Id": pk, "X-Auth-Username": "bench", "X-Auth-Email": "bench@example.com",
                        "X-Auth-Is-Staff": "true", "X-Auth-Is-Superuser": "false", "X-Auth-Groups": "editors,ops%2C eu"},
            "me": {"id": pk, "username": "bench", "first_name": "Zoë", "groups": ["editors", "ops, eu"],
                   "permissions": ["auth.change_user", "auth.view_group", "auth.view_user", "sessions.delete_session"]},
        }

        dport, gport = free_port(), free_port()
        dj = start_djauth(djauth, env, dport, cpus=server_cpus)
        stack.callback(stop, dj)
        gu = start_gunicorn(denv, gport, workers, cpus=server_cpus)
        stack.callback(stop, gu)
        wait_port(dport, dj, "djauth")
        wait_port(gport, gu, "gunicorn")
        ports = {"djauth": dport, "django": gport}
        agree(ports, cookie, expected)

        runs = [("/auth/verify", "/auth/verify", cookie, 0), ("/api/v1/me", "/api/v1/me", cookie, 0),
                ("/auth/verify, no cookie (401)", "/auth/verify", None, None)]
        for name, path, c, want_non2xx in runs:
            for side, port in ports.items():
                u = f"http://127.0.0.1:{port}{path}"
                run_wrk(u, c, 2, args.connections, args.threads, wrk_cpus)  # warm-up
                r = run_wrk(u, c, args.seconds, args.connections, args.threads, wrk_cpus)
                results[(name, side)] = r
                if want_non2xx is not None:
                    check(r["non2xx"] == want_non2xx, f"{side} {name}: {r['non2xx']} non-2xx/3xx answers under wrk")
                else:
                    check(r["non2xx"] == r["requests"], f"{side} {name}: {r['requests'] - r['non2xx']} answers were not 401")
                check(r["errors"] == 0, f"{side} {name}: {r['errors']} socket errors under wrk")
                print(f"  {side:6} {name}: {r['rps']:,.0f} req/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms",
                      file=sys.stderr)
        # still the same answers after the load (a revoked or rewritten session would show here)
        status, headers, _ = get(dport, "/auth/verify", cookie)
        check(status == 200 and {h: headers.get(h.lower()) for h in IDENTITY_HEADERS} == expected["headers"],
              f"djauth /auth/verify after the runs: {status}")

    placement = (f"wrk pinned to CPU {wrk_cpus}, servers to CPU {server_cpus}" if args.pin
                 else f"wrk and the servers share all {cores} cores")
    if args.backend == "postgres":
        placement += "; PostgreSQL unpinned, on the same machine"
    conn_note = "persistent" if conn_max_age is None else f"CONN_MAX_AGE={conn_max_age}"
    print()
    print(f"{note}")
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(djauth.stat().st_mtime))
    print(f"djauth release build of {built} (tree now {git_describe()}), `djauth serve` ({workers} workers) vs Django {django.get_version()} "
          f"under gunicorn ({workers} sync workers, {conn_note} DB connection); {db_note}")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency; {placement}")
    rows = []
    for name in dict.fromkeys(n for n, _ in results):
        d, g = results[(name, "djauth")], results[(name, "django")]
        ratio = d["rps"] / g["rps"]
        print(f"{name}:")
        for side, r in (("djauth", d), ("django", g)):
            print(f"  {side} {r['rps']:10,.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
                  f"non-2xx/3xx {r['non2xx']}  socket errors {r['errors']}")
        verdict = ""
        if name == "/auth/verify":
            met = ratio >= 20 and d["p99"] < 3
            verdict = (f"  target (>= 20x requests/s, djauth p99 < 3 ms): "
                       f"{'met' if met else 'NOT met'} ({ratio:.1f}x, p99 {d['p99']:.2f} ms)")
        print(f"  ratio  {ratio:.1f}x requests/s, p50 {g['p50'] / d['p50']:.1f}x, p99 {g['p99'] / d['p99']:.1f}x lower")
        if verdict:
            print(verdict)
        rows.append(f"| {time.strftime('%Y-%m-%d %H:%M')} | {args.backend} | {'pinned' if args.pin else 'shared'} "
                    f"| {name} | {d['rps']:,.0f} | {d['p50']:.2f} / {d['p99']:.2f} ms | {g['rps']:,.0f} "
                    f"| {g['p50']:.2f} / {g['p99']:.2f} ms | {ratio:.1f}× |")
    print()
    print("| date | db | cores | endpoint | djauth req/s | djauth p50 / p99 | Django req/s | Django p50 / p99 | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if failures:
        print(f"\n{len(failures)} check(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

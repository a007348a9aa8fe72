"""Hardening (issue 7) on real servers: the login throttle, client addresses behind proxies,
the audit log and webhook, /healthz /readyz /metrics, and faults (database outage, SIGTERM,
oversized requests).

Per backend (SQLite, PostgreSQL, MariaDB; module-scoped, made on first use): one database
migrated by `djauth migrate`, a live Django process on it (users, sessions signed with the
site's SECRET_KEY) and a "main" `djauth serve` with LOGIN_FAILURE_LIMIT=5, LOGIN_COOLOFF=600,
TRUSTED_PROXIES=127.0.0.1, AUDIT_LOG_TABLE=true, an admin API token and the console email
backend.  Tests that need other settings start more `djauth serve` processes on the same
database (stdout/stderr to files; a panic anywhere fails the test at teardown).

Every login POST on a throttled server carries its own X-Forwarded-For address (helper
`addr()`), so the per-address counts of one test never leak into another's.  Rows are read
straight from the database (sqlite3 / psycopg / pymysql).  PostgreSQL and MariaDB come from
dbfixtures (skipped when not installed, failed under CI); the outage tests start their own
PostgreSQL and stop/restart it with dbservers' halt()/restart().
"""

import collections
import itertools
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import dbservers
import djcompat
from dbfixtures import mariadb_server, pg_server  # noqa: F401  (fixtures)
from djcompat import INPROCESS

pytestmark = [pytest.mark.skipif(INPROCESS, reason="needs the djauth binary (serve, migrate); reference_djauth.py has neither"),
              pytest.mark.one_version]

DJANGO_VERSION = os.environ.get("DJAUTH_DJANGO_VERSION", "5.2")
MD5 = "django.contrib.auth.hashers.MD5PasswordHasher"
PBKDF2 = "django.contrib.auth.hashers.PBKDF2PasswordHasher"
ENGINES = {"db": "django.contrib.sessions.backends.db",
           "signed_cookies": "django.contrib.sessions.backends.signed_cookies"}
INVALID_LOGIN = "Please enter a correct username and password. Note that both fields may be case-sensitive."
LOCKED_OUT = "Too many failed login attempts. Please try again later."
LIMIT = 5
COOLOFF = 600
# Django's DATA_UPLOAD_MAX_MEMORY_SIZE default, which djauth's views::MAX_BODY mirrors.
from django.conf import global_settings  # noqa: E402

MAX_BODY = global_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
assert MAX_BODY == 2_621_440

# ----------------------------------------------------------------------------------------
# The Django side: one process per database, JSON lines in, JSON lines out.
# ----------------------------------------------------------------------------------------
DJANGO_SIDE = r'''
import json, sys, traceback
cfg = json.loads(sys.argv[1])
if "mysql" in cfg["db"]["ENGINE"]:
    import pymysql
    pymysql.install_as_MySQLdb()
import django
from django.conf import settings
settings.configure(
    SECRET_KEY=cfg["secret"], USE_TZ=True, ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
    DATABASES={"default": cfg["db"]},
    SESSION_ENGINE="django.contrib.sessions.backends.db",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher",
                      "django.contrib.auth.hashers.PBKDF2PasswordHasher"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware"],
)
django.setup()
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
User = get_user_model()


def op_create_user(username, password, email=None, staff=False, superuser=False, encoded=None):
    u = User.objects.create_user(username, email or f"{username}@example.com", password,
                                 is_staff=staff, is_superuser=superuser)
    if encoded:
        User.objects.filter(pk=u.pk).update(password=encoded)
    return str(u.pk)


def op_login(username, password):
    c = Client()
    assert c.login(username=username, password=password), username
    return c.cookies[settings.SESSION_COOKIE_NAME].value


def op_sessions(n):
    """n sessions saved by Django's SessionStore (signed with this side's SECRET_KEY)."""
    from django.contrib.sessions.backends.db import SessionStore
    keys = []
    for i in range(n):
        s = SessionStore()
        s["n"] = i
        s.save()
        keys.append(s.session_key)
    return keys


GREETING = {"ok": True}
''' + djcompat.JSON_LINES_SERVE


class DjangoSide(djcompat.JsonLinesChild):
    def __init__(self, tmp: Path, secret: str, django_db: dict):
        script = tmp / "django_side_hardening.py"
        script.write_text(DJANGO_SIDE)
        super().__init__(script, {"secret": secret, "db": django_db}, tmp)


# ----------------------------------------------------------------------------------------
# djauth: servers, CLI, HTTP
# ----------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**settings):
    """os.environ without anyone's DJAUTH_* / DATABASE_URL, plus `settings` (None: left out)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_") and k != "DATABASE_URL"}
    env["DJAUTH_DJANGO_VERSION"] = DJANGO_VERSION
    for k, v in settings.items():
        if v is not None:
            env[k] = str(v)
    return env


class Server:
    """`djauth serve` on a free port; stdout and stderr go to files (a pipe nobody reads
    could fill and stall the server)."""

    def __init__(self, env: dict, tmp: Path, name: str):
        self.env = env
        self.port = free_port()
        self.out = tmp / f"{name}.stdout"
        self.err = tmp / f"{name}.stderr"
        self.proc = subprocess.Popen([str(djcompat.DJAUTH_BIN), "serve", "--bind", f"127.0.0.1:{self.port}"], env=env,
                                     stdout=open(self.out, "wb"), stderr=open(self.err, "wb"))
        deadline = time.time() + 20
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"djauth serve did not start: {self.stderr()}")

    def stderr(self):
        return self.err.read_text(errors="replace")

    def stdout(self):
        return self.out.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("djauth serve did not stop within 15 s of SIGTERM")
        return self.proc.returncode

    def assert_no_panic(self):
        err = self.stderr()
        assert "panicked" not in err, err[-5000:]


class Resp:
    def __init__(self, status, headers, body, cookies, elapsed=0.0):
        self.status, self.headers, self.body, self.cookies, self.elapsed = status, headers, body, cookies, elapsed

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers.get('location', '')} {self.body[:300]!r}>"


def http(port, method, path, cookies=None, form=None, headers=None, timeout=30, conn=None):
    conn = conn or HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Host": f"127.0.0.1:{port}"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items() if v is not None)
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    h.update(headers or {})
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    set_cookies = {}
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            set_cookies[name] = rest.split(";")[0]
    return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data, set_cookies, elapsed)


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"')

_addresses = itertools.count(1)


def addr():
    """A fresh client address (198.18.0.0/15, the benchmarking range) for X-Forwarded-For."""
    n = next(_addresses)
    return f"198.{18 + n // 65000}.{(n % 65000) // 250}.{n % 250 + 1}"


def xff(address):
    return {"X-Forwarded-For": address}


def csrf_pair(port, cookies=None):
    """(masked token for a form, csrftoken cookie) from the login page."""
    r = http(port, "GET", "/accounts/login/", cookies=cookies)
    assert r.status == 200, r
    cookie = r.cookies.get("csrftoken") or (cookies or {}).get("csrftoken")
    return CSRF_INPUT.search(r.body).group(1), cookie


def post_login(port, username, password, address=None, csrf=None, headers=None):
    token, cookie = csrf or csrf_pair(port)
    h = dict(xff(address) if address else {}, **(headers or {}))
    return http(port, "POST", "/accounts/login/", cookies={"csrftoken": cookie}, headers=h,
                form={"username": username, "password": password, "csrfmiddlewaretoken": token})


def login(port, username, password, address=None, headers=None):
    """djauth's login form → (sessionid, csrftoken cookie)."""
    r = post_login(port, username, password, address, headers=headers)
    assert r.status == 302, (username, r)
    return r.cookies["sessionid"], r.cookies["csrftoken"]


def classify(r: Resp):
    """What a login POST answer says: "checked" (the password was checked and refused: the
    form again with Django's error), "locked" (429, Retry-After, the throttle's form error)."""
    if r.status == 200 and INVALID_LOGIN in r.body and LOCKED_OUT not in r.body:
        return "checked"
    if (r.status == 429 and LOCKED_OUT in r.body and INVALID_LOGIN not in r.body
            and r.headers.get("retry-after") == str(COOLOFF) and "sessionid" not in r.cookies):
        return "locked"
    return f"unexpected {r.status} retry-after={r.headers.get('retry-after')} {r.body[:300]!r}"


def burst(jobs):
    """Run the (port, username, password, address) login POSTs all at once: every connection
    is opened first, then a barrier releases the requests together.  Returns the answers."""
    barrier = threading.Barrier(len(jobs))
    results = [None] * len(jobs)
    csrf = {}
    for port, *_ in jobs:
        if port not in csrf:
            csrf[port] = csrf_pair(port)

    def run(i, port, username, password, address):
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            barrier.wait(timeout=60)
            results[i] = _post_on(conn, port, username, password, address, csrf[port])
        except Exception as e:  # noqa: BLE001  (reported with the results)
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _post_on(conn, port, username, password, address, csrf):
    token, cookie = csrf
    return http(port, "POST", "/accounts/login/", cookies={"csrftoken": cookie},
                headers=xff(address) if address else None, conn=conn,
                form={"username": username, "password": password, "csrfmiddlewaretoken": token})


def tally(results):
    return collections.Counter(classify(r) if isinstance(r, Resp) else f"error {r!r}" for r in results)


# -- /metrics -------------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(port):
    """{(name, frozenset(labels)): value} of /metrics (Prometheus / OpenMetrics text)."""
    r = http(port, "GET", "/metrics")
    assert r.status == 200, r
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/openmetrics-text") or ctype.startswith("text/plain"), ctype
    out = {}
    for line in r.body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(sample, name, **labels):
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, ls), v in sample.items() if n == name and want <= ls)


# ----------------------------------------------------------------------------------------
# Sites: one database per backend, Django on it, the main djauth server
# ----------------------------------------------------------------------------------------

def db_connect(backend, d, autocommit=True):
    if backend == "postgres":
        import psycopg
        return psycopg.connect(host=d["HOST"], port=int(d["PORT"]), user=d["USER"], dbname=d["NAME"],
                               autocommit=autocommit, connect_timeout=10)
    import pymysql
    return pymysql.connect(host=d["HOST"], port=int(d["PORT"]), user=d["USER"], password=d["PASSWORD"],
                           database=d["NAME"], autocommit=autocommit)


def sql_runner(backend, django_db):
    """query(sql, params) -> rows, on a fresh autocommit connection (paramstyle %s everywhere)."""
    def run(query, params=()):
        if backend == "sqlite":
            conn = sqlite3.connect(django_db["NAME"], timeout=20, isolation_level=None)
            query = query.replace("%s", "?")
        else:
            conn = db_connect(backend, django_db)
        try:
            cur = conn.cursor()
            cur.execute(query, list(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            conn.close()
    return run


class Site:
    def __init__(self, backend, tmp: Path, django_db: dict, url: str):
        self.backend, self.tmp, self.django_db = backend, tmp, django_db
        self.sql = sql_runner(backend, django_db)
        self.secret = secrets.token_urlsafe(40)
        self.admin_token = secrets.token_urlsafe(24)
        # What every server of the site shares; the main server adds the hardening settings.
        self.common = dict(DATABASE_URL=url, DJAUTH_SECRET_KEY=self.secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
                           DJAUTH_PASSWORD_HASHERS=f"{MD5},{PBKDF2}", DJAUTH_SESSION_INDEX_CATCH_UP_INTERVAL="0",
                           DJAUTH_ADMIN_API_TOKEN=self.admin_token)
        self.hardened = dict(DJAUTH_LOGIN_FAILURE_LIMIT=str(LIMIT), DJAUTH_LOGIN_COOLOFF=str(COOLOFF),
                             DJAUTH_TRUSTED_PROXIES="127.0.0.1", DJAUTH_AUDIT_LOG_TABLE="true",
                             DJAUTH_EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")
        self.env = base_env(**self.common, **self.hardened)
        p = subprocess.run([str(djcompat.DJAUTH_BIN), "migrate"], env=self.env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        self.django = DjangoSide(tmp, self.secret, django_db)
        self.servers = []
        self.main = self.serve()
        self.port = self.main.port

    def serve(self, hardened=True, **settings):
        """Another `djauth serve` on this database: the common settings, the main server's
        hardening ones unless hardened=False, then `settings` (None removes one)."""
        merged = {**self.common, **(self.hardened if hardened else {}), **settings}
        s = Server(base_env(**merged), self.tmp, f"djauth-{len(self.servers) + 1}")
        self.servers.append(s)
        return s

    def djauth(self, *args, env=None, ok=True):
        p = subprocess.run([str(djcompat.DJAUTH_BIN), *args], env={**self.env, **(env or {})},
                           capture_output=True, text=True, timeout=60)
        assert "panicked" not in p.stderr, p.stderr
        if ok:
            assert p.returncode == 0, f"djauth {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def user(self, prefix="u", **kw):
        name = f"{prefix}_{secrets.token_hex(4)}"
        pw = "pw-" + secrets.token_hex(8)
        pk = self.django("create_user", username=name, password=pw, **kw)
        return name, pw, pk

    def audit_rows(self, **where):
        cond = " AND ".join(f"{k} = %s" for k in where) or "1 = 1"
        rows = self.sql(f"SELECT event, user_id, username, ip, detail FROM djauth_audit_log WHERE {cond} ORDER BY id",
                        list(where.values()))
        return [dict(event=e, user_id=u, username=n, ip=i, detail=json.loads(d)) for e, u, n, i, d in rows]

    def index_ip(self, session_key):
        rows = self.sql("SELECT ip FROM djauth_session_index WHERE session_key = %s", [session_key])
        assert len(rows) == 1, f"session {session_key} not indexed: {rows}"
        return rows[0][0]

    def close(self):
        problems = []
        for s in self.servers:  # SIGTERM all first: each takes ~0.3 s to wind down
            if s.proc.poll() is None:
                s.proc.terminate()
        for s in self.servers:
            s.stop()
            if "panicked" in s.stderr():
                problems.append(s.stderr()[-3000:])
        self.django.close()
        assert not problems, "djauth panicked:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def sites(request, tmp_path_factory):
    made = {}

    def get(backend):
        if backend not in made:
            tmp = tmp_path_factory.mktemp(f"hardening-{backend}")
            if backend == "sqlite":
                path = str(tmp / "db.sqlite3")
                django_db = {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 20}}
                url = f"sqlite://{path}"
            else:
                server = request.getfixturevalue("pg_server" if backend == "postgres" else "mariadb_server")
                name = "hard_" + secrets.token_hex(4)
                server.create_database(name)
                django_db, url = server.django_database(name), server.url_for(name)
            made[backend] = Site(backend, tmp, django_db, url)
        return made[backend]

    yield get
    errors = []
    for s in made.values():
        try:
            s.close()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def site(request, sites):
    return sites(request.param)


@pytest.fixture
def sqlite_site(sites):
    return sites("sqlite")


def wait_for(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------
# 1. The login throttle
# ----------------------------------------------------------------------------------------

def password_checks(port):
    return metric(metrics(port), "djauth_password_check_seconds_count")


def burst_verdict(what, counts, checks, n=200):
    """The throttle's promise is asserted at once: at most LIMIT of the attempts reached the
    hasher (by the answers and by djauth's own password-check count).  Whether every other
    answer was the 429 is returned as a message (None: it was) for the test to assert last,
    after the rest of its checks."""
    assert counts["checked"] <= LIMIT and checks <= LIMIT, (
        f"{what}: {checks} password checks (answers: {dict(counts)}) with LOGIN_FAILURE_LIMIT={LIMIT}")
    if counts == {"checked": LIMIT, "locked": n - LIMIT}:
        return None
    return (f"{what}: expected {LIMIT} refused-password forms and {n - LIMIT} 429s, got {dict(counts)} "
            f"({checks} password checks)")


def test_burst_on_one_username_gets_at_most_limit_password_checks(site):
    name, pw, _ = site.user("burst")
    checks = password_checks(site.port)
    # 200 wrong passwords at once, each from its own address: only the username's count limits.
    counts = tally(burst([(site.port, name, "wrong-" + pw, addr()) for _ in range(200)]))
    verdict = burst_verdict(f"{site.backend}: 200 concurrent wrong passwords for one username", counts,
                            password_checks(site.port) - checks)
    # Locked means locked: the right password, from yet another address, gets the same 429.
    r = post_login(site.port, name, pw, addr())
    assert classify(r) == "locked", r
    # `djauth unlock USERNAME` reopens it.
    p = site.djauth("unlock", name)
    assert p.stdout.strip() == f"Unlocked {name}.", p.stdout
    login(site.port, name, pw, addr())
    p = site.djauth("unlock", name)
    assert "had no failed login attempts recorded" in p.stdout, p.stdout
    assert verdict is None, verdict


def test_seventh_try_with_the_right_password_is_still_locked(site):
    name, pw, _ = site.user("seventh")
    answers = [classify(post_login(site.port, name, "nope", addr())) for _ in range(LIMIT + 1)]
    assert answers == ["checked"] * LIMIT + ["locked"], answers
    r = post_login(site.port, name, pw, addr())
    assert classify(r) == "locked", f"7th try, right password: {r!r}"
    assert "sessionid" not in r.cookies


def test_burst_from_one_address_with_spoofed_left_hops(site):
    """Different usernames from one client address: the address's count limits.  Each request
    puts a different spoofed entry left of the real one in X-Forwarded-For (TRUSTED_PROXIES=
    127.0.0.1: the rightmost untrusted hop is the client), so spoofing does not escape it."""
    client = addr()
    checks = password_checks(site.port)
    jobs = [(site.port, f"nobody_{secrets.token_hex(4)}", "x", f"{addr()}, {client}") for _ in range(200)]
    counts = tally(burst(jobs))
    verdict = burst_verdict(f"{site.backend}: 200 concurrent logins for different usernames from one address",
                            counts, password_checks(site.port) - checks)
    # The address is locked for everyone, right password included; other addresses are not.
    name, pw, _ = site.user("victim")
    assert classify(post_login(site.port, name, pw, client)) == "locked"
    assert classify(post_login(site.port, name, pw, f"{addr()}, {client}")) == "locked"
    p = site.djauth("unlock", "--ip", client)
    assert p.stdout.strip() == f"Unlocked {client}.", p.stdout
    login(site.port, name, pw, client)
    assert verdict is None, verdict


def test_success_before_the_limit_clears_the_count(site):
    name, pw, _ = site.user("clear")
    client = addr()
    answers = [classify(post_login(site.port, name, "nope", client)) for _ in range(LIMIT - 1)]
    assert answers == ["checked"] * (LIMIT - 1)
    login(site.port, name, pw, client)  # the LIMIT-th attempt succeeds and clears both counts
    answers = [classify(post_login(site.port, name, "nope", client)) for _ in range(LIMIT + 1)]
    assert answers == ["checked"] * LIMIT + ["locked"], answers


def test_two_servers_share_the_count(site):
    other = site.serve()
    name, pw, _ = site.user("shared")
    checks = password_checks(site.port) + password_checks(other.port)
    jobs = [(site.port if i % 2 else other.port, name, "nope", addr()) for i in range(200)]
    counts = tally(burst(jobs))
    verdict = burst_verdict(f"{site.backend}: 200 concurrent wrong passwords split over two djauth processes",
                            counts, password_checks(site.port) + password_checks(other.port) - checks)
    assert classify(post_login(other.port, name, pw, addr())) == "locked"
    assert classify(post_login(site.port, name, pw, addr())) == "locked"
    assert verdict is None, verdict


def test_default_settings_never_lock(sqlite_site):
    site = sqlite_site
    plain = site.serve(hardened=False)
    name, pw, _ = site.user("nolimit")
    counts = tally(burst([(plain.port, name, "nope", None) for _ in range(40)]))
    assert counts == {"checked": 40}, dict(counts)
    answers = [classify(post_login(plain.port, name, "nope")) for _ in range(5)]
    assert answers == ["checked"] * 5
    login(plain.port, name, pw)


# ----------------------------------------------------------------------------------------
# 2. Client addresses
# ----------------------------------------------------------------------------------------

def test_forwarded_for_is_ignored_without_trusted_proxies(sqlite_site):
    site = sqlite_site
    s = site.serve(hardened=False, DJAUTH_AUDIT_LOG_TABLE="true")
    name, pw, pk = site.user("direct")
    key, _ = login(s.port, name, pw, headers=xff("198.51.100.23"))
    assert site.index_ip(key) == "127.0.0.1"
    rows = wait_for("the login's audit row", lambda: site.audit_rows(event="login", user_id=pk))
    assert [r["ip"] for r in rows] == ["127.0.0.1"]


def test_rightmost_untrusted_hop_is_the_client(sqlite_site):
    site = sqlite_site
    s = site.serve(DJAUTH_TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8")
    name, pw, pk = site.user("proxied")
    cases = [("198.51.100.23", "198.51.100.23"),
             ("203.0.113.66, 198.51.100.24", "198.51.100.24"),            # spoofed leftmost entry
             ("203.0.113.66, 198.51.100.25, 10.1.2.3", "198.51.100.25"),  # a trusted proxy hop
             ("10.9.9.9, 10.1.2.3", "10.9.9.9")]                          # all trusted: the leftmost
    for header, expected in cases:
        key, _ = login(s.port, name, pw, headers=xff(header))
        assert site.index_ip(key) == expected, header
    rows = wait_for("4 audit rows", lambda: (r := site.audit_rows(event="login", user_id=pk)) and len(r) == 4 and r)
    assert [r["ip"] for r in rows] == [e for _, e in cases]


def test_session_index_ip_truncated(sqlite_site):
    site = sqlite_site
    s = site.serve(DJAUTH_SESSION_INDEX_IP="truncated")
    name, pw, _ = site.user("trunc")
    key, _ = login(s.port, name, pw, "198.51.100.23")
    assert site.index_ip(key) == "198.51.100.0"
    key, _ = login(s.port, name, pw, "2001:db8:1:2:3::9")
    assert site.index_ip(key) == "2001:db8:1::"


def test_session_index_ip_hashed(sqlite_site):
    site = sqlite_site
    s = site.serve(DJAUTH_SESSION_INDEX_IP="hashed")
    other_key = site.serve(DJAUTH_SESSION_INDEX_IP="hashed", DJAUTH_SECRET_KEY=secrets.token_urlsafe(40))
    name, pw, _ = site.user("hashed")
    a1 = site.index_ip(login(s.port, name, pw, "198.51.100.23")[0])
    a2 = site.index_ip(login(s.port, name, pw, "198.51.100.23")[0])
    b = site.index_ip(login(s.port, name, pw, "198.51.100.24")[0])
    c = site.index_ip(login(other_key.port, name, pw, "198.51.100.23")[0])
    assert re.fullmatch(r"[0-9a-f]{40}", a1), a1
    assert a1 == a2, "same address, same key: same value"
    assert b != a1, "another address: another value"
    assert re.fullmatch(r"[0-9a-f]{40}", c) and c != a1, "another SECRET_KEY: another value"


# ----------------------------------------------------------------------------------------
# 3. Audit
# ----------------------------------------------------------------------------------------

RESET_LINK = re.compile(r"http://127\.0\.0\.1:\d+(/accounts/reset/[^/\s]+/[^/\s]+/)")


def test_audit_rows_for_every_event(site):
    port = site.port
    name, pw, pk = site.user("audited")
    client = addr()
    # login_failed, login
    assert classify(post_login(port, name, "wrong", client)) == "checked"
    django_key = site.django("login", username=name, password=pw)
    key, csrf_cookie = login(port, name, pw, client)
    # password_change (ends the Django session: session_revoked via password_change)
    cookies = {"sessionid": key, "csrftoken": csrf_cookie}
    r = http(port, "GET", "/accounts/password_change/", cookies=cookies, headers=xff(client))
    assert r.status == 200, r
    token = CSRF_INPUT.search(r.body).group(1)
    pw2 = "Zx9-" + secrets.token_hex(8)
    r = http(port, "POST", "/accounts/password_change/", cookies=cookies, headers=xff(client),
             form={"old_password": pw, "new_password1": pw2, "new_password2": pw2, "csrfmiddlewaretoken": token})
    assert r.status == 302, r
    key = r.cookies.get("sessionid", key)
    assert django_key not in {row[0] for row in site.sql("SELECT session_key FROM django_session")}
    # logout
    cookies = {"sessionid": key, "csrftoken": csrf_cookie}
    token, _ = csrf_pair(port, cookies)
    r = http(port, "POST", "/accounts/logout/", cookies=cookies, headers=xff(client), form={"csrfmiddlewaretoken": token})
    assert r.status in (200, 302), r
    # password_reset_request, password_reset_complete (console email backend: djauth's stdout)
    token, csrf_cookie = csrf_pair(port)
    r = http(port, "POST", "/accounts/password_reset/", cookies={"csrftoken": csrf_cookie}, headers=xff(client),
             form={"email": f"{name}@example.com", "csrfmiddlewaretoken": token})
    assert r.status == 302, r
    links = wait_for("the reset email on stdout", lambda: reset_links(site.main.stdout(), f"{name}@example.com"))
    r = http(port, "GET", links[-1], headers=xff(client))
    assert r.status == 302 and r.headers["location"].endswith("/set-password/"), r
    set_password, reset_session = r.headers["location"], r.cookies["sessionid"]
    r = http(port, "GET", set_password, cookies={"sessionid": reset_session}, headers=xff(client))
    assert r.status == 200, r
    token = CSRF_INPUT.search(r.body).group(1)
    pw3 = "Zx9-" + secrets.token_hex(8)
    r = http(port, "POST", set_password, headers=xff(client),
             cookies={"sessionid": reset_session, "csrftoken": r.cookies["csrftoken"]},
             form={"new_password1": pw3, "new_password2": pw3, "csrfmiddlewaretoken": token})
    assert r.status == 302 and r.headers["location"] == "/accounts/reset/done/", r
    # session_revoked: `djauth logout-user` and the admin API
    login(port, name, pw3, client)
    p = site.djauth("logout-user", name)
    assert p.stdout.startswith("1 session(s) ended"), p.stdout
    login(port, name, pw3, client)
    r = http(port, "DELETE", f"/api/v1/admin/users/{pk}/sessions", headers={
        "Authorization": f"Bearer {site.admin_token}", **xff(client)})
    assert r.status == 200 and r.json() == {"ended": 1}, r
    # lockout (another username, so the user above is not locked)
    locked_name = f"locked_{secrets.token_hex(4)}"
    answers = [classify(post_login(port, locked_name, "x", addr())) for _ in range(LIMIT + 1)]
    assert answers[-1] == "locked"

    want = {"login", "login_failed", "logout", "password_change", "password_reset_request",
            "password_reset_complete", "session_revoked", "lockout"}
    want_vias = {"password_change", "logout-user", "admin_api"}

    def ours():
        return [r for r in site.audit_rows()
                if r["user_id"] == pk or r["username"] in (name, locked_name)
                or (r["event"] == "password_reset_request" and r["detail"].get("email") == f"{name}@example.com")]

    def complete():
        got = ours()
        vias = {r["detail"].get("via") for r in got if r["event"] == "session_revoked"}
        return got if want <= {r["event"] for r in got} and want_vias <= vias else None

    try:
        got = wait_for("every audit event", complete)
    except AssertionError:
        raise AssertionError(f"{site.backend}: audit rows of this test so far: {ours()}") from None
    by = collections.defaultdict(list)
    for r in got:
        by[r["event"]].append(r)
    assert any(r["username"] == name and r["user_id"] is None and r["ip"] == client for r in by["login_failed"]), by["login_failed"]
    assert any(r["user_id"] == pk and r["username"] == name and r["ip"] == client for r in by["login"]), by["login"]
    assert any(r["user_id"] == pk and r["ip"] == client for r in by["password_change"]), by["password_change"]
    assert any(r["user_id"] == pk and r["ip"] == client for r in by["logout"]), by["logout"]
    assert any(r["ip"] == client and r["detail"].get("email") == f"{name}@example.com" for r in by["password_reset_request"]), by["password_reset_request"]
    assert any(r["user_id"] == pk for r in by["password_reset_complete"]), by["password_reset_complete"]
    vias = collections.Counter(r["detail"].get("via") for r in by["session_revoked"] if r["user_id"] == pk)
    assert vias["password_change"] >= 1 and vias["logout-user"] == 1 and vias["admin_api"] == 1, by["session_revoked"]
    assert [r["detail"].get("ended") for r in by["session_revoked"] if r["detail"].get("via") == "admin_api"] == [1]
    assert any(r["username"] == locked_name for r in by["lockout"]), by["lockout"]


def reset_links(console_output, to):
    """The reset paths in the console email backend's messages to `to` (decoded: the body's
    transfer encoding is the backend's business)."""
    import email
    links = []
    for text in console_output.split("\n" + "-" * 79 + "\n"):
        if not text.strip():
            continue
        msg = email.message_from_string(text.lstrip("\n"))
        if msg["To"] == to:
            links += RESET_LINK.findall(msg.get_payload(decode=True).decode("utf-8"))
    return links


def test_audit_log_is_append_only(site):
    name, pw, pk = site.user("appendonly")
    login(site.port, name, pw, addr())
    wait_for("a login row", lambda: site.audit_rows(event="login", user_id=pk))
    before = site.sql("SELECT COUNT(*) FROM djauth_audit_log")[0][0]
    for stmt in ("UPDATE djauth_audit_log SET event = 'nothing', username = 'x'",
                 "DELETE FROM djauth_audit_log",
                 f"DELETE FROM djauth_audit_log WHERE user_id = '{pk}'"):
        with pytest.raises(Exception) as e:
            site.sql(stmt)
        assert "append-only" in str(e.value), (stmt, e.value)
    assert site.sql("SELECT COUNT(*) FROM djauth_audit_log")[0][0] >= before, "no row deleted"
    assert [r["event"] for r in site.audit_rows(user_id=pk)] == ["login"]


class Hook:
    """A tiny HTTP server for AUDIT_WEBHOOK_URL.  `plan` lists the status of each successive
    POST ("hang" never answers); after the plan, 200."""

    def __init__(self, plan=()):
        self.plan = list(plan)
        self.requests = []  # (content-type, body) of every POST, answered or not
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    hook.requests.append((self.headers.get("Content-Type"), body))
                    what = hook.plan.pop(0) if hook.plan else 200
                if what == "hang":
                    hook.release.wait(60)
                    return
                self.send_response(what)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/audit-hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def events(self):
        return [json.loads(b) for _, b in list(self.requests)]

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook_factory():
    made = []

    def make(plan=()):
        h = Hook(plan)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_webhook_gets_the_events(sqlite_site, hook_factory):
    site = sqlite_site
    hook = hook_factory()
    s = site.serve(DJAUTH_AUDIT_WEBHOOK_URL=hook.url)
    name, pw, pk = site.user("hooked")
    client = addr()
    assert classify(post_login(s.port, name, "wrong", client)) == "checked"
    login(s.port, name, pw, client)
    events = wait_for("two webhook events", lambda: len(hook.requests) >= 2 and hook.events())
    assert all(ct == "application/json" for ct, _ in hook.requests), hook.requests
    for e in events:
        assert set(e) == {"event", "at", "user_id", "username", "ip", "detail"}, e
        at = datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 60, e
    failed, ok = events[:2]
    assert (failed["event"], failed["user_id"], failed["username"], failed["ip"]) == ("login_failed", None, name, client)
    assert (ok["event"], ok["user_id"], ok["username"], ok["ip"]) == ("login", pk, name, client)
    assert isinstance(ok["detail"], dict)


def test_webhook_retries_after_errors(sqlite_site, hook_factory):
    site = sqlite_site
    hook = hook_factory(plan=[500, 500])
    s = site.serve(DJAUTH_AUDIT_WEBHOOK_URL=hook.url)
    name, pw, pk = site.user("retried")
    login(s.port, name, pw, addr())
    wait_for("3 POSTs (500, 500, 200)", lambda: len(hook.requests) >= 3)
    time.sleep(0.5)
    bodies = [b for _, b in hook.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1, bodies
    assert json.loads(bodies[0])["event"] == "login" and json.loads(bodies[0])["user_id"] == pk


def test_hanging_webhook_does_not_slow_logins(sqlite_site, hook_factory):
    site = sqlite_site
    hook = hook_factory(plan=["hang"] * 100)
    s = site.serve(DJAUTH_AUDIT_WEBHOOK_URL=hook.url)
    name, pw, _ = site.user("hung")
    login(s.port, name, pw, addr())
    wait_for("the webhook to be called (and hang)", lambda: hook.requests)
    for _ in range(5):
        r = post_login(s.port, name, pw, addr())
        assert r.status == 302, r
        assert r.elapsed < 1.0, f"a login took {r.elapsed:.2f} s while the webhook hangs"
        r = post_login(s.port, name, "wrong", addr())
        assert classify(r) == "checked" and r.elapsed < 1.0, (r, r.elapsed)


# ----------------------------------------------------------------------------------------
# 4. /healthz, /readyz, /metrics
# ----------------------------------------------------------------------------------------

def test_healthz_and_readyz_on_a_good_setup(site):
    r = http(site.port, "GET", "/healthz")
    assert r.status == 200 and r.body.strip() == "ok", r
    r = http(site.port, "GET", "/readyz")
    assert r.status == 200, r
    body = r.json()
    assert body["ready"] is True and body["database"] == "ok" and body["pending_migrations"] == 0, body


def test_readyz_refuses_a_secret_key_django_does_not_use(sqlite_site):
    site = sqlite_site
    site.django("sessions", n=10)
    r = http(site.port, "GET", "/readyz")
    # (Other tests leave a few rows signed with other keys; the 10 newest are Django's.)
    assert r.status == 200 and r.json()["ready"] is True and r.json()["sessions_verified"] >= 10, r
    wrong = site.serve(DJAUTH_SECRET_KEY=secrets.token_urlsafe(40))
    r = http(wrong.port, "GET", "/readyz")
    assert r.status == 503, r
    body = r.json()
    assert body["ready"] is False and body["sessions_sampled"] >= 10 and body["sessions_verified"] == 0, body
    assert r.headers.get("retry-after"), r.headers
    # The key as a fallback is enough.
    rotated = site.serve(DJAUTH_SECRET_KEY=secrets.token_urlsafe(40), DJAUTH_SECRET_KEY_FALLBACKS=site.secret)
    assert http(rotated.port, "GET", "/readyz").status == 200


def test_metrics(sqlite_site):
    site = sqlite_site
    s = site.serve(DJAUTH_LOGIN_FAILURE_LIMIT="2")
    name, pw, pk = site.user("metered")
    client = addr()
    login(s.port, name, pw, client)
    assert classify(post_login(s.port, name, "wrong", client)) == "checked"
    assert classify(post_login(s.port, name, "wrong", client)) == "checked"
    r = post_login(s.port, name, "wrong", client)
    assert r.status == 429 and LOCKED_OUT in r.body, r
    m = metrics(s.port)
    assert metric(m, "djauth_logins_total", result="ok") == 1
    assert metric(m, "djauth_logins_total", result="failed") == 2
    assert metric(m, "djauth_logins_total", result="locked") == 1
    login_route = "/accounts/login/"
    assert metric(m, "djauth_http_requests_total", route=login_route, method="POST", status=302) == 1
    assert metric(m, "djauth_http_requests_total", route=login_route, method="POST", status=200) == 2
    assert metric(m, "djauth_http_requests_total", route=login_route, method="POST", status=429) == 1
    assert metric(m, "djauth_http_requests_total", route=login_route, method="GET", status=200) == 4
    assert metric(m, "djauth_http_requests_total", route="/metrics", method="GET", status=200) == 0, \
        "a request is counted after its answer"
    assert metric(metrics(s.port), "djauth_http_requests_total", route="/metrics", method="GET", status=200) == 1
    # Revocations: two sessions of another user ended through the admin API.
    other, opw, opk = site.user("revoked")
    login(s.port, other, opw, addr())
    login(s.port, other, opw, addr())
    before = metric(metrics(s.port), "djauth_sessions_revoked_total")
    r = http(s.port, "DELETE", f"/api/v1/admin/users/{opk}/sessions", headers={"Authorization": f"Bearer {site.admin_token}"})
    assert r.status == 200 and r.json() == {"ended": 2}, r
    assert metric(metrics(s.port), "djauth_sessions_revoked_total") == before + 2
    # A tampered signed session cookie.
    signed = site.serve(DJAUTH_SESSION_ENGINE=ENGINES["signed_cookies"])
    third, tpw, _ = site.user("signed")
    cookie, _ = login(signed.port, third, tpw, addr())
    bad = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    assert metric(metrics(signed.port), "djauth_session_decode_failures_total", cause="bad_signature") == 0
    r = http(signed.port, "GET", "/accounts/password_change/", cookies={"sessionid": bad})
    assert r.status == 302 and r.headers["location"].startswith("/accounts/login/"), r
    assert metric(metrics(signed.port), "djauth_session_decode_failures_total", cause="bad_signature") == 1
    r = http(signed.port, "GET", "/accounts/password_change/", cookies={"sessionid": cookie})
    assert r.status == 200, "the untampered cookie still works"


# ----------------------------------------------------------------------------------------
# 5. Faults
# ----------------------------------------------------------------------------------------

@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL server of the test's own (it is stopped and restarted), with a migrated
    database, a Django side and a djauth server on it."""
    if not dbservers.postgres_available():
        msg = f"PostgreSQL not installed: apt-get install -y {dbservers.PG_APT_PACKAGES}"
        if os.environ.get("CI") or os.environ.get("DJAUTH_REQUIRE_DBSERVERS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with dbservers.postgres_server() as pg:
        pg.create_database("outage")
        site = Site("postgres", tmp_path, pg.django_database("outage"), pg.url_for("outage"))
        site.pg = pg
        try:
            yield site
        finally:
            site.close()


def test_database_outage_gives_503_then_recovers(own_postgres):
    site, pg = own_postgres, own_postgres.pg
    name, pw, _ = site.user("outage")
    key, _ = login(site.port, name, pw, addr())
    assert http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": key}).status == 200
    assert http(site.port, "GET", "/readyz").status == 200
    csrf = csrf_pair(site.port)
    pg.halt()
    try:
        # All at once (each may wait out the pool's checkout timeout): logged-in pages and
        # APIs, a login, /readyz; /healthz answers at once.
        probes = {
            "password_change": lambda: http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": key}),
            "me": lambda: http(site.port, "GET", "/api/v1/me", cookies={"sessionid": key}),
            "login": lambda: post_login(site.port, name, pw, addr(), csrf=csrf),
            "readyz": lambda: http(site.port, "GET", "/readyz"),
        }
        answers = {}

        def run(what, fn):
            try:
                answers[what] = fn()
            except Exception as e:  # noqa: BLE001
                answers[what] = e

        threads = [threading.Thread(target=run, args=item) for item in probes.items()]
        for t in threads:
            t.start()
        r = http(site.port, "GET", "/healthz")
        assert r.status == 200 and r.elapsed < 1, f"/healthz with the database down: {r!r} after {r.elapsed:.1f} s"
        for t in threads:
            t.join(timeout=60)
        for what, r in answers.items():
            assert isinstance(r, Resp), f"{what} with the database down: {r!r}"
            assert r.status == 503 and r.headers.get("retry-after"), f"{what} with the database down: {r!r}"
            assert r.elapsed < (8 if what == "readyz" else 10), f"{what}: 503 after {r.elapsed:.1f} s"
        assert answers["readyz"].json()["ready"] is False, answers["readyz"]
    finally:
        pg.restart()
    # Back without restarting djauth.
    wait_for("a logged-in request to succeed again",
             lambda: http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": key}).status == 200,
             timeout=15)
    assert http(site.port, "GET", "/readyz").status == 200
    login(site.port, name, pw, addr())
    site.main.assert_no_panic()


def test_sigterm_lets_an_in_flight_login_finish(sqlite_site):
    import base64
    import hashlib
    site = sqlite_site
    iterations = 4_000_000  # about 1 s in djauth (1.4 s here in Python, once)
    salt = secrets.token_hex(8)
    pw = "slow-" + secrets.token_hex(4)
    digest = base64.b64encode(hashlib.pbkdf2_hmac("sha256", pw.encode(), salt.encode(), iterations)).decode()
    name, _, _ = site.user("slow", encoded=f"pbkdf2_sha256${iterations}${salt}${digest}")
    s = site.serve()
    csrf = csrf_pair(s.port)
    result = {}

    def slow_login():
        try:
            result["resp"] = post_login(s.port, name, pw, addr(), csrf=csrf)
        except Exception as e:  # noqa: BLE001
            result["error"] = e
        result["done"] = time.monotonic()

    t = threading.Thread(target=slow_login)
    t.start()
    time.sleep(0.3)  # the request is in the hasher by now
    assert "done" not in result, "the slow login finished before SIGTERM: raise the work factor"
    sent = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=30)
    assert "error" not in result, f"the in-flight login was cut off by SIGTERM: {result['error']!r}"
    r = result["resp"]
    assert r.status == 302 and r.cookies.get("sessionid"), r
    assert result["done"] > sent
    assert s.proc.wait(timeout=30) == 0, s.stderr()
    key = r.cookies["sessionid"]
    assert site.sql("SELECT COUNT(*) FROM django_session WHERE session_key = %s", [key]) == [(1,)], \
        "the session the drained login made is saved"
    s.assert_no_panic()


def raw_request(port, head: bytes, body: bytes = b"", timeout=20):
    """Send raw bytes; the status line of the answer (a reset before any answer: None)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(head)
            if body:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        if not data:
            return None
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        return int(status.split()[1])
    finally:
        sock.close()


def test_oversized_body_and_headers(sqlite_site):
    site = sqlite_site
    port = site.port
    token, cookie = csrf_pair(port)
    base = f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: csrftoken={cookie}\r\n" \
           f"X-Forwarded-For: {addr()}\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"

    def form_of(size):
        prefix = f"csrfmiddlewaretoken={token}&username=u&password="
        return (prefix + "p" * (size - len(prefix))).encode()

    # Exactly the limit is read (the form then fails like any wrong password) ...
    body = form_of(MAX_BODY)
    status = raw_request(port, (base + f"Content-Length: {len(body)}\r\n\r\n").encode(), body)
    assert status == 200, f"a body of exactly {MAX_BODY} bytes: {status}"
    # ... one byte more is 413, announced or chunked.
    body = form_of(MAX_BODY + 1)
    status = raw_request(port, (base + f"Content-Length: {len(body)}\r\n\r\n").encode(), body)
    assert status == 413, f"a body of {MAX_BODY + 1} bytes: {status}"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536]) for i in range(0, len(body), 65536))
    status = raw_request(port, (base + "Transfer-Encoding: chunked\r\n\r\n").encode(), chunked + b"0\r\n\r\n")
    assert status == 413, f"a chunked body of {MAX_BODY + 1} bytes: {status}"
    # Huge headers: 431 or 400, never a 5xx or a dropped connection.  (actix-http's limits:
    # a 128 KiB request head, 96 headers; a 64 KiB header is still served.)
    get = f"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    for what, extra in [("one 256 KiB header", "X-Big: " + "a" * (256 << 10) + "\r\n"),
                        ("a 1 MiB cookie", "Cookie: sessionid=" + "b" * (1 << 20) + "\r\n"),
                        ("a 16 MiB header", "X-Big: " + "c" * (16 << 20) + "\r\n"),
                        ("500 headers", "".join(f"X-H{i}: v\r\n" for i in range(500))),
                        ("a 100 KiB URL", None)]:
        head = (get + extra + "\r\n") if extra else get.replace("/accounts/login/", "/accounts/login/?" + "q" * (100 << 10)) + "\r\n"
        status = raw_request(port, head.encode())
        assert status in (400, 431), f"{what}: {status}"
    status = raw_request(port, (get + "X-Big: " + "a" * (64 << 10) + "\r\n\r\n").encode())
    assert status is not None and status < 500, f"one 64 KiB header: {status}"
    # Still serving.
    assert http(port, "GET", "/healthz").status == 200
    name, pw, _ = site.user("after")
    login(port, name, pw, addr())
    site.main.assert_no_panic()

"""The user-to-session index (issue 5) end to end: `djauth serve` and a live Django on one
database and one SECRET_KEY, on SQLite, PostgreSQL and MariaDB, with the db and the
signed_cookies session engines.

Per site (module-scoped: one database, one `djauth serve`, one Django process for all the
tests of that site):

* Django runs WITHOUT the djauth_django app: the index must stay complete through the
  triggers `djauth migrate` installs alone.  On the signed_cookies engine Django gets only
  `djauth_django.middleware.RevokedSessionMiddleware` (a cookie has no row to delete); when
  `import djauth_django` fails in the venv, the Django-side checks of revoked signed cookies
  are skipped (the test is reported skipped, with the reason, after every other check ran).
* Sessions are made by both sides' login views (Django's LoginView, djauth's login form) and
  checked on both sides: Django's view says who is logged in, djauth's me API answers 200/401
  and its password change page 200 / 302 to the login page.
* Rows are read straight from the database (sqlite3 / psycopg / pymysql), never through djauth.

The background catch-up of `djauth serve` is off (SESSION_INDEX_CATCH_UP_INTERVAL=0) so that
the index only moves when a test makes it move; revocations catch up by themselves (the race
test runs `djauth sessions catch-up` in a loop instead).  MariaDB and PostgreSQL come from
dbfixtures' pg_server / mariadb_server (skipped when not installed, failed under CI).
"""

import hashlib
import json
import math
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.client import HTTPConnection
from pathlib import Path

import pytest

import djcompat
from dbfixtures import mariadb_server, pg_server  # noqa: F401  (fixtures)
from djcompat import INPROCESS

# djauth's own behaviour against Django's session format, which is the same in every
# supported version (test_web and test_sessions cross it per version): one version suffices.
pytestmark = [pytest.mark.skipif(INPROCESS, reason="needs the djauth binary (serve, migrate); reference_djauth.py has neither"), pytest.mark.one_version]

DJANGO_VERSION = os.environ.get("DJAUTH_DJANGO_VERSION", "5.2")
MD5 = "django.contrib.auth.hashers.MD5PasswordHasher"
ENGINES = {"db": "django.contrib.sessions.backends.db",
           "signed_cookies": "django.contrib.sessions.backends.signed_cookies"}
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/126.0.0.0 Safari/537.36")

# ----------------------------------------------------------------------------------------
# The Django side: one process per site, JSON lines in, JSON lines out.
# ----------------------------------------------------------------------------------------
DJANGO_SIDE = r'''
import importlib.util, json, sys, threading, time, traceback
cfg = json.loads(sys.argv[1])
if "mysql" in cfg["db"]["ENGINE"]:
    import pymysql
    pymysql.install_as_MySQLdb()
import django
from django.conf import settings

SIGNED = cfg["engine"].endswith("signed_cookies")
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware"]
REVOKED = "djauth_django.middleware.RevokedSessionMiddleware"
problem = None
if SIGNED:
    if importlib.util.find_spec("djauth_django") is None:
        problem = "import djauth_django fails in this venv (ModuleNotFoundError)"
    else:
        MIDDLEWARE.append(REVOKED)
settings.configure(
    SECRET_KEY=cfg["secret"], USE_TZ=True, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    # NOT djauth_django: the triggers alone must keep the index complete.
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
    DATABASES={"default": cfg["db"]},
    SESSION_ENGINE=cfg["engine"],
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    MIDDLEWARE=MIDDLEWARE,
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {
        "loaders": [("django.template.loaders.locmem.Loader", {"registration/login.html": "{{ form.errors }}"})]}}],
)
django.setup()
if SIGNED and problem is None:
    try:
        import djauth_django.middleware  # noqa: F401
    except Exception as e:  # being written elsewhere: treat any failure as "not importable"
        problem = f"import djauth_django.middleware fails in this venv: {e!r}"
        settings.MIDDLEWARE = MIDDLEWARE[:2]

from django.contrib.auth import get_user_model
from django.db import connections
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path

urlpatterns = [path("who", lambda r: HttpResponse(r.user.get_username() or "-")),
               path("accounts/", include("django.contrib.auth.urls"))]
COOKIE = settings.SESSION_COOKIE_NAME
User = get_user_model()


def op_create_user(username, password, staff=False, superuser=False, perms=()):
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    u = User.objects.create_user(username, f"{username}@example.com", password, is_staff=staff, is_superuser=superuser)
    for p in perms:
        app, codename = p.split(".")
        ct, _ = ContentType.objects.get_or_create(app_label=app, model=codename.split("_", 1)[1])
        perm, _ = Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": codename})
        u.user_permissions.add(perm)
    return str(u.pk)


def _login(username, password, ua):
    c = Client(HTTP_USER_AGENT=ua or "")
    r = c.post("/accounts/login/", {"username": username, "password": password})
    if r.status_code != 302:
        raise AssertionError(f"Django login of {username}: {r.status_code} {r.content[:300]!r}")
    return c.cookies[COOKIE].value


def op_login(username, password, ua=None):
    return _login(username, password, ua)


def op_who(cookies):
    out = []
    for value in cookies:
        c = Client()
        c.cookies[COOKIE] = value
        out.append(c.get("/who").content.decode())
    return out


def op_blob(username, extra=None):
    """session_data of a logged-in db session of the user, as Django's login() would store."""
    from django.contrib.sessions.backends.db import SessionStore
    u = User.objects.get(username=username)
    return SessionStore().encode({"_auth_user_id": str(u.pk),
                                  "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                                  "_auth_user_hash": u.get_session_auth_hash(), **(extra or {})})


def op_decoded():
    """{session_key: _auth_user_id} of every django_session row Django decodes as logged in."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    out = {}
    for s in Session.objects.all():
        uid = SessionStore().decode(s.session_data).get("_auth_user_id")
        if uid is not None:
            out[s.session_key] = str(uid)
    return out


RACE = {}


def op_race_start(username, password, threads):
    """Log in on `threads` threads over and over until op_race_stop."""
    stop, logins, errors, lock = threading.Event(), [], [], threading.Lock()

    def run():
        try:
            while not stop.is_set():
                started = time.time()
                try:
                    value = _login(username, password, "race")
                except Exception as e:
                    with lock:
                        errors.append(repr(e)[:300])
                    continue
                done = time.time()
                with lock:
                    logins.append([value, started, done])
        finally:
            connections.close_all()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    RACE.update(stop=stop, logins=logins, errors=errors, lock=lock, threads=ts)
    for t in ts:
        t.start()


def op_race_poll():
    with RACE["lock"]:
        return {"logins": list(RACE["logins"]), "errors": list(RACE["errors"])}


def op_race_stop():
    RACE["stop"].set()
    for t in RACE["threads"]:
        t.join()
    return op_race_poll()


GREETING = {"ok": True, "result": {"revoking_middleware_problem": problem}}
''' + djcompat.JSON_LINES_SERVE


class DjangoSide(djcompat.JsonLinesChild):
    def __init__(self, tmp: Path, cfg: dict):
        self.tmp = tmp
        script = tmp / "django_side_index.py"
        script.write_text(DJANGO_SIDE)
        super().__init__(script, cfg, tmp)
        self.revoking_problem = self.greeting["result"]["revoking_middleware_problem"]


# ----------------------------------------------------------------------------------------
# djauth: servers, CLI, HTTP
# ----------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`djauth serve` on a free port; stderr goes to a file (a pipe nobody reads could fill)."""

    def __init__(self, env, log: Path):
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen([djcompat.DJAUTH_BIN, "serve", "--bind", f"127.0.0.1:{self.port}"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        deadline = time.time() + 15
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        pytest.fail("djauth serve did not start: " + log.read_text(errors="replace"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.log.read_text(errors="replace")


class Resp:
    def __init__(self, status, headers, body, cookies):
        self.status, self.headers, self.body, self.cookies = status, headers, body, cookies

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), (self.status, self.headers, self.body)
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers.get('location', '')} {self.body[:200]!r}>"


def http(port, method, path, cookies=None, form=None, headers=None, ua=None):
    conn = HTTPConnection("127.0.0.1", port, timeout=20)
    h = {"Host": f"127.0.0.1:{port}"}
    if ua:
        h["User-Agent"] = ua
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items() if v is not None)
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    set_cookies = {}
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            set_cookies[name] = rest.split(";")[0]
    return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data, set_cookies)


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"')


def public_id(session_key):
    """djauth's public session id: the first 10 bytes of SHA-256(key), in hex."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:20]


class Site:
    def __init__(self, name, backend, engine, env, tmp: Path, sql, django_db, django: DjangoSide, admin_token):
        self.name, self.backend, self.engine, self.django_db = name, backend, engine, django_db
        self.env, self.tmp, self.sql, self.django, self.admin_token = env, tmp, sql, django, admin_token
        self.server = Server(env, tmp / "djauth.stderr")
        self.port = self.server.port
        self.others = []
        self.unchecked = []  # Django-side checks that could not be made (no revoking middleware)

    @property
    def signed(self):
        return self.engine == "signed_cookies"

    def start_another(self, **extra):
        s = Server({**self.env, **extra}, self.tmp / f"djauth-{len(self.others) + 2}.stderr")
        self.others.append(s)
        return s

    def close(self):
        for s in self.others:
            s.stop()
        log = self.server.stop()
        self.django.close()
        assert "panicked" not in log, log

    # -- djauth CLI ---------------------------------------------------------------------
    def djauth(self, *args, ok=True):
        p = subprocess.run([djcompat.DJAUTH_BIN, *args], env=self.env, capture_output=True, text=True, timeout=60)
        if ok:
            assert p.returncode == 0, f"djauth {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    # -- djauth HTTP ----------------------------------------------------------------------
    def get(self, path, key=None, port=None, **kw):
        return http(port or self.port, "GET", path, cookies={"sessionid": key} if key else None, **kw)

    def csrf_cookie(self):
        r = http(self.port, "GET", "/accounts/login/")
        assert r.status == 200, r
        return r.cookies["csrftoken"]

    def login(self, username, password, ua=None):
        """djauth's login form: (session cookie, csrftoken cookie)."""
        r = http(self.port, "GET", "/accounts/login/", ua=ua)
        assert r.status == 200, r
        token, csrf = CSRF_INPUT.search(r.body).group(1), r.cookies["csrftoken"]
        r = http(self.port, "POST", "/accounts/login/", cookies={"csrftoken": csrf}, ua=ua,
                 form={"username": username, "password": password, "csrfmiddlewaretoken": token})
        assert r.status == 302, (username, r)
        return r.cookies["sessionid"], r.cookies["csrftoken"]

    def djauth_state(self, key, port=None):
        """'alive' or 'dead' as djauth sees the session, by two views that must agree."""
        me = self.get("/api/v1/me/sessions", key, port=port)
        page = self.get("/accounts/password_change/", key, port=port)
        if me.status == 200 and page.status == 200:
            return "alive"
        if me.status == 401 and page.status == 302 and page.headers["location"].startswith("/accounts/login/?next="):
            assert me.json() == {"error": "not logged in"}, me
            return "dead"
        raise AssertionError(f"djauth answers disagree or are unexpected: me={me!r} page={page!r}")

    # -- both sides -----------------------------------------------------------------------
    def assert_dead(self, keys, what, django_always=False):
        keys = list(keys)
        states = {k: self.djauth_state(k) for k in keys}
        assert all(s == "dead" for s in states.values()), f"{what}: djauth still accepts {[k for k, s in states.items() if s != 'dead']}"
        if self.signed and self.django.revoking_problem and not django_always:
            self.unchecked.append(f"{what} ({len(keys)} session(s))")
            return
        seen = self.django("who", cookies=keys)
        assert seen == ["-"] * len(keys), f"{what}: Django still sees {seen}"

    def assert_alive(self, keys, username, what):
        keys = list(keys)
        states = {k: self.djauth_state(k) for k in keys}
        assert all(s == "alive" for s in states.values()), f"{what}: djauth refuses {[k for k, s in states.items() if s != 'alive']}"
        seen = self.django("who", cookies=keys)
        assert seen == [username] * len(keys), f"{what}: Django sees {seen}"

    def finish(self):
        """Call last in a test: reports Django-side checks that could not be made as a skip."""
        if self.unchecked:
            done, self.unchecked = self.unchecked, []
            pytest.skip(f"every djauth-side check passed; Django-side checks of revoked signed cookies skipped "
                        f"({self.django.revoking_problem}; needs {DJANGO_VERSION} venv with django-app installed): "
                        + "; ".join(done))

    # -- rows -------------------------------------------------------------------------------
    def session_rows(self, keys):
        keys = list(keys)
        if not keys:
            return set()
        marks = ", ".join(["%s"] * len(keys))
        return {r[0] for r in self.sql(f"SELECT session_key FROM django_session WHERE session_key IN ({marks})", keys)}

    def index_rows(self, user_id=None):
        if user_id is None:
            return {r[0]: r[1] for r in self.sql("SELECT session_key, user_id FROM djauth_session_index")}
        return {r[0]: r[1] for r in self.sql("SELECT session_key, user_id FROM djauth_session_index WHERE user_id = %s", [user_id])}


def sql_runner(backend, target):
    """query(sql, params) -> rows, on a fresh autocommit connection (paramstyle %s everywhere)."""
    def run(query, params=()):
        if backend == "sqlite":
            conn = sqlite3.connect(target, timeout=20, isolation_level=None)
            query = query.replace("%s", "?")
        else:
            conn = db_connect(backend, target)
        try:
            cur = conn.cursor()
            cur.execute(query, list(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            conn.close()
    return run


def db_connect(backend, d, autocommit=True):
    if backend == "postgres":
        import psycopg
        return psycopg.connect(host=d["HOST"], port=int(d["PORT"]), user=d["USER"], dbname=d["NAME"], autocommit=autocommit)
    import pymysql
    return pymysql.connect(host=d["HOST"], port=int(d["PORT"]), user=d["USER"], password=d["PASSWORD"],
                           database=d["NAME"], autocommit=autocommit)


SITES = ["sqlite-db", "sqlite-signed_cookies", "postgres-db", "postgres-signed_cookies", "mariadb-db"]


@pytest.fixture(scope="module", params=SITES)
def site(request, tmp_path_factory):
    backend, engine = request.param.split("-")
    tmp = tmp_path_factory.mktemp(f"index-{request.param}")
    name = "idx_" + secrets.token_hex(4)
    if backend == "sqlite":
        path = str(tmp / "db.sqlite3")
        django_db = {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 20}}
        url, sql = f"sqlite://{path}", sql_runner("sqlite", path)
    else:
        server = request.getfixturevalue("pg_server" if backend == "postgres" else "mariadb_server")
        server.create_database(name)
        django_db, url = server.django_database(name), server.url_for(name)
        sql = sql_runner(backend, django_db)
    secret = secrets.token_urlsafe(40)
    admin_token = secrets.token_urlsafe(24)
    env = dict(os.environ, DATABASE_URL=url, DJAUTH_SECRET_KEY=secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
               DJAUTH_PASSWORD_HASHERS=MD5, DJAUTH_DJANGO_VERSION=DJANGO_VERSION,
               DJAUTH_SESSION_ENGINE=ENGINES[engine], DJAUTH_ADMIN_API_TOKEN=admin_token,
               DJAUTH_SESSION_INDEX_CATCH_UP_INTERVAL="0")
    p = subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    django = DjangoSide(tmp, {"secret": secret, "db": django_db, "engine": ENGINES[engine]})
    s = Site(request.param, backend, engine, env, tmp, sql, django_db, django, admin_token)
    yield s
    s.close()


def uniq(prefix):
    return f"{prefix}_{secrets.token_hex(3)}"


def new_user(site, prefix, **kw):
    name = uniq(prefix)
    pw = "pw-" + secrets.token_hex(6)
    pk = site.django("create_user", username=name, password=pw, **kw)
    return name, pw, pk


def admin_headers(site):
    return {"Authorization": f"Bearer {site.admin_token}"}


def sleep_past(second):
    """Sleep until the wall clock is past the whole second `second` (signed-cookie timestamps)."""
    wait = second + 1 - time.time() + 0.02
    if wait > 0:
        time.sleep(wait)


LOGGED_OUT = re.compile(r"^(\d+) session\(s\) ended for (\S+) \(id (\S+)\)\.$")


# ----------------------------------------------------------------------------------------
# 1. The done-criterion: after logout-user / the admin API, no session of the user works.
# ----------------------------------------------------------------------------------------

def _sessions_of_everyone(site):
    victim, vpw, vpk = new_user(site, "victim")
    other, opw, _ = new_user(site, "other")
    victim_keys = [site.django("login", username=victim, password=vpw, ua=FIREFOX_LINUX),
                   site.login(victim, vpw, ua=CHROME_WINDOWS)[0],
                   site.django("login", username=victim, password=vpw)]
    other_keys = [site.django("login", username=other, password=opw), site.login(other, opw)[0]]
    site.assert_alive(victim_keys, victim, "before the revocation")
    site.assert_alive(other_keys, other, "before the revocation")
    return (victim, vpw, vpk, victim_keys), (other, other_keys)


def test_logout_user_ends_every_session_on_both_sides(site):
    (victim, vpw, vpk, keys), (other, other_keys) = _sessions_of_everyone(site)
    p = site.djauth("logout-user", victim)
    m = LOGGED_OUT.match(p.stdout.strip())
    assert m, p.stdout
    assert (m.group(2), m.group(3)) == (victim, vpk)
    assert int(m.group(1)) == (0 if site.signed else len(keys)), p.stdout
    site.assert_dead(keys, "the victim's sessions after logout-user")
    if not site.signed:
        assert site.session_rows(keys) == set(), "their django_session rows are deleted"
        assert site.index_rows(vpk) == {}, "and their index rows"
    site.assert_alive(other_keys, other, "another user's sessions after logout-user")
    # The revocation is not a lock-out: logging in again (after the revoked second, which
    # signed cookies need) works on both sides.
    not_before = site.sql("SELECT not_before FROM djauth_user_not_before WHERE user_id = %s", [vpk])
    assert len(not_before) == 1 and abs(not_before[0][0] - time.time()) < 30, not_before
    sleep_past(not_before[0][0])
    again = [site.django("login", username=victim, password=vpw), site.login(victim, vpw)[0]]
    site.assert_alive(again, victim, "new logins after the revocation")
    # By --id and --email too; an unknown user is refused with exit status 1.
    p = site.djauth("logout-user", "--id", vpk)
    assert LOGGED_OUT.match(p.stdout.strip()).group(1) == ("0" if site.signed else "2"), p.stdout
    p = site.djauth("logout-user", "--email", f"{victim.upper()}@EXAMPLE.COM")
    assert LOGGED_OUT.match(p.stdout.strip()), p.stdout
    p = site.djauth("logout-user", "nobody-" + victim, ok=False)
    assert p.returncode == 1 and "no such user" in p.stderr, (p.returncode, p.stderr)
    site.finish()


def test_admin_api_delete_ends_every_session_on_both_sides(site):
    (victim, vpw, vpk, keys), (other, other_keys) = _sessions_of_everyone(site)
    r = http(site.port, "DELETE", f"/api/v1/admin/users/{vpk}/sessions", headers=admin_headers(site))
    assert r.status == 200, r
    assert r.json() == {"ended": 0 if site.signed else len(keys)}
    site.assert_dead(keys, "the victim's sessions after the admin API DELETE")
    if not site.signed:
        assert site.session_rows(keys) == set()
    site.assert_alive(other_keys, other, "another user's sessions after the admin API DELETE")
    site.finish()


# ----------------------------------------------------------------------------------------
# 2. Concurrency
# ----------------------------------------------------------------------------------------

def test_django_session_made_a_moment_before_logout_user_is_ended(site):
    """Django (without djauth_django) logs in, logout-user runs at once: no catch-up ran in
    between, so only the trigger-fed queue can tell djauth about the session."""
    user, pw, pk = new_user(site, "moment")
    key = site.django("login", username=user, password=pw)
    if not site.signed:
        assert site.index_rows(pk) == {}, "nothing indexed it yet"
        queued = site.sql("SELECT COUNT(*) FROM djauth_session_queue WHERE session_key = %s", [key])[0][0]
        assert queued >= 1, "the trigger queued Django's write"
    p = site.djauth("logout-user", user)
    assert LOGGED_OUT.match(p.stdout.strip()).group(1) == ("0" if site.signed else "1"), p.stdout
    site.assert_dead([key], "a Django session made just before logout-user")
    site.finish()


def test_logins_racing_logout_user(site):
    """Django (2 threads) and djauth (2 threads) log the same user in over and over while
    `djauth sessions catch-up` runs in a loop and logout-user runs once.  Every login that
    completed before logout-user started is dead on both sides; logins started after it
    finished (and, for signed cookies, after its second) live; the index holds every
    remaining row of the user."""
    user, pw, pk = new_user(site, "racer")
    stop = threading.Event()
    djauth_logins, failures = [], []

    def djauth_loop():
        while not stop.is_set():
            started = time.time()
            try:
                key = site.login(user, pw)[0]
            except Exception as e:  # noqa: BLE001  (reported below)
                failures.append(repr(e))
                continue
            djauth_logins.append((key, started, time.time()))

    def catch_up_loop():
        while not stop.is_set():
            p = site.djauth("sessions", "catch-up", ok=False)
            if p.returncode != 0:
                failures.append("catch-up: " + p.stderr)
            time.sleep(0.02)

    def logins(django):
        return [("djauth", *r) for r in djauth_logins] + [("django", *r) for r in django["logins"]]

    def wait_for(enough, what):
        # The machine may be loaded: wait for the logins rather than for a fixed time.
        deadline = time.time() + 30
        while time.time() < deadline:
            done = logins(site.django("race_poll"))
            if all(sum(r[0] == side and enough(r) for r in done) >= 2 for side in ("djauth", "django")):
                return
            time.sleep(0.05)
        pytest.fail(f"not 2 logins per side {what} within 30 s: {len(done)} logins, failures {failures[:3]}")

    threads = [threading.Thread(target=f) for f in (djauth_loop, djauth_loop, catch_up_loop)]
    site.django("race_start", username=user, password=pw, threads=2)
    try:
        for t in threads:
            t.start()
        wait_for(lambda r: True, "before logout-user")
        t0 = time.time()
        p = site.djauth("logout-user", user, ok=False)
        t1 = time.time()
        threshold = math.floor(t1) + 1 if site.signed else t1
        wait_for(lambda r: r[2] > threshold, "after logout-user")
    finally:
        stop.set()
        django = site.django("race_stop")
        for t in threads:
            t.join()
    assert p.returncode == 0 and LOGGED_OUT.match(p.stdout.strip()), f"logout-user: rc={p.returncode} {p.stdout} {p.stderr}"
    assert not failures, failures[:5]
    assert not django["errors"], django["errors"][:5]
    done = logins(django)
    before = [r for r in done if r[3] < t0]
    after = [r for r in done if r[2] > threshold]
    site.assert_dead([r[1] for r in before], f"{len(before)} logins completed before logout-user started")
    site.assert_alive([r[1] for r in after], user, f"{len(after)} logins started after logout-user ended")
    if not site.signed:
        site.djauth("sessions", "catch-up")
        decoded = site.django("decoded")
        rows = {k for k, u in decoded.items() if u == pk}
        indexed = site.index_rows(pk)
        assert rows - set(indexed) == set(), (
            f"rows of {user} missing from the index after a catch-up: {sorted(rows - set(indexed))} "
            f"(of {len(rows)} rows; logins: {[r[0] for r in done if r[1] in rows - set(indexed)]})")
        assert {r[1] for r in after} <= rows
    site.finish()


def test_two_servers_on_one_database(site):
    """Revoking through one djauth's admin API: the other djauth refuses on its next request."""
    if site.backend == "sqlite":
        pytest.skip("two servers on one PostgreSQL / MariaDB database")
    other = site.start_another()
    user, pw, pk = new_user(site, "twice")
    r = http(other.port, "GET", "/accounts/login/")
    token, csrf = CSRF_INPUT.search(r.body).group(1), r.cookies["csrftoken"]
    r = http(other.port, "POST", "/accounts/login/", cookies={"csrftoken": csrf},
             form={"username": user, "password": pw, "csrfmiddlewaretoken": token})
    on_b = r.cookies["sessionid"]
    from_django = site.django("login", username=user, password=pw)
    one = site.django("login", username=user, password=pw)
    for key in (on_b, from_django, one):
        assert site.djauth_state(key, port=other.port) == "alive"
    if not site.signed:
        # One session, by its id, through A: B refuses it at once, the others live.
        r = http(site.port, "DELETE", f"/api/v1/admin/users/{pk}/sessions/{public_id(one)}", headers=admin_headers(site))
        assert r.status == 200 and r.json() == {"ended": 1}, r
        assert site.djauth_state(one, port=other.port) == "dead"
        assert site.djauth_state(on_b, port=other.port) == "alive"
    r = http(site.port, "DELETE", f"/api/v1/admin/users/{pk}/sessions", headers=admin_headers(site))
    assert r.status == 200, r
    assert site.djauth_state(on_b, port=other.port) == "dead", "B's own session, revoked through A"
    assert site.djauth_state(from_django, port=other.port) == "dead", "a Django session, revoked through A"
    site.assert_dead([on_b, from_django, one], "after the DELETE through the other server")
    site.finish()


def test_catch_up_never_drops_a_write_committed_while_it_runs(site):
    """A session row whose queue entry got its sequence number before a catch-up started but
    committed while it ran must be indexed by the next catch-up (index.rs: "a write that lands
    while a catch-up runs … is picked up by the next one, never dropped").

    The interleaving is forced with row locks: transaction W holds a lock on the index row of
    session X and inserts a session K of user U (queue seq s, uncommitted); X is re-saved and
    committed (seq s+1); `djauth sessions catch-up` reads the queue (sees s+1 only) and blocks
    upserting X; W commits; the catch-up goes on and deletes its consumed range (0, s+1].
    Then logout-user must end K, as Django would see U logged out everywhere."""
    if site.backend == "sqlite" or site.signed:
        pytest.skip("PostgreSQL / MariaDB (SQLite serialises writers), db engine")
    holder, hpw, _ = new_user(site, "holder")
    user, _, pk = new_user(site, "late")
    x = site.django("login", username=holder, password=hpw)
    site.djauth("sessions", "catch-up")
    assert x in site.index_rows()
    k = secrets.token_hex(16)
    blob = site.django("blob", username=user)
    expire = datetime.now(timezone.utc) + timedelta(days=1)
    if site.backend == "mariadb":
        expire = expire.replace(tzinfo=None)
    w = db_connect(site.backend, site.django_db, autocommit=False)
    try:
        cur = w.cursor()
        cur.execute("SELECT session_key FROM djauth_session_index WHERE session_key = %s FOR UPDATE", [x])
        cur.execute("INSERT INTO django_session (session_key, session_data, expire_date) VALUES (%s, %s, %s)",
                    [k, blob, expire])
        # X is saved again (as Django does when a view changes the session): queue seq s+1, committed.
        site.sql("UPDATE django_session SET session_data = %s WHERE session_key = %s",
                 [site.django("blob", username=holder, extra={"cart": secrets.token_hex(4)}), x])
        catch_up = subprocess.Popen([djcompat.DJAUTH_BIN, "sessions", "catch-up"], env=site.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.8)  # it has read the queue and waits for W's lock on X's index row
        w.commit()
    finally:
        w.close()
    out, err = catch_up.communicate(timeout=30)
    assert catch_up.returncode == 0, err
    assert site.django("who", cookies=[k]) == [user], "Django sees K logged in"
    p = site.djauth("logout-user", user)
    remaining = site.django("who", cookies=[k])
    assert LOGGED_OUT.match(p.stdout.strip()).group(1) == "1" and remaining == ["-"], (
        f"K ({k}) committed while a catch-up ran was never indexed: logout-user printed {p.stdout.strip()!r}, "
        f"Django still sees {remaining}; queue entries for K left: "
        f"{site.sql('SELECT COUNT(*) FROM djauth_session_queue WHERE session_key = %s', [k])[0][0]}")


# ----------------------------------------------------------------------------------------
# 3. /accounts/sessions/ and the me API
# ----------------------------------------------------------------------------------------

def page_token(site, key, csrf):
    """The sessions page and a CSRF token for its forms (from the page, or, when it shows no
    form -- one session only --, from the password change page: the token is per user)."""
    r = http(site.port, "GET", "/accounts/sessions/", cookies={"sessionid": key, "csrftoken": csrf})
    assert r.status == 200, r
    m = CSRF_INPUT.search(r.body) or CSRF_INPUT.search(
        http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": key, "csrftoken": csrf}).body)
    return m.group(1), r


def test_sessions_page_lists_and_ends_sessions(site):
    user, pw, pk = new_user(site, "lister")
    # Login required (302 to the login page), and JSON 401 from the API.
    r = http(site.port, "GET", "/accounts/sessions/")
    assert r.status == 302 and r.headers["location"] == "/accounts/login/?next=/accounts/sessions/", r
    r = http(site.port, "GET", "/api/v1/me/sessions")
    assert r.status == 401 and r.json() == {"error": "not logged in"}, r
    from_django = site.django("login", username=user, password=pw, ua="Django test client")
    # djauth sees Django's session (indexed then, with this request's device and address).
    assert http(site.port, "GET", "/api/v1/me/sessions", cookies={"sessionid": from_django}, ua=FIREFOX_LINUX).status == 200
    mine, csrf = site.login(user, pw, ua=CHROME_WINDOWS)
    r = site.get("/api/v1/me/sessions", mine)
    assert r.status == 200, r
    listed = r.json()["sessions"]
    if site.signed:
        assert isinstance(listed, list)
        token, page = page_token(site, mine, csrf)
        assert "This device" in page.body and "(this session)" in page.body, page.body
    else:
        by_id = {s["id"]: s for s in listed}
        assert set(by_id) == {public_id(mine), public_id(from_django)}, listed
        assert listed[0]["id"] == public_id(mine) and listed[0]["current"] is True, "the current session first"
        assert "Chrome" in by_id[public_id(mine)]["device"] and by_id[public_id(mine)]["ip"] == "127.0.0.1"
        dj = by_id[public_id(from_django)]
        assert dj["current"] is False
        assert dj["device"] == "Firefox on Linux" and dj["ip"] == "127.0.0.1" and dj["user_agent"] == FIREFOX_LINUX, dj
        for s in listed:
            for field in ("created", "last_seen"):
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", s[field]), s
        assert mine not in r.body and from_django not in r.body, "keys never leave the server"
        token, page = page_token(site, mine, csrf)
        assert "Firefox on Linux" in page.body and "(this session)" in page.body
        assert f'name="end" value="{public_id(from_django)}"' in page.body
        assert f'name="end" value="{public_id(mine)}"' not in page.body
        # CSRF required.
        r = http(site.port, "POST", "/accounts/sessions/", cookies={"sessionid": mine, "csrftoken": csrf},
                 form={"end": public_id(from_django)})
        assert r.status == 403 and "CSRF verification failed" in r.body, r
        site.assert_alive([from_django], user, "a session whose ending was refused for CSRF")
        # Another user's session id is not this user's to end.
        stranger, spw, _ = new_user(site, "stranger")
        theirs = site.django("login", username=stranger, password=spw)
        site.djauth("sessions", "catch-up")
        r = http(site.port, "POST", "/accounts/sessions/", cookies={"sessionid": mine, "csrftoken": csrf},
                 form={"end": public_id(theirs), "csrfmiddlewaretoken": token})
        assert r.status == 302, r
        site.assert_alive([theirs], stranger, "another user's session, named by id on this user's page")
        # End one: Django's session dies on both sides; this one lives.
        r = http(site.port, "POST", "/accounts/sessions/", cookies={"sessionid": mine, "csrftoken": csrf},
                 form={"end": public_id(from_django), "csrfmiddlewaretoken": token})
        assert r.status == 302 and r.headers["location"] == "/accounts/sessions/", r
        site.assert_dead([from_django], "the session ended from the page")
        assert site.session_rows([from_django]) == set()
        site.assert_alive([mine], user, "the session that ended another")
        r = site.get("/api/v1/me/sessions", mine)
        assert [s["id"] for s in r.json()["sessions"]] == [public_id(mine)]
    # End others (page form): others die, this session lives on under a new cookie.
    others = [site.django("login", username=user, password=pw), site.login(user, pw)[0]]
    token, _ = page_token(site, mine, csrf)
    r = http(site.port, "POST", "/accounts/sessions/", cookies={"sessionid": mine, "csrftoken": csrf},
             form={"end": "others", "csrfmiddlewaretoken": token})
    assert r.status == 302 and r.headers["location"] == "/accounts/sessions/", r
    renewed = r.cookies.get("sessionid")
    assert renewed and renewed not in (mine, '""'), r.cookies
    site.assert_dead(others, "other sessions after end=others")
    site.assert_dead([mine], "the old cookie of the current session")
    site.assert_alive([renewed], user, "the current session under its new cookie")
    if not site.signed:
        assert site.session_rows(others + [mine]) == set()
        assert [s["id"] for s in site.get("/api/v1/me/sessions", renewed).json()["sessions"]] == [public_id(renewed)]
    site.finish()


def test_me_api_end_others(site):
    user, pw, _ = new_user(site, "apiuser")
    mine, csrf = site.login(user, pw)
    others = [site.django("login", username=user, password=pw), site.login(user, pw)[0]]
    r = http(site.port, "POST", "/api/v1/me/sessions/end-others", cookies={"sessionid": mine, "csrftoken": csrf})
    assert r.status == 403 and r.json()["error"].startswith("CSRF"), r
    r = http(site.port, "POST", "/api/v1/me/sessions/end-others", cookies={"sessionid": mine, "csrftoken": csrf},
             headers={"X-CSRFToken": csrf + "x"})
    assert r.status == 403, r
    site.assert_alive(others + [mine], user, "sessions after refused end-others")
    r = http(site.port, "POST", "/api/v1/me/sessions/end-others", cookies={"sessionid": mine, "csrftoken": csrf},
             headers={"X-CSRFToken": csrf})
    assert r.status == 200 and r.json() == {"ended": 0 if site.signed else 2}, r
    renewed = r.cookies.get("sessionid")
    assert renewed and renewed not in (mine, '""'), r.cookies
    site.assert_dead(others, "other sessions after the me API end-others")
    site.assert_alive([renewed], user, "the caller's session under its new cookie")
    r = http(site.port, "POST", "/api/v1/me/sessions/end-others")
    assert r.status == 401 and r.json() == {"error": "not logged in"}, r
    site.finish()


def test_django_session_caught_up_before_djauth_sees_it_gets_its_device(site):
    """The background catch-up (every SESSION_INDEX_CATCH_UP_INTERVAL s) or any listing
    indexes a Django-made session from the queue, without device details.  When djauth then
    sees that session on a request, the listing must show the device and address it saw, as
    it does when djauth sees the session first (test_sessions_page_lists_and_ends_sessions)."""
    if site.signed:
        pytest.skip("db engine: signed-cookie sessions are not listed")
    user, pw, pk = new_user(site, "device")
    from_django = site.django("login", username=user, password=pw)
    site.djauth("sessions", "catch-up")
    assert site.index_rows(pk) == {from_django: pk}
    assert http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": from_django}, ua=FIREFOX_LINUX).status == 200
    listed = site.get("/api/v1/me/sessions", from_django).json()["sessions"]
    assert [(s["id"], s["device"], s["ip"]) for s in listed] == [(public_id(from_django), "Firefox on Linux", "127.0.0.1")], listed


# ----------------------------------------------------------------------------------------
# 4. Admin API authorisation
# ----------------------------------------------------------------------------------------

def test_admin_api_authorisation(site):
    target, tpw, tpk = new_user(site, "target")
    target_key = site.django("login", username=target, password=tpw)
    plain, ppw, _ = new_user(site, "plain", perms=["auth.change_user"])
    staff, spw, _ = new_user(site, "staff", staff=True)
    boss, bpw, _ = new_user(site, "boss", staff=True, perms=["auth.change_user"])
    path = f"/api/v1/admin/users/{tpk}/sessions"

    def get(**kw):
        return http(site.port, "GET", path, **kw)

    r = get()
    assert r.status == 401 and "error" in r.json(), r
    r = get(headers={"Authorization": f"Bearer {site.admin_token}x"})
    assert r.status == 401 and "error" in r.json(), r
    r = get(headers={"Authorization": "Bearer "})
    assert r.status == 401, r
    plain_key = site.login(plain, ppw)[0]
    r = get(cookies={"sessionid": plain_key})
    assert r.status == 403 and "error" in r.json(), ("not staff (even with the perm)", r)
    staff_key = site.django("login", username=staff, password=spw)
    r = get(cookies={"sessionid": staff_key})
    assert r.status == 403 and "error" in r.json(), ("staff without auth.change_user", r)
    boss_key = site.django("login", username=boss, password=bpw)
    r = get(cookies={"sessionid": boss_key})
    assert r.status == 200, r
    listed = r.json()["sessions"]
    assert isinstance(listed, list)
    if not site.signed:
        assert [s["id"] for s in listed] == [public_id(target_key)], listed
    r = get(headers=admin_headers(site))
    assert r.status == 200 and r.json()["sessions"] == listed, r
    # Unknown users and paths: JSON 404s.
    for bad in ("/api/v1/admin/users/987654321/sessions", "/api/v1/admin/users/not-a-pk/sessions"):
        r = http(site.port, "GET", bad, headers=admin_headers(site))
        assert r.status == 404 and r.json() == {"error": "no such user"}, (bad, r)
    for bad in ("/api/v1/nope", "/api/", "/api/v1/admin/users/1/sessions/a/b"):
        r = http(site.port, "GET", bad, headers=admin_headers(site))
        assert r.status == 404 and "error" in r.json(), (bad, r)
    if not site.signed:
        r = http(site.port, "DELETE", f"{path}/{'0' * 20}", headers=admin_headers(site))
        assert r.status == 404 and r.json() == {"error": "no such session"}, r
        stranger_key = site.login(plain, ppw)[0]
        r = http(site.port, "DELETE", f"{path}/{public_id(stranger_key)}", headers=admin_headers(site))
        assert r.status == 404, ("another user's session under this user's path", r)
        site.assert_alive([stranger_key], plain, "a session named under another user's path")
    # A staff session needs CSRF for DELETE; then it works.
    csrf = site.csrf_cookie()
    r = http(site.port, "DELETE", path, cookies={"sessionid": boss_key, "csrftoken": csrf})
    assert r.status == 403 and r.json()["error"].startswith("CSRF"), r
    site.assert_alive([target_key], target, "after a DELETE refused for CSRF")
    r = http(site.port, "DELETE", path, cookies={"sessionid": staff_key, "csrftoken": csrf}, headers={"X-CSRFToken": csrf})
    assert r.status == 403, ("staff without the perm, with CSRF", r)
    r = http(site.port, "DELETE", path, cookies={"sessionid": boss_key, "csrftoken": csrf}, headers={"X-CSRFToken": csrf})
    assert r.status == 200 and r.json() == {"ended": 0 if site.signed else 1}, r
    site.assert_dead([target_key], "the target's session after a staff DELETE")
    site.assert_alive([boss_key], boss, "the staff user's own session")
    site.finish()


# ----------------------------------------------------------------------------------------
# 5. djauth's password change ends the other sessions
# ----------------------------------------------------------------------------------------

def test_password_change_ends_the_other_sessions(site):
    user, pw, pk = new_user(site, "changer")
    others = [site.django("login", username=user, password=pw), site.login(user, pw)[0]]
    mine, csrf = site.login(user, pw)
    r = http(site.port, "GET", "/accounts/password_change/", cookies={"sessionid": mine, "csrftoken": csrf})
    token = CSRF_INPUT.search(r.body).group(1)
    new_pw = "new-" + secrets.token_hex(8)
    r = http(site.port, "POST", "/accounts/password_change/", cookies={"sessionid": mine, "csrftoken": csrf},
             form={"old_password": pw, "new_password1": new_pw, "new_password2": new_pw, "csrfmiddlewaretoken": token})
    assert r.status == 302 and r.headers["location"] == "/accounts/password_change/done/", r
    renewed = r.cookies["sessionid"]
    assert renewed != mine
    # Refused by both sides (the session hash alone does that on Django, with either engine).
    site.assert_dead(others, "the user's other sessions after a password change", django_always=True)
    site.assert_alive([renewed], user, "the changer's session")
    if not site.signed:
        assert site.session_rows(others + [mine]) == set(), "the other rows are deleted, not only refused"
        assert site.session_rows([renewed]) == {renewed}
        site.djauth("sessions", "catch-up")
        assert set(site.index_rows(pk)) == {renewed}


# ----------------------------------------------------------------------------------------
# 6. reindex
# ----------------------------------------------------------------------------------------

def test_reindex_restores_the_index(site):
    if site.signed:
        pytest.skip("db engine: signed-cookie sessions have no rows")
    users = [new_user(site, f"re{i}") for i in range(3)]
    for i, (name, pw, _) in enumerate(users):
        for _ in range(i + 1):
            site.django("login", username=name, password=pw)
            site.login(name, pw)
    site.djauth("sessions", "catch-up")
    deleted = site.sql("SELECT COUNT(*) FROM djauth_session_index")[0][0]
    assert deleted > 0
    site.sql("DELETE FROM djauth_session_index")
    p = site.djauth("sessions", "reindex")
    decoded = site.django("decoded")
    assert re.fullmatch(r"(\d+) session\(s\) indexed from (\d+) row\(s\)\.", p.stdout.strip()), p.stdout
    n_indexed, n_rows = map(int, re.findall(r"\d+", p.stdout))
    total_rows = site.sql("SELECT COUNT(*) FROM django_session")[0][0]
    assert (n_indexed, n_rows) == (len(decoded), total_rows), p.stdout
    assert site.index_rows() == decoded, "the index is exactly what Django decodes"
    for name, pw, pk in users:
        lines = [json.loads(line) for line in site.djauth("sessions", "list", name).stdout.splitlines()]
        expected = sorted(public_id(k) for k, u in decoded.items() if u == pk)
        assert sorted(s["id"] for s in lines) == expected
    # The index still serves revocation: logout-user ends what reindex found.
    name, _, pk = users[-1]
    p = site.djauth("logout-user", name)
    assert LOGGED_OUT.match(p.stdout.strip()).group(1) == str(sum(u == pk for u in decoded.values()))

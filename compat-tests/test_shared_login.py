"""Issue 6, the shared login, against real Django and real nginx.

One site per backend (SQLite, PostgreSQL) for the whole module, on one database that
`djauth migrate` made:

* a Django process (django_side.py) whose URLconf is the generated module ``sl_site``
  (below): Django's own ``login_required`` / ``permission_required`` / ``user_passes_test``
  views, and two oracle views answering what Django thinks of a session's user
  (``/oracle/me``, ``/oracle/has-perm``).  Sessions are made there with the test Client
  (``login`` / ``force_login``), cookies then travel to the Rust side;
* ``djauth serve`` (``/api/v1/...``, ``/auth/verify``, the login form);
* the example app ``target/debug/examples/shared_login`` (djauth's extractors);
* nginx from Debian (fixture ``proxy``) on a free loopback port with its own prefix, in
  front of a tiny upstream that echoes the request headers it receives, gated by
  ``auth_request`` on ``/auth/verify`` (plain, ``?perm=``, ``?group=``, ``?staff=1``).

Both sides list ModelBackend and AllowAllUsersModelBackend in AUTHENTICATION_BACKENDS, so an
inactive user can hold a session (AllowAllUsersModelBackend) or be refused one
(ModelBackend).  Random inputs come from COMPAT_SEED.
"""

import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import django
import pytest

import dbfixtures
import djcompat
from conftest import SEED
from dbfixtures import DjangoProject, TestDatabase, hashers, pg_server  # noqa: F401  (fixture)

# djauth's own behaviour against Django's session format, which is the same in every
# supported version (test_web and test_sessions cross it per version): one version suffices.
pytestmark = [pytest.mark.skipif(djcompat.INPROCESS, reason="needs the djauth binary and the example app"), pytest.mark.one_version]

DJANGO_VERSION = "%d.%d" % django.VERSION[:2]
EXAMPLE_BIN = Path(os.environ.get("DJAUTH_EXAMPLE_BIN")
                   or djcompat.DJAUTH_BIN.parent / "examples" / "shared_login")

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
ALLOW_ALL = "django.contrib.auth.backends.AllowAllUsersModelBackend"
BACKENDS = [MODEL_BACKEND, ALLOW_ALL]
ALLOWED_HOSTS = ["127.0.0.1", "app.example"]
LOGIN_URL = "/accounts/login/"

SETTINGS = {
    "INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
    # startproject's CommonMiddleware validates the Host of every request (DisallowedHost -> 400)
    "MIDDLEWARE": ["django.middleware.common.CommonMiddleware",
                   "django.contrib.sessions.middleware.SessionMiddleware",
                   "django.contrib.auth.middleware.AuthenticationMiddleware"],
    "ROOT_URLCONF": "sl_site",
    "ALLOWED_HOSTS": ["testserver"] + ALLOWED_HOSTS,
    "AUTHENTICATION_BACKENDS": BACKENDS,
    "LOGIN_URL": LOGIN_URL,
}

# The Django side: the example app's pages written with Django's decorators, the oracles,
# and the operations the tests run in the Django process.
SITE_MODULE = r'''
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required, user_passes_test
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.contrib.contenttypes.models import ContentType
from django.http import HttpResponse, JsonResponse
from django.test import Client
from django.urls import include, path

User = get_user_model()


def index(request):
    if request.user.is_authenticated:
        return HttpResponse(f"Hello, {request.user.username}.\n")
    return HttpResponse("Hello, anonymous.\n")


@login_required
def profile(request):
    return JsonResponse({"id": str(request.user.pk), "username": request.user.username})


@permission_required("auth.change_user")
def users(request):
    return HttpResponse(f"{request.user.username} may change users.\n")


@user_passes_test(lambda u: u.is_active and u.is_staff)
def staff(request):
    return HttpResponse(f"{request.user.username} is staff.\n")


def user_view(u):
    return {
        "id": u._meta.pk.value_to_string(u),
        "username": u.get_username(),
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "is_active": u.is_active,
        "is_staff": u.is_staff,
        "is_superuser": u.is_superuser,
        "last_login": None if u.last_login is None else u.last_login.isoformat(),
        "groups": sorted(u.groups.values_list("name", flat=True)),
        "permissions": sorted(u.get_all_permissions()),
    }


def oracle_me(request):
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    body = user_view(request.user)
    body["session_expiry"] = request.session.get_expiry_date().isoformat()
    return JsonResponse(body)


def oracle_has_perm(request):
    u = request.user
    if not u.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    perms = request.GET.getlist("perm")
    return JsonResponse({"perms": {p: u.has_perm(p) for p in perms}, "all": u.has_perms(perms)})


urlpatterns = [
    path("", index), path("profile", profile), path("users", users), path("staff", staff),
    path("oracle/me", oracle_me), path("oracle/has-perm", oracle_has_perm),
    path("accounts/", include("django.contrib.auth.urls")),
]


def op(_op, **kwargs):
    return globals()["op_" + _op](**kwargs)


def _perm(p):
    app, codename = p.split(".", 1)
    return Permission.objects.get(content_type__app_label=app, codename=codename)


def op_create_permissions(perms):
    for app, model, codename, name in perms:
        ct, _ = ContentType.objects.get_or_create(app_label=app, model=model)
        Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": name})
    ContentType.objects.clear_cache()
    return sorted(f"{a}.{c}" for a, c in Permission.objects.values_list("content_type__app_label", "codename"))


def op_create_group(name, perms=()):
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.add(*[_perm(p) for p in perms])
    return group.pk


def op_create_user(username, password=None, perms=(), groups=(), **fields):
    user = User._default_manager.create_user(username=username, password=password, **fields)
    user.user_permissions.add(*[_perm(p) for p in perms])
    user.groups.add(*[Group.objects.get(name=g) for g in groups])
    return {"pk": str(user.pk), "username": user.get_username()}


def op_add_to_group(username, group):
    User._default_manager.get_by_natural_key(username).groups.add(Group.objects.get(name=group))


def op_login(username, password):
    client = Client()
    assert client.login(username=username, password=password), username
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def op_force_login(username, backend):
    client = Client()
    client.force_login(User._default_manager.get_by_natural_key(username), backend=backend)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def op_set_last_login(username, value):
    User._default_manager.filter(username=username).update(
        last_login=None if value is None else datetime.fromisoformat(value))


def op_get(key, path, host=None):
    client = Client()
    if key:
        client.cookies[settings.SESSION_COOKIE_NAME] = key
    extra = {"HTTP_HOST": host} if host else {}
    r = client.get(path, **extra)
    return {"status": r.status_code, "location": r.get("Location"), "content_type": r.get("Content-Type"),
            "body": r.content.decode()}


def op_redirect_to_login(next):
    return redirect_to_login(next)["Location"]
'''


# ----------------------------------------------------------------------------------------
# processes and HTTP
# ----------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class Server:
    """A child process serving on a loopback port; its output goes to ``log``."""

    def __init__(self, name, cmd, env, port, log, timeout=20):
        self.name, self.port, self.log = name, port, Path(log)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(c) for c in cmd], env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"{name} did not start ({' '.join(map(str, cmd))}):\n{_tail(self.log)}", pytrace=False)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def assert_no_panic(self):
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        assert "panicked at" not in text, f"{self.name} panicked:\n{_tail(self.log)}"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(name lower-cased, value)]
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return default

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    @property
    def set_cookies(self):
        return [v for k, v in self.headers if k == "set-cookie"]

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def fetch(port, method, path, *, host=None, cookies=None, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    h = {"Host": host or f"127.0.0.1:{port}"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    h.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
    finally:
        conn.close()


def session(key):
    return {"sessionid": key} if key else None


# ----------------------------------------------------------------------------------------
# the site
# ----------------------------------------------------------------------------------------

class Site:
    def __init__(self, backend, project, tmp):
        self.backend = backend
        self.project = project
        self.tmp = tmp
        self.env = self._env()
        self.djauth = None
        self.example = None

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_") and k != "DATABASE_URL"}
        env["TZ"] = djcompat.DJAUTH_PROCESS_TZ
        env["DJAUTH_DJANGO_VERSION"] = DJANGO_VERSION
        env.update(self.project.djauth_env())
        env.update(self.settings_env())
        return env

    @staticmethod
    def settings_env():
        return {"DJAUTH_ALLOWED_HOSTS": ",".join(ALLOWED_HOSTS),
                "DJAUTH_AUTHENTICATION_BACKENDS": ",".join(BACKENDS),
                "DJAUTH_LOGIN_URL": LOGIN_URL}

    # -- Django ------------------------------------------------------------------------
    def op(self, _op, **kwargs):
        return self.project.call("exec", code="import sl_site\nresult = sl_site.op(**args)",
                                 args={"_op": _op, **kwargs})

    def user(self, tag, password=None, **fields):
        """A new user (unique name from ``tag``) created by Django; returns its fields."""
        name = f"{tag}-{uuid.uuid4().hex[:8]}"
        password = password or "pw-" + uuid.uuid4().hex
        made = self.op("create_user", username=name, password=password, **fields)
        return {**made, "password": password}

    def group(self, tag, perms=()):
        name = f"{tag}-{uuid.uuid4().hex[:6]}"
        self.op("create_group", name=name, perms=list(perms))
        return name

    def django_login(self, user):
        return self.op("login", username=user["username"], password=user["password"])

    def force_login(self, user, backend=MODEL_BACKEND):
        return self.op("force_login", username=user["username"], backend=backend)

    def django_get(self, key, path, host=None):
        return self.op("get", key=key, path=path, host=host)

    # -- djauth --------------------------------------------------------------------------
    def get(self, path, key=None, **kw):
        return fetch(self.djauth.port, kw.pop("method", "GET"), path, cookies=session(key), **kw)

    def djauth_login(self, user):
        """Log in through djauth's login form; returns the session key."""
        r = fetch(self.djauth.port, "GET", "/accounts/login/")
        assert r.status == 200, r
        token = re.search(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"', r.text).group(1)
        csrf = next(c.split(";")[0].split("=", 1)[1] for c in r.set_cookies if c.startswith("csrftoken="))
        r = fetch(self.djauth.port, "POST", "/accounts/login/", cookies={"csrftoken": csrf},
                  body={"username": user["username"], "password": user["password"], "csrfmiddlewaretoken": token})
        assert r.status == 302, f"login of {user['username']} on djauth failed: {r}"
        return next(c.split(";")[0].split("=", 1)[1] for c in r.set_cookies if c.startswith("sessionid="))

    def logout_user(self, user):
        res = dbfixtures.run_djauth("logout-user", user["username"], env={**self.project.djauth_env(),
                                                                         **self.settings_env()})
        assert res.rc == 0, f"djauth logout-user {user['username']}: {res}"
        return res.out

    # -- the example app -------------------------------------------------------------------
    def example_get(self, path, key=None, **kw):
        return fetch(self.example.port, "GET", path, cookies=session(key), **kw)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(request, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"shared-login-{backend}")
    if backend == "sqlite":
        db = TestDatabase("sqlite", "shared_login", path=tmp / "db.sqlite3")
    else:
        server = request.getfixturevalue("pg_server")
        name = f"shared_login_{uuid.uuid4().hex[:12]}"
        server.create_database(name)
        db = TestDatabase(backend, name, server=server)
    project = DjangoProject(tmp / "project", {"default": db}, hashers_list=hashers("MD5PasswordHasher"),
                            extra_settings=SETTINGS)
    (project.root / "sl_site.py").write_text(SITE_MODULE)
    s = Site(backend, project, tmp)
    try:
        migrated = project.djauth("migrate")
        assert migrated.rc == 0, f"{project.describe(['migrate'])}\n{migrated}"
        project.start()
        port = free_port()
        s.djauth = Server("djauth serve", [djcompat.DJAUTH_BIN, "serve", "--bind", f"127.0.0.1:{port}"], s.env,
                          port, tmp / "djauth-serve.log")
        if not EXAMPLE_BIN.exists():
            pytest.fail(f"the example app is not built: {EXAMPLE_BIN} (cargo build --example shared_login; "
                        "or set DJAUTH_EXAMPLE_BIN)", pytrace=False)
        port = free_port()
        s.example = Server("examples/shared_login", [EXAMPLE_BIN, f"127.0.0.1:{port}"], s.env, port,
                           tmp / "example.log")
        yield s
        s.djauth.assert_no_panic()
        s.example.assert_no_panic()
    finally:
        for srv in (s.example, s.djauth):
            if srv is not None:
                srv.stop()
        project.close()
        db.drop()


# ----------------------------------------------------------------------------------------
# nginx in front of an echoing upstream
# ----------------------------------------------------------------------------------------

IDENTITY = ["X-Auth-User-Id", "X-Auth-Username", "X-Auth-Email", "X-Auth-Is-Staff", "X-Auth-Is-Superuser",
            "X-Auth-Groups"]
# location prefix -> the query /auth/verify is asked with
GATES = {"/app/": "", "/perm/": "?perm=auth.change_user", "/group/": "?group=editors", "/staff/": "?staff=1"}


class Upstream:
    """An HTTP server on loopback answering every request with what it received, as JSON."""

    def __init__(self):
        self.received = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _echo(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                seen = {"method": self.command, "path": self.path, "headers": list(self.headers.items()),
                        "body": body}
                upstream.received.append(seen)
                data = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _echo

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def nginx_binary():
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                            if os.access(p, os.X_OK)), None)
    if not found:
        msg = "nginx not installed: apt-get install -y nginx (.ci/install-deps does)"
        if dbfixtures.REQUIRED:
            pytest.fail(msg + " (required: CI / DJAUTH_REQUIRE_DBSERVERS=1)", pytrace=False)
        pytest.skip(msg)
    return found


def nginx_conf(tmp, port, djauth_port, upstream_port):
    identity = "".join(
        f"            auth_request_set $a_{h[7:].lower().replace('-', '_')} $upstream_http_{h.lower().replace('-', '_')};\n"
        f"            proxy_set_header {h} $a_{h[7:].lower().replace('-', '_')};\n" for h in IDENTITY)
    locations = []
    for i, (prefix, query) in enumerate(GATES.items()):
        locations.append(f"""
        location {prefix} {{
            auth_request /_auth{i};
{identity}            proxy_pass http://127.0.0.1:{upstream_port};
        }}
        location = /_auth{i} {{
            internal;
            proxy_pass http://127.0.0.1:{djauth_port}/auth/verify{query};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header Host $host;
        }}""")
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
{''.join(locations)}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxy(site):
    nginx = nginx_binary()
    tmp = site.tmp / "nginx"
    tmp.mkdir()
    upstream = Upstream()
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, port, site.djauth.port, upstream.port))
    server = None
    try:
        server = Server("nginx", [nginx, "-p", tmp, "-c", conf, "-e", tmp / "error.log"], os.environ, port,
                        tmp / "stdout.log")
        yield {"port": port, "upstream": upstream, "site": site}
    finally:
        if server is not None:
            server.stop()
        upstream.close()


def through(proxy, path, key=None, method="GET", headers=None, body=None):
    """A request to nginx; (response, what the upstream received or None)."""
    before = len(proxy["upstream"].received)
    r = fetch(proxy["port"], method, path, cookies=session(key), headers=headers, body=body)
    seen = proxy["upstream"].received[before:]
    assert len(seen) <= 1
    return r, (seen[0] if seen else None)


def identity_headers(seen):
    """The X-Auth-* headers the upstream received ({} name -> value; nginx drops empty ones)."""
    got = {}
    for k, v in seen["headers"]:
        for h in IDENTITY:
            if k.lower() == h.lower():
                assert h not in got, f"{h} sent twice: {seen['headers']}"
                got[h] = v
    return got


def expected_identity(view):
    """What the identity headers carry for Django's view of a user (percent-decoded)."""
    return {"X-Auth-User-Id": view["id"], "X-Auth-Username": view["username"], "X-Auth-Email": view["email"],
            "X-Auth-Is-Staff": "true" if view["is_staff"] else "false",
            "X-Auth-Is-Superuser": "true" if view["is_superuser"] else "false",
            "X-Auth-Groups": view["groups"]}


def assert_identity(seen, view):
    got = identity_headers(seen)
    for name, value in got.items():
        assert re.fullmatch(r"[\x20-\x7e]*", value), f"{name}: not visible ASCII: {value!r}"
    decoded = {k: urllib.parse.unquote(got.get(k, "")) for k in IDENTITY if k != "X-Auth-Groups"}
    groups = got.get("X-Auth-Groups", "")
    decoded["X-Auth-Groups"] = [urllib.parse.unquote(g) for g in groups.split(",")] if groups else []
    assert decoded == expected_identity(view), f"upstream got {got}"


def oracle(site, key):
    r = site.django_get(key, "/oracle/me")
    return json.loads(r["body"]) if r["status"] == 200 else None


# ----------------------------------------------------------------------------------------
# 1. nginx auth_request / forward-auth
# ----------------------------------------------------------------------------------------

def test_nginx_anonymous_is_401_and_never_reaches_the_upstream(proxy):
    for prefix in GATES:
        for key in (None, "x" * 32, "not a key"):
            r, seen = through(proxy, prefix + "page", key,
                              headers={"X-Auth-Username": "admin", "X-Auth-Is-Superuser": "true"})
            assert r.status == 401, (prefix, key, r)
            assert seen is None, f"{prefix}: anonymous request reached the upstream: {seen}"


def test_nginx_passes_the_identity_of_django_and_djauth_logins(proxy):
    site = proxy["site"]
    plain = site.user("plain", email="plain@example.com")
    editors = site.group("Editors")  # capital E: sorts before the comma group below by code point
    night = site.group("ops, night")
    other = site.group("Zoë's")
    rich = site.user("zoë", email="Zoë@exämple.com", first_name="Zoë", last_name="O'Neil, Jr.", is_staff=True,
                     groups=[night, other, editors])
    for user, login in ((plain, site.django_login), (rich, site.djauth_login), (rich, site.django_login),
                        (plain, site.djauth_login)):
        key = login(user)
        view = oracle(site, key)
        assert view and view["username"] == user["username"]
        # Headers a client sends itself never reach the upstream: nginx sets them from djauth's.
        forged = {"X-Auth-Username": "admin", "X-Auth-Is-Superuser": "true", "X-Auth-Groups": "admins"}
        r, seen = through(proxy, "/app/some/page?q=1", key, headers=forged)
        assert r.status == 200, (user["username"], login.__name__, r)
        assert seen["path"] == "/app/some/page?q=1"
        assert_identity(seen, view)
        # A POST goes through too; its body reaches the upstream, not djauth.
        r, seen = through(proxy, "/app/form", key, method="POST", body={"field": "value"})
        assert r.status == 200 and seen["method"] == "POST" and seen["body"] == "field=value", r
        assert_identity(seen, view)
    assert rich["username"].startswith("zoë-")


def test_nginx_perm_group_and_staff_gates(proxy):
    site = proxy["site"]
    site.op("create_group", name="editors", perms=["auth.change_user"])
    holders = site.group("holders", perms=["auth.change_user", "auth.view_user"])
    users = {
        "plain": site.user("plain"),
        "viewer": site.user("viewer", perms=["auth.view_user", "auth.add_user"]),
        "direct": site.user("direct", perms=["auth.change_user"]),
        "holder": site.user("holder", groups=[holders]),
        "editor": site.user("editor", groups=["editors"]),
        "staff": site.user("staff", is_staff=True),
        "root": site.user("root", is_staff=True, is_superuser=True),
        "bare-root": site.user("bare-root", is_superuser=True),
    }
    expected = {  # name: (perm, group, staff)
        "plain": (403, 403, 403),
        "viewer": (403, 403, 403),
        "direct": (200, 403, 403),
        "holder": (200, 403, 403),
        "editor": (200, 200, 403),
        "staff": (403, 403, 200),
        "root": (200, 403, 200),
        "bare-root": (200, 403, 403),
    }
    for name, user in users.items():
        key = site.django_login(user) if name in ("plain", "editor", "root") else site.djauth_login(user)
        view = oracle(site, key)
        django_perm = json.loads(site.django_get(key, "/oracle/has-perm?perm=auth.change_user")["body"])["all"]
        assert (expected[name][0] == 200) == django_perm, f"test table disagrees with Django for {name}"
        got = []
        for prefix in ("/perm/", "/group/", "/staff/"):
            r, seen = through(proxy, prefix + "x", key)
            got.append(r.status)
            if r.status == 200:
                assert_identity(seen, view)
            else:
                assert seen is None, f"{name} {prefix}: {r.status} yet the upstream was reached"
        assert tuple(got) == expected[name], f"{name}: (perm, group, staff) = {got}, expected {expected[name]}"
        r, _ = through(proxy, "/app/x", key)
        assert r.status == 200

    # Nothing is cached: a permission granted through a group counts on the next request.
    key = site.django_login(users["plain"])
    assert through(proxy, "/perm/x", key)[0].status == 403
    site.op("add_to_group", username=users["plain"]["username"], group=holders)
    assert through(proxy, "/perm/x", key)[0].status == 200
    assert through(proxy, "/group/x", key)[0].status == 403
    site.op("add_to_group", username=users["plain"]["username"], group="editors")
    assert through(proxy, "/group/x", key)[0].status == 200


def test_nginx_staff_gate_needs_an_active_staff_user_like_django(proxy):
    """With AllowAllUsersModelBackend an inactive user keeps a session; Django's staff checks
    (staff_member_required, the admin's has_permission, the example's IsStaff) all want
    ``is_active and is_staff``, so ?staff=1 must refuse an inactive staff user."""
    site = proxy["site"]
    user = site.user("inactive-staff", is_staff=True, is_active=False)
    key = site.force_login(user, backend=ALLOW_ALL)
    assert oracle(site, key)["is_active"] is False, "Django keeps the session (AllowAllUsersModelBackend)"
    assert site.django_get(key, "/staff")["status"] == 302, "Django's staff check refuses"
    assert through(proxy, "/app/x", key)[0].status == 200
    assert through(proxy, "/perm/x", key)[0].status == 403
    r, seen = through(proxy, "/staff/x", key)
    assert r.status == 403, f"inactive staff user passed ?staff=1: {r.status}, upstream saw {seen and identity_headers(seen)}"


def test_nginx_logout_user_refuses_the_very_next_request(proxy):
    site = proxy["site"]
    user = site.user("leaver", groups=[site.group("g")])
    other = site.user("stayer")
    keys = [site.django_login(user), site.djauth_login(user), site.django_login(user)]
    kept = site.django_login(other)
    for key in keys + [kept]:
        assert through(proxy, "/app/x", key)[0].status == 200
    out = site.logout_user(user)
    assert out.startswith("3 session(s) ended"), out
    for key in keys:
        r, seen = through(proxy, "/app/x", key)
        assert r.status == 401 and seen is None, f"revoked session still accepted: {r}"
        assert site.get("/api/v1/me", key).status == 401
        assert site.django_get(key, "/")["body"] == "Hello, anonymous.\n", "Django sees the session gone too"
    assert through(proxy, "/app/x", kept)[0].status == 200, "another user's session is untouched"


def verify_redirect(site, headers, key=None, query="?redirect=1"):
    return fetch(site.djauth.port, "GET", "/auth/verify" + query, cookies=session(key),
                 headers={"Host": "127.0.0.1", **headers})


@pytest.mark.parametrize("uri", ["/private/report?id=7&q=a%20b", "/", "/caf%C3%A9/x?y=%7C|&z=~'", "/a/b/?next=/c"])
def test_verify_redirect_traefik_style(site, uri):
    expected = site.op("redirect_to_login", next=uri)
    assert "next=" in expected
    # Traefik: X-Forwarded-Host / X-Forwarded-Uri (X-Forwarded-Proto https)
    r = verify_redirect(site, {"X-Forwarded-Host": "app.example", "X-Forwarded-Uri": uri,
                               "X-Forwarded-Proto": "https", "X-Forwarded-Method": "GET"})
    assert r.status == 302 and r.header("location") == expected, r
    # nginx style: X-Original-URI with the Host header
    r = fetch(site.djauth.port, "GET", "/auth/verify?redirect=1", headers={"X-Original-URI": uri})
    assert r.status == 302 and r.header("location") == expected, r
    # A forwarded host outside ALLOWED_HOSTS: the login page without next.
    r = verify_redirect(site, {"X-Forwarded-Host": "evil.example", "X-Forwarded-Uri": uri})
    assert r.status == 302 and r.header("location") == LOGIN_URL, r
    # Without redirect=1: 401.
    r = verify_redirect(site, {"X-Forwarded-Host": "app.example", "X-Forwarded-Uri": uri}, query="")
    assert r.status == 401 and r.json() == {"error": "not logged in"}, r


def test_verify_redirect_edge_cases(site):
    # Not a local target: no next (an absolute URL elsewhere, a scheme-relative one).
    for uri in ("https://evil.example/steal", "//evil.example/steal", "http://app.example.evil.example/"):
        r = verify_redirect(site, {"X-Forwarded-Host": "app.example", "X-Forwarded-Uri": uri})
        assert r.status == 302 and r.header("location") == LOGIN_URL, (uri, r)
    # No URI at all: the login page.
    r = verify_redirect(site, {"X-Forwarded-Host": "app.example"})
    assert r.status == 302 and r.header("location") == LOGIN_URL, r
    # Logged in: 200 with the identity, or 403 for a failed requirement -- never a redirect.
    user = site.user("redir")
    key = site.django_login(user)
    r = verify_redirect(site, {"X-Forwarded-Host": "app.example", "X-Forwarded-Uri": "/x"}, key=key)
    assert r.status == 200 and urllib.parse.unquote(r.header("x-auth-username")) == user["username"], r
    r = verify_redirect(site, {"X-Forwarded-Host": "app.example", "X-Forwarded-Uri": "/x"}, key=key,
                        query="?redirect=1&perm=auth.change_user")
    assert r.status == 403 and r.json() == {"error": "permission denied"}, r


# ----------------------------------------------------------------------------------------
# 2. /api/v1/me and /api/v1/me/has-perm against Django, for a random world
# ----------------------------------------------------------------------------------------

EXTRA_PERMS = [["shop", "item", "view_item", "Can view item"],
               ["shop", "item", "refund.partial", "Can refund part of an order"],
               ["reports", "report", "export_report", "Can export reports"]]
NONEXISTENT = ["auth.fly", "shop.delete_item", "nosuchapp.view_thing", "auth", "", "auth.", ".view_user",
               "AUTH.VIEW_USER", "auth.view_user ", "auth.view_user.x", "zoë.café", "shop.refund",
               "auth.change_user&perm=auth.add_user", "refund.partial"]
NAME_PARTS = ["ann", "Bob", "zoë", "łukasz", "x.y", "a+b", "mary-jo", "li_wei", "ÅSA", "@home"]
GROUP_PARTS = ["editors", "Editors", "ops, night", "Rédaction", "ZZ top", "alpha", "50% off", "Ωmega"]
PERSON = ["", "Zoë", "Jean-Luc", "O'Neil", "Ann, Jr.", "李", "d'Artagnan"]


def random_world(site, rng):
    catalogue = site.op("create_permissions", perms=EXTRA_PERMS)
    groups = {}
    for part in rng.sample(GROUP_PARTS, 5):
        groups[site.group(part, perms=rng.sample(catalogue, rng.randint(0, 4)))] = None
    group_names = list(groups)
    # (is_active, is_superuser, is_staff): every kind at least once, the rest random
    roles = [(True, True, True), (True, True, False), (False, True, True), (False, False, True), (True, False, True),
             (True, False, False), (False, False, False)]
    roles += [(rng.random() < 0.8, rng.random() < 0.2, rng.random() < 0.4) for _ in range(5)]
    users = []
    for i, (active, superuser, staff) in enumerate(roles):
        email = rng.choice(["", "someone@example.com", "Zoë@Exämple.com", f"u{i}@example.org"])
        user = site.user(rng.choice(NAME_PARTS), email=email, first_name=rng.choice(PERSON),
                         last_name=rng.choice(PERSON), is_active=active, is_superuser=superuser, is_staff=staff,
                         # a plain active user always has some, so has-perm answers both ways
                         perms=rng.sample(catalogue, rng.randint(int((active, superuser) == (True, False)), 3)),
                         groups=rng.sample(group_names, rng.randint(0, 3)))
        # Inactive users alternate between the backend that refuses them and the one that does not.
        backend = (BACKENDS[i % 2] if not active else rng.choice(BACKENDS))
        key = site.force_login(user, backend=backend)
        last = rng.choice(["keep", None, "second", "micro"])
        if last != "keep":
            when = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(10**8))
            if last == "micro":
                when = when.replace(microsecond=rng.randrange(1, 10**6))
            site.op("set_last_login", username=user["username"], value=None if last is None else when.isoformat())
        users.append({**user, "key": key, "backend": backend, "role": (active, superuser, staff)})
    return catalogue, users


def test_me_and_has_perm_equal_django_for_a_random_world(site):
    rng = random.Random(f"{SEED}:test_shared_login:world:{site.backend}")
    catalogue, users = random_world(site, rng)
    logged_in, answers = 0, set()
    for u in users:
        where = (f"user {u['username']!r} (active, superuser, staff)={u['role']} backend={u['backend'].rsplit('.', 1)[1]} "
                 f"COMPAT_SEED={SEED}")
        want = site.django_get(u["key"], "/oracle/me")
        r = site.get("/api/v1/me", u["key"])
        assert r.status == want["status"], f"{where}: /api/v1/me {r.status}, Django {want['status']}: {r.text}"
        assert r.header("content-type", "").startswith("application/json"), r
        got = r.json()
        if r.status == 401:
            assert set(got) == {"error"}, got
            continue
        logged_in += 1
        want = json.loads(want["body"])
        got_expiry, want_expiry = got.pop("session_expiry"), want.pop("session_expiry")
        assert got == want, f"{where}: /api/v1/me differs from Django"
        delta = abs(datetime.fromisoformat(got_expiry) - datetime.fromisoformat(want_expiry))
        assert delta < timedelta(seconds=30), f"{where}: session_expiry {got_expiry} vs Django {want_expiry}"
        own = want["permissions"]
        asks = [[p] for p in rng.sample(catalogue, 2)] + [rng.sample(NONEXISTENT, 1)]
        for _ in range(3):
            asks.append([rng.choice(catalogue + NONEXISTENT) for _ in range(rng.randint(1, 6))])
        if own:  # what the user has, alone and mixed with what it may not have
            asks += [rng.sample(own, min(len(own), 3)), [rng.choice(own), rng.choice(catalogue + NONEXISTENT)]]
        for ask in asks:
            q = urllib.parse.urlencode([("perm", p) for p in ask])
            want = site.django_get(u["key"], "/oracle/has-perm?" + q)
            r = site.get("/api/v1/me/has-perm?" + q, u["key"])
            assert r.status == want["status"] == 200, f"{where}: {ask}: {r}"
            assert r.json() == json.loads(want["body"]), f"{where}: has-perm {ask}"
            if not u["role"][1]:
                answers.update(r.json()["perms"].values())
    # The world must exercise refused and accepted sessions, and both answers for users who
    # are not superusers.
    assert 0 < logged_in < len(users)
    assert answers == {True, False}


def test_has_perm_needs_a_perm(site):
    key = site.django_login(site.user("noperm"))
    for q in ("", "?other=auth.view_user", "?perms=auth.view_user"):
        r = site.get("/api/v1/me/has-perm" + q, key)
        assert r.status == 400 and set(r.json()) == {"error"}, (q, r)
    assert site.get("/api/v1/me/has-perm?perm=auth.view_user").status == 401


API_GET = ["/api/v1/me", "/api/v1/me/has-perm?perm=auth.view_user", "/api/v1/me/sessions"]


def assert_json(r, status, what):
    assert r.status == status, f"{what}: {r.status}, expected {status}: {r}"
    assert r.header("content-type", "").split(";")[0] == "application/json", f"{what}: not JSON: {r}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], f"{what}: {body}"


def test_api_errors_are_json(site):
    for path in API_GET:
        for key in (None, "x" * 32, "garbage;"):
            assert_json(site.get(path, key), 401, f"anonymous GET {path}")
    key = site.django_login(site.user("apierr"))
    for path in ("/api/", "/api/v1", "/api/v1/", "/api/v1/nope", "/api/v1/me/", "/api/v2/me",
                 "/api/v1/me/has-perm/x", "/api/v1/openapi.yaml", "/api/v1/ME"):
        for k in (None, key):
            assert_json(site.get(path, k), 404, f"GET {path}")
        assert_json(site.get(path, key, method="POST"), 404, f"POST {path}")
    for path in ("/api/v1/me", "/api/v1/me/has-perm", "/api/v1/openapi.json"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for k in (None, key):
                r = site.get(path, k, method=method)
                assert_json(r, 405, f"{method} {path}")


def test_api_405_names_the_allowed_methods(site):
    """RFC 9110 15.5.6: a 405 MUST carry Allow (Django's HttpResponseNotAllowed does)."""
    for path in ("/api/v1/me", "/api/v1/me/has-perm", "/api/v1/openapi.json"):
        r = site.get(path, method="POST")
        assert r.status == 405
        allow = {m.strip() for m in (r.header("allow") or "").split(",") if m.strip()}
        assert "GET" in allow, f"POST {path}: 405 without an Allow header naming GET: {r.headers}"


def test_api_get_resources_answer_head(site):
    """HEAD is GET without a body (RFC 9110 9.3.2; Django runs the GET view for HEAD)."""
    for path, anonymous in (("/api/v1/me", 401), ("/api/v1/openapi.json", 200)):
        get = site.get(path)
        head = site.get(path, method="HEAD")
        assert get.status == anonymous
        assert head.status == get.status, f"HEAD {path}: {head.status}, GET: {get.status}"


def test_api_disallowed_host_is_json(site):
    """README: "Everything under /api/ answers JSON" -- also the 400 for a Host that is not in
    ALLOWED_HOSTS (Django's status for DisallowedHost)."""
    for path in ("/api/v1/me", "/api/v1/openapi.json", "/api/v1/nope"):
        r = site.get(path, host="evil.example")
        assert_json(r, 400, f"GET {path} with Host: evil.example")


# ----------------------------------------------------------------------------------------
# 3. the OpenAPI document
# ----------------------------------------------------------------------------------------

# Every operation djauth serves under /api/v1 and /auth/verify (src/web/mod.rs), with a
# concrete path to show it is served; the OpenAPI document itself is not required to list
# its own URL.
SERVED = [
    ("get", "/api/v1/me", "/api/v1/me"),
    ("get", "/api/v1/me/has-perm", "/api/v1/me/has-perm?perm=auth.view_user"),
    ("get", "/api/v1/me/sessions", "/api/v1/me/sessions"),
    ("post", "/api/v1/me/sessions/end-others", "/api/v1/me/sessions/end-others"),
    ("get", "/api/v1/admin/users/{pk}/sessions", "/api/v1/admin/users/1/sessions"),
    ("delete", "/api/v1/admin/users/{pk}/sessions", "/api/v1/admin/users/1/sessions"),
    ("delete", "/api/v1/admin/users/{pk}/sessions/{id}", "/api/v1/admin/users/1/sessions/0123456789abcdef0123"),
    ("get", "/auth/verify", "/auth/verify"),
]


@pytest.fixture(scope="module")
def openapi(site):
    r = site.get("/api/v1/openapi.json")
    assert r.status == 200 and r.header("content-type", "").startswith("application/json"), r
    return r.json()


def test_openapi_is_valid_openapi_3(openapi):
    from openapi_spec_validator import validate

    assert str(openapi.get("openapi", "")).startswith("3."), openapi.get("openapi")
    assert openapi["info"]["title"] and openapi["info"]["version"]
    assert isinstance(openapi["paths"], dict) and openapi["paths"]
    validate(openapi)  # raises OpenAPIValidationError with the offending part


def test_openapi_lists_every_served_operation(site, openapi):
    served_not_listed = []
    for method, template, concrete in SERVED:
        r = site.get(concrete, method=method.upper())
        assert r.status not in (404, 405), f"{method.upper()} {concrete} is not served: {r}"
        if method not in openapi["paths"].get(template, {}):
            served_not_listed.append(f"{method.upper()} {template}")
    assert not served_not_listed, f"served but missing from /api/v1/openapi.json: {served_not_listed}"


def test_openapi_schemas_describe_the_answers(site, openapi):
    schemas = openapi["components"]["schemas"]
    key = site.django_login(site.user("schema", groups=[site.group("s")]))
    me = site.get("/api/v1/me", key).json()
    assert set(me) == set(schemas["Me"]["properties"]), "Me schema vs /api/v1/me keys"
    assert set(schemas["Me"].get("required", [])) <= set(me)
    hp = site.get("/api/v1/me/has-perm?perm=auth.view_user", key).json()
    assert set(hp) == set(schemas["HasPerm"]["properties"])
    assert set(site.get("/api/v1/me").json()) == set(schemas["ApiError"]["properties"])


# ----------------------------------------------------------------------------------------
# 4. the example app (djauth's extractors) against Django's decorators
# ----------------------------------------------------------------------------------------

PAGES = ["/", "/profile", "/users", "/staff"]


def example_sessions(site):
    """(label, session key or None) for every kind of visitor."""
    perms_group = site.group("changers", perms=["auth.change_user"])
    out = [("anonymous", None), ("unknown key", "k" * 32)]
    for label, fields, backend in [
        ("plain", {}, MODEL_BACKEND),
        ("direct perm", {"perms": ["auth.change_user"]}, MODEL_BACKEND),
        ("perm via group", {"groups": [perms_group]}, MODEL_BACKEND),
        ("staff", {"is_staff": True}, MODEL_BACKEND),
        ("superuser", {"is_superuser": True}, MODEL_BACKEND),
        ("inactive staff, AllowAll", {"is_staff": True, "is_active": False, "perms": ["auth.change_user"]}, ALLOW_ALL),
        ("inactive staff, ModelBackend", {"is_staff": True, "is_active": False}, MODEL_BACKEND),
    ]:
        user = site.user(label.split(",")[0].replace(" ", "-"), **fields)
        out.append((label, site.force_login(user, backend=backend)))
    user = site.user("via-djauth", is_staff=True)
    out.append(("logged in on djauth", site.djauth_login(user)))
    return out


def test_example_app_answers_like_djangos_decorators(site):
    for label, key in example_sessions(site):
        for page in PAGES:
            want = site.django_get(key, page)
            r = site.example_get(page, key)
            what = f"{label}: GET {page}: example {r.status} {r.header('location')}, Django {want['status']} {want['location']}"
            assert r.status == want["status"], what
            assert r.header("location") == want["location"], what
            if r.status == 200:
                if page == "/profile":
                    assert r.json() == json.loads(want["body"]), what
                else:
                    assert r.text == want["body"], what
            assert not r.set_cookies, f"{label}: the extractors never write the session: {r.set_cookies}"


def test_example_api_scope_answers_401_and_403(site):
    plain = site.user("api-plain")
    holder = site.user("api-holder", perms=["auth.change_user"])
    root = site.user("api-root", is_superuser=True)
    for key in (None, "k" * 32):
        for path in ("/api/profile", "/api/users"):
            r = site.example_get(path, key)
            assert_json(r, 401, f"anonymous {path}")
    key = site.django_login(plain)
    r = site.example_get("/api/profile", key)
    assert r.status == 200 and r.json() == {"id": plain["pk"], "username": plain["username"]}, r
    assert_json(site.example_get("/api/users", key), 403, "/api/users without auth.change_user")
    assert site.example_get("/users", key).status == 302, "Django's permission_required redirects by default"
    for user in (holder, root):
        key = site.djauth_login(user)
        r = site.example_get("/api/users", key)
        assert r.status == 200 and r.text == f"{user['username']} may change users.\n", r
        assert site.example_get("/users", key).status == 200


@pytest.mark.parametrize("query", ["a=1&b=x%20y", "q=caf%C3%A9&r=%2F+", "next=/x&e=", "x=|&y=^"])
def test_example_login_redirect_keeps_the_query_like_django(site, query):
    for page in ("/profile", "/users", "/staff"):
        want = site.django_get(None, f"{page}?{query}")
        r = site.example_get(f"{page}?{query}")
        assert (r.status, r.header("location")) == (want["status"], want["location"]), f"GET {page}?{query}"


def test_example_disallowed_host_is_400_like_django(site):
    key = site.django_login(site.user("host"))
    for page in ("/", "/profile", "/api/profile"):
        want = site.django_get(key, page, host="evil.example")
        assert want["status"] == 400
        r = site.example_get(page, key, host="evil.example")
        assert r.status == 400, f"GET {page} with Host: evil.example: {r.status} {r.text!r}, Django 400"


def test_example_refuses_the_session_after_logout_user(site):
    user = site.user("ex-leaver", is_staff=True, perms=["auth.change_user"])
    keys = [site.django_login(user), site.djauth_login(user)]
    for key in keys:
        assert site.example_get("/profile", key).status == 200
        assert site.example_get("/api/users", key).status == 200
    site.logout_user(user)
    for key in keys:
        r = site.example_get("/profile", key)
        assert r.status == 302 and r.header("location") == "/accounts/login/?next=/profile", r
        assert_json(site.example_get("/api/profile", key), 401, "/api/profile after logout-user")
        assert site.example_get("/", key).text == "Hello, anonymous.\n"

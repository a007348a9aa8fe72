"""djauth_django (django-app/, pip-installed into the venv by run.sh) in a real Django on a
database `djauth migrate` made: the user-to-session index, ending a user's sessions, and the
signed-cookie not_before check.

One site per backend (SQLite, PostgreSQL, MariaDB) for the whole module: a Django process
(django_side.py) whose settings install the app and its middleware, driving Django's test
Client / AsyncClient through the views of the generated module ``djapp_site`` (below).
Every test checks real rows of django_session / djauth_session_index and real responses.
"""

import importlib.util
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import django
import pytest
from django.core import signing

from dbfixtures import DjangoProject, TestDatabase, hashers, mariadb_server, pg_server  # noqa: F401  (fixtures)
from djcompat import INPROCESS

pytestmark = pytest.mark.skipif(INPROCESS, reason="needs the binary's migrate; reference_djauth.py has none")

HERE = Path(__file__).resolve().parent
APP_SOURCE = HERE.parent / "django-app" / "djauth_django"
MIDDLEWARE = "djauth_django.middleware.RevokedSessionMiddleware"
CHUNK = 500  # djauth_django.index.CHUNK: keys per DELETE

SETTINGS = {
    "INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                       "djauth_django"],
    "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware",
                   "django.contrib.auth.middleware.AuthenticationMiddleware", MIDDLEWARE],
    "ROOT_URLCONF": "djapp_site",
    "ALLOWED_HOSTS": ["testserver"],
    "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {"loaders": [
        ("django.template.loaders.locmem.Loader", {
            "registration/login.html": "{{ form.errors }}",
            "registration/logged_out.html": "logged out",
            "registration/password_change_form.html": "{{ form.errors }}",
            "registration/password_change_done.html": "changed",
        })]}}],
}

# The site's URLs, views and the operations the tests run in the Django process.  Cookie
# jars persist between calls; each call gets a fresh (Async)Client, under the session
# engine it names (SessionMiddleware picks its engine when a client first uses it).
SITE_MODULE = '''
import asyncio
from datetime import timedelta
from http.cookies import SimpleCookie
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import include, path

ENGINES = {"db": "django.contrib.sessions.backends.db",
           "signed_cookies": "django.contrib.sessions.backends.signed_cookies"}
JARS = {}


def _name(user):
    return user.get_username() if user.is_authenticated else "-"


def who(request):
    return HttpResponse(_name(request.user))


async def awho(request):
    return HttpResponse(_name(await request.auser() if hasattr(request, "auser") else request.user))


async def alogin_view(request):
    from django.contrib.auth import aauthenticate, alogin

    user = await aauthenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("refused", status=403)
    await alogin(request, user)
    return HttpResponse("logged in")


async def alogout_view(request):
    from django.contrib.auth import alogout

    await alogout(request)
    return HttpResponse("logged out")


urlpatterns = [
    path("who", who), path("awho", awho), path("alogin", alogin_view), path("alogout", alogout_view),
    path("accounts/", include("django.contrib.auth.urls")),
]


def op(name, engine="db", **kwargs):
    with override_settings(SESSION_ENGINE=ENGINES[engine]):
        return globals()["op_" + name](**kwargs)


def _result(client, response):
    cookie = settings.SESSION_COOKIE_NAME
    sent = response.cookies.get(cookie)
    return {
        "status": response.status_code,
        "body": response.content.decode(),
        "location": response.get("Location"),
        "session": client.cookies[cookie].value if cookie in client.cookies else None,
        "session_deleted": sent is not None and sent.value == "",
    }


def _client(jar, cls=Client):
    client = cls()
    client.cookies = JARS.setdefault(jar, SimpleCookie())
    return client


def _user(username):
    return get_user_model()._default_manager.get_by_natural_key(username)


def op_create_user(username, password):
    user = get_user_model()._default_manager.create_user(username=username, password=password)
    return user._meta.pk.value_to_string(user)


def op_request(jar, method, path, data=None, **meta):
    client = _client(jar)
    return _result(client, getattr(client, method)(path, data or {}, **meta))


def op_arequest(jar, method, path, data=None, user_agent=None):
    async def go():
        client = _client(jar, AsyncClient)
        headers = {"headers": {"user-agent": user_agent}} if user_agent else {}
        return _result(client, await getattr(client, method)(path, data or {}, **headers))

    return asyncio.run(go())


def op_save_user(username, password=None, update_fields=None, **fields):
    user = _user(username)
    if password is not None:
        user.set_password(password)
    for k, v in fields.items():
        setattr(user, k, v)
    user.save(update_fields=update_fields)


def op_set_cookie(jar, value):
    JARS.setdefault(jar, SimpleCookie())[settings.SESSION_COOKIE_NAME] = value


def op_touch_last_login(username):
    from django.utils import timezone

    user = _user(username)
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])


def op_delete_user(username):
    _user(username).delete()


def op_send_logged_out(jar, username):
    """user_logged_out alone, no flush: only the receiver can drop the index row."""
    from django.contrib.auth.signals import user_logged_out

    request = RequestFactory().get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(JARS[jar][settings.SESSION_COOKIE_NAME].value)
    request.user = _user(username)
    user_logged_out.send(sender=type(request.user), request=request, user=request.user)


def op_count_queries(jar, path, with_middleware):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    middleware = [m for m in settings.MIDDLEWARE if with_middleware or m != "%(middleware)s"]
    with override_settings(MIDDLEWARE=middleware), CaptureQueriesContext(connection) as queries:
        result = op_request(jar, "get", path)
    return {"queries": [q["sql"] for q in queries.captured_queries], **result}


def op_bulk_sessions(username, n):
    """n db sessions of the user, written in bulk and indexed by SQL (as djauth's catch-up would)."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    user = _user(username)
    uid = user._meta.pk.value_to_string(user)
    data = SessionStore().encode({"_auth_user_id": uid})
    keys = [get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n)]
    expire = timezone.now() + timedelta(days=1)
    Session.objects.bulk_create([Session(session_key=k, session_data=data, expire_date=expire) for k in keys], batch_size=250)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO djauth_session_index (session_key, user_id, created, last_seen) "
                           "VALUES (%%s, %%s, %%s, %%s)", [(k, uid, now, now) for k in keys])
    return keys
''' % {"middleware": MIDDLEWARE}


# ----------------------------------------------------------------------------------------
# the installed package and the site
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def installed_app():
    """The venv's djauth_django (what the Django side imports) is this checkout's."""
    spec = importlib.util.find_spec("djauth_django")
    hint = "install it: <venv>/bin/python -m pip install --no-deps --force-reinstall ./django-app (run.sh does)"
    if spec is None:
        pytest.fail(f"djauth_django is not installed in this venv; {hint}", pytrace=False)
    installed = Path(spec.origin).resolve().parent
    assert installed != APP_SOURCE.resolve(), "imported from the work tree, not the installed package"
    ours = {p.name: p.read_bytes() for p in APP_SOURCE.glob("*.py")}
    theirs = {p.name: p.read_bytes() for p in installed.glob("*.py")}
    if ours != theirs:
        differ = sorted(n for n in set(ours) | set(theirs) if ours.get(n) != theirs.get(n))
        pytest.fail(f"{installed} is not django-app/ ({', '.join(differ)} differ); {hint}", pytrace=False)
    return installed


class Site:
    """One backend's Django process; cookie jars are named per test (``jar`` arguments)."""

    def __init__(self, backend, project, prefix=""):
        self.backend = backend
        self.project = project
        self.prefix = prefix

    def for_test(self):
        return Site(self.backend, self.project, prefix=uuid.uuid4().hex[:8] + "/")

    def op(self, name, **kwargs):
        if "jar" in kwargs:
            kwargs["jar"] = self.prefix + kwargs["jar"]
        return self.project.call("exec", code="import djapp_site\nresult = djapp_site.op(**args)",
                                 args={"name": name, **kwargs})

    def sql(self, query, params=()):
        return self.project.call("sql", query=query, params=list(params))

    def index_rows(self, user_id):
        return self.sql("SELECT session_key, user_id, created, last_seen, ip, user_agent "
                        "FROM djauth_session_index WHERE user_id = %s ORDER BY session_key", [user_id])

    def index_keys(self, user_id):
        return {r[0] for r in self.index_rows(user_id)}

    def sessions(self, keys):
        """Which of ``keys`` still have a django_session row."""
        keys = list(keys)
        found = set()
        for i in range(0, len(keys), 200):
            chunk = keys[i:i + 200]
            rows = self.sql("SELECT session_key FROM django_session WHERE session_key IN (%s)"
                            % ", ".join(["%s"] * len(chunk)), chunk)
            found |= {r[0] for r in rows}
        return found

    def set_not_before(self, user_id, second):
        self.sql("DELETE FROM djauth_user_not_before WHERE user_id = %s", [user_id])
        self.sql("INSERT INTO djauth_user_not_before (user_id, not_before) VALUES (%s, %s)", [user_id, second])

    def user(self, tag, password="pw-" + uuid.uuid4().hex):
        name = f"{tag}-{uuid.uuid4().hex[:8]}"
        return name, password, self.op("create_user", username=name, password=password)

    def login(self, jar, username, password, engine="db", **meta):
        r = self.op("request", jar=jar, method="post", path="/accounts/login/", engine=engine,
                    data={"username": username, "password": password}, **meta)
        assert r["status"] == 302, f"login of {username} failed: {r}"
        assert r["session"], r
        return r["session"]

    def who(self, jar, engine="db", asynchronous=False):
        if asynchronous:
            return self.op("arequest", jar=jar, method="get", path="/awho", engine=engine)
        return self.op("request", jar=jar, method="get", path="/who", engine=engine)


@pytest.fixture(scope="module", params=["sqlite", "postgres", "mysql"])
def backend_site(request, tmp_path_factory):
    backend = request.param
    root = tmp_path_factory.mktemp(f"djapp-{backend}")
    if backend == "sqlite":
        db = TestDatabase("sqlite", "djapp", path=root / "db.sqlite3")
    else:
        server = request.getfixturevalue("pg_server" if backend == "postgres" else "mariadb_server")
        name = f"djapp_{uuid.uuid4().hex[:12]}"
        server.create_database(name)
        db = TestDatabase(backend, name, server=server)
    project = DjangoProject(root / "project", {"default": db}, hashers_list=hashers("MD5PasswordHasher"),
                            extra_settings=SETTINGS)
    (project.root / "djapp_site.py").write_text(SITE_MODULE)
    try:
        migrated = project.djauth("migrate")
        assert migrated.rc == 0, f"{project.describe(['migrate'])}\n{migrated}"
        project.start()
        tables = set(project.call("tables"))
        assert {"django_session", "djauth_session_index", "djauth_session_queue", "djauth_user_not_before"} <= tables, (
            f"djauth migrate did not create djauth's session tables (a binary older than migration "
            f"2026-11-24-000002_session_queue?): {sorted(t for t in tables if t.startswith('djauth'))}")
        yield Site(backend, project)
    finally:
        project.close()
        db.drop()


@pytest.fixture
def site(backend_site):
    return backend_site.for_test()


def _utc(text):
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _async_auth():
    if django.VERSION < (5, 0):
        pytest.skip("alogin / alogout / auser are Django >= 5.0")


# ----------------------------------------------------------------------------------------
# the index
# ----------------------------------------------------------------------------------------

def test_login_records_the_session(site):
    name, password, pk = site.user("login")
    agent = "Mozilla/5.0 (X11; Linux x86_64) djauth-test \u00e9 " + "x" * 600
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    key = site.login("a", name, password, REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=agent)
    rows = site.index_rows(pk)
    assert [r[:2] for r in rows] == [[key, pk]], rows
    _, _, created, last_seen, ip, user_agent = rows[0]
    assert ip == "203.0.113.7"
    assert user_agent == agent[:512]
    after = datetime.now(timezone.utc) + timedelta(seconds=5)
    # UTC although the site's TIME_ZONE (and the process TZ) is America/Chicago
    assert before <= _utc(created) <= after and _utc(last_seen) == _utc(created), rows
    assert site.sessions([key]) == {key}

    # The same user logging in again on the same session keeps the key: the row is updated
    # (device and last_seen), not duplicated; created stays.
    time.sleep(0.01)
    again = site.login("a", name, password, REMOTE_ADDR="2001:db8::1", HTTP_USER_AGENT="second browser")
    assert again == key
    rows2 = site.index_rows(pk)
    assert len(rows2) == 1 and rows2[0][4:] == ["2001:db8::1", "second browser"], rows2
    assert _utc(rows2[0][2]) == _utc(created) and _utc(rows2[0][3]) > _utc(created), rows2

    # A second browser is a second row; a failed login writes nothing.
    other = site.login("b", name, password)
    assert site.index_keys(pk) == {key, other}
    r = site.op("request", jar="c", method="post", path="/accounts/login/", data={"username": name, "password": "wrong"})
    assert r["status"] == 200 and r["session"] is None
    assert site.index_keys(pk) == {key, other}


def test_async_login_and_logout(site):
    _async_auth()
    name, password, pk = site.user("alogin")
    r = site.op("arequest", jar="async", method="post", path="/alogin",
                data={"username": name, "password": password}, user_agent="async agent/1.0")
    assert r["status"] == 200 and r["body"] == "logged in", r
    key = r["session"]
    rows = site.index_rows(pk)
    assert [r[0] for r in rows] == [key] and rows[0][4:] == ["127.0.0.1", "async agent/1.0"], rows
    assert site.who("async", asynchronous=True)["body"] == name
    r = site.op("arequest", jar="async", method="post", path="/alogout")
    assert r["body"] == "logged out"
    assert site.index_rows(pk) == [] and site.sessions([key]) == set()


def test_logout_forgets_the_session(site):
    name, password, pk = site.user("logout")
    key = site.login("a", name, password)
    kept = site.login("b", name, password)
    r = site.op("request", jar="a", method="post", path="/accounts/logout/")
    assert r["status"] == 200 and r["body"] == "logged out" and r["session_deleted"], r
    assert site.index_keys(pk) == {kept}
    assert site.sessions([key, kept]) == {kept}
    # The receiver itself (above, the row's delete trigger would have done it too): the
    # signal alone drops the index row and leaves the session row to Django.
    site.op("send_logged_out", jar="b", username=name)
    assert site.index_keys(pk) == set()
    assert site.sessions([kept]) == {kept}


# ----------------------------------------------------------------------------------------
# ending a user's sessions
# ----------------------------------------------------------------------------------------

def test_password_change_ends_the_other_sessions_and_keeps_the_changer(site):
    name, password, pk = site.user("change")
    other_name, other_password, other_pk = site.user("bystander")
    changer = site.login("changer", name, password)
    elsewhere = site.login("elsewhere", name, password)
    bystander = site.login("bystander", other_name, other_password)

    r = site.op("request", jar="changer", method="post", path="/accounts/password_change/",
                data={"old_password": password, "new_password1": "new-pw-x7", "new_password2": "new-pw-x7"})
    assert r["status"] == 302 and r["location"] == "/accounts/password_change/done/", r
    new_key = r["session"]
    assert new_key and new_key != changer, "update_session_auth_hash cycles the key"
    # Every session the index knew is gone; the changer's new one was made afterwards.
    assert site.sessions([changer, elsewhere, new_key]) == {new_key}
    assert site.index_keys(pk) == set()
    r = site.op("request", jar="changer", method="get", path="/accounts/password_change/done/")
    assert r["status"] == 200 and r["body"] == "changed", r
    assert site.who("changer")["body"] == name
    assert site.who("elsewhere")["body"] == "-"
    assert site.sessions([bystander]) == {bystander} and site.index_keys(other_pk) == {bystander}


def test_saves_that_change_neither_password_nor_is_active_end_nothing(site):
    name, password, pk = site.user("keep")
    keys = {site.login("a", name, password), site.login("b", name, password)}
    site.op("save_user", username=name, email="keep@example.com", first_name="K")
    site.op("save_user", username=name, is_active=True)
    site.op("touch_last_login", username=name)
    site.op("save_user", username=name, password="another-pw", update_fields=["email"])  # not saved
    assert site.sessions(keys) == keys and site.index_keys(pk) == keys


def test_deactivation_ends_every_session(site):
    name, password, pk = site.user("deactivate")
    other_name, other_password, other_pk = site.user("bystander")
    keys = {site.login("a", name, password), site.login("b", name, password)}
    bystander = site.login("c", other_name, other_password)
    site.op("save_user", username=name, is_active=False)
    assert site.sessions(keys) == set() and site.index_keys(pk) == set()
    assert site.sessions([bystander]) == {bystander} and site.index_keys(other_pk) == {bystander}
    # Reactivating ends nothing (there is nothing left, and a new login stays).
    site.op("save_user", username=name, is_active=True)
    key = site.login("a", name, password)
    site.op("save_user", username=name, is_active=True)
    assert site.sessions([key]) == {key}


def test_deletion_ends_every_session(site):
    name, password, pk = site.user("delete")
    other_name, other_password, other_pk = site.user("bystander")
    keys = {site.login("a", name, password), site.login("b", name, password)}
    bystander = site.login("c", other_name, other_password)
    site.op("delete_user", username=name)
    assert site.sessions(keys) == set() and site.index_keys(pk) == set()
    assert site.sessions([bystander]) == {bystander} and site.index_keys(other_pk) == {bystander}


def test_many_sessions_are_ended_in_chunks(site):
    name, password, pk = site.user("many")
    keys = set(site.op("bulk_sessions", username=name, n=CHUNK + 13))
    keys.add(site.login("a", name, password))
    assert len(site.index_keys(pk)) == CHUNK + 14
    site.op("save_user", username=name, password="changed-pw")
    assert site.sessions(keys) == set() and site.index_keys(pk) == set()


# ----------------------------------------------------------------------------------------
# RevokedSessionMiddleware
# ----------------------------------------------------------------------------------------

def _signed_at(cookie):
    return signing.b62_decode(cookie.rsplit(":", 2)[1])


def test_signed_cookie_refused_at_or_before_not_before(site):
    engine = "signed_cookies"
    name, password, pk = site.user("signed")
    cookie = site.login("s", name, password, engine=engine)
    signed_at = _signed_at(cookie)
    assert abs(signed_at - time.time()) < 60
    assert site.index_rows(pk) == [], "signed-cookie sessions are not indexed"
    assert site.who("s", engine)["body"] == name, "no not_before row: accepted"
    site.set_not_before(pk, signed_at - 1)
    assert site.who("s", engine)["body"] == name, "signed after not_before: accepted"
    assert site.who("s", engine, asynchronous=True)["body"] == name

    site.set_not_before(pk, signed_at)
    site.op("set_cookie", jar="async", value=cookie)
    r = site.who("async", engine, asynchronous=True)  # the middleware's async path
    assert r["body"] == "-" and r["session_deleted"], r
    r = site.who("s", engine)
    assert r["body"] == "-" and r["session_deleted"], r
    assert site.who("s", engine)["body"] == "-", "the cookie is gone from the jar"

    # A session signed after that second is accepted, refused once not_before reaches it.
    while int(time.time()) <= signed_at:
        time.sleep(0.05)
    later = site.login("s", name, password, engine=engine)
    assert _signed_at(later) > signed_at
    assert site.who("s", engine)["body"] == name
    site.set_not_before(pk, _signed_at(later) + 10)
    assert site.who("s", engine)["body"] == "-"


def test_middleware_refuses_only_its_user(site):
    engine = "signed_cookies"
    name, password, pk = site.user("revoked")
    other_name, other_password, other_pk = site.user("fine")
    site.login("r", name, password, engine=engine)
    site.login("f", other_name, other_password, engine=engine)
    site.set_not_before(pk, int(time.time()) + 3600)
    assert site.who("r", engine)["body"] == "-"
    assert site.who("f", engine)["body"] == other_name


def test_middleware_with_db_sessions_makes_no_query_and_refuses_nothing(site):
    name, password, pk = site.user("dbmw")
    key = site.login("d", name, password)
    site.set_not_before(pk, int(time.time()) + 3600)  # only for signed cookies
    with_mw = site.op("count_queries", jar="d", path="/who", with_middleware=True)
    without = site.op("count_queries", jar="d", path="/who", with_middleware=False)
    assert with_mw["body"] == without["body"] == name
    assert len(with_mw["queries"]) == len(without["queries"]), with_mw["queries"]
    assert not any("djauth" in q for q in with_mw["queries"])
    assert site.sessions([key]) == {key}
    if django.VERSION >= (5, 0):  # asynchronously (request.auser())
        assert site.who("d", asynchronous=True)["body"] == name

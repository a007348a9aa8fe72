"""Fixtures and helpers for the database tests (test_database.py).

* ``pg_server`` / ``mariadb_server``: one throw-away server (dbservers.py) per importing
  module, started on first use (see SERVER_SCOPE).  Missing server software skips on a
  developer machine and *fails* under CI (``CI`` set) or with ``DJAUTH_REQUIRE_DBSERVERS=1``.
* ``backend``: parametrised over sqlite / postgres / mysql; ``backend.new_database()`` makes a
  fresh, empty database (dropped at teardown) as a :class:`TestDatabase`.
* ``django_project``: factory for :class:`DjangoProject`, a real Django in its own process
  (django_side.py) with its own settings module pointing at the test's database(s); its
  ``djauth()`` runs the binary with the matching ``DATABASE_URL`` and ``DJAUTH_*`` settings.

Import the fixtures into a test module with ``from dbfixtures import *``.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dbservers
import djcompat

HERE = Path(__file__).resolve().parent
DJANGO_SIDE = HERE / "django_side.py"
REQUIRED = bool(os.environ.get("CI")) or os.environ.get("DJAUTH_REQUIRE_DBSERVERS") == "1"
BACKENDS = ["sqlite", "postgres", "mysql"]

__all__ = [
    "pg_server",
    "mariadb_server",
    "backend",
    "django_project",
    "BACKENDS",
    "TestDatabase",
    "DjangoProject",
    "HASHER",
    "hashers",
    "schema_by_table",
    "assert_same_schema",
    "is_djauth_table",
    "run_djauth",
    "ACCOUNTS_MODELS",
    "ACCOUNTS_TABLE",
]

HASHER = "django.contrib.auth.hashers."


def hashers(*names):
    return [HASHER + n for n in names]


# ----------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------

# One server per backend for the module that imports these fixtures -- which, with one such
# module (test_database.py), is one per test session.  Not scope="session": the servers would
# then outlive the module and test_dbservers.py, which runs later, asserts that
# dbservers._running is empty after its own server stopped.
SERVER_SCOPE = "module"

def _start(cm_factory, available, packages, what):
    if not available():
        msg = f"{what} not installed: apt-get install -y {packages}"
        if REQUIRED:
            pytest.fail(msg + " (required: CI / DJAUTH_REQUIRE_DBSERVERS=1)", pytrace=False)
        pytest.skip(msg)
    cm = cm_factory()
    try:
        srv = cm.__enter__()
    except dbservers.ServerUnavailable as e:
        if REQUIRED:
            pytest.fail(f"{what} could not start: {e}", pytrace=False)
        pytest.skip(f"{what} could not start: {e}")
    return cm, srv


@pytest.fixture(scope=SERVER_SCOPE)
def pg_server():
    cm, srv = _start(dbservers.postgres_server, dbservers.postgres_available, dbservers.PG_APT_PACKAGES, "PostgreSQL")
    try:
        yield srv
    finally:
        _drain_drops()
        cm.__exit__(None, None, None)


@pytest.fixture(scope=SERVER_SCOPE)
def mariadb_server():
    cm, srv = _start(dbservers.mariadb_server, dbservers.mariadb_available, dbservers.MARIADB_APT_PACKAGES, "MariaDB")
    try:
        yield srv
    finally:
        _drain_drops()
        cm.__exit__(None, None, None)


# ----------------------------------------------------------------------------------------
# databases
# ----------------------------------------------------------------------------------------

_counter = itertools.count(1)


def is_djauth_table(name: str) -> bool:
    return name.startswith("djauth_") or name == "__diesel_schema_migrations"


class TestDatabase:
    """One fresh database on one backend."""

    __test__ = False  # not a pytest test class

    def __init__(self, backend: str, name: str, *, server=None, path: Path | None = None):
        self.backend = backend
        self.name = name
        self.server = server
        self.path = path

    def __repr__(self):
        return f"<{self.backend} database {self.name}>"

    @property
    def url(self) -> str:
        """DATABASE_URL for djauth."""
        if self.backend == "sqlite":
            return f"sqlite://{self.path}"  # path is absolute: sqlite:///abs/path
        return self.server.url_for(self.name)

    @property
    def django(self) -> dict:
        """Django's DATABASES entry."""
        if self.backend == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.path)}
        return self.server.django_database(self.name)

    def schema_text(self) -> str:
        if self.backend == "sqlite":
            if not self.path.exists():
                return ""
            return dbservers.sqlite_schema(self.path)
        if self.backend == "postgres":
            return dbservers.postgres_schema(self.server.url, self.name)
        return dbservers.mysql_schema(self.server.url, self.name)

    def schema(self) -> dict:
        """{table: [DDL statements]} (see schema_by_table)."""
        if self.backend == "sqlite":
            return _sqlite_schema_by_table(self.path)
        return schema_by_table(self.backend, self.schema_text())

    def sequences(self) -> dict:
        """Where each table's id counter stands (the next id an insert gets depends on it):
        sqlite_sequence, pg_sequences.last_value, information_schema AUTO_INCREMENT."""
        if self.backend == "sqlite":
            import sqlite3

            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return {n: s for n, s in con.execute("SELECT name, seq FROM sqlite_sequence")}
            except sqlite3.OperationalError:  # no AUTOINCREMENT table yet
                return {}
            finally:
                con.close()
        if self.backend == "postgres":
            out = self.server.psql(
                "SELECT sequencename || '=' || coalesce(last_value::text, 'unused') FROM pg_sequences "
                "WHERE schemaname = 'public' ORDER BY 1", self.name)
            return dict(line.split("=", 1) for line in out.split())
        rows = self.server.query(
            "SELECT table_name, coalesce(auto_increment, 'none') FROM information_schema.tables "
            f"WHERE table_schema = '{self.name}' ORDER BY 1", self.name)
        return {t: v for t, v in rows}

    def drop(self):
        if self.backend == "sqlite":
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        else:
            self.server.drop_database(self.name)


def _sqlite_schema_by_table(path) -> dict:
    """dbservers.sqlite_schema's entries ("<type> <name> ON <table>" + exact SQL), by table."""
    import sqlite3

    if not Path(path).exists():
        return {}
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        con.close()
    rows.sort(key=lambda r: (r[2], r[0] != "table", r[1]))
    tables: dict[str, list[str]] = {}
    for typ, name, tbl, sql in rows:
        tables.setdefault(tbl, []).append(f"{typ} {name} ON {tbl}\n    {sql if sql is not None else '(implicit)'}")
    return tables


def schema_by_table(backend: str, text: str) -> dict:
    """Split a dbservers.postgres_schema / mysql_schema text into {table: [statements in
    dump order]} (SQLite: _sqlite_schema_by_table reads the file)."""
    tables: dict[str, list[str]] = {}
    if backend == "mysql":
        for stmt in re.split(r";\n(?=CREATE TABLE|\Z)", text.strip() + "\n"):
            stmt = stmt.strip()
            if not stmt:
                continue
            m = re.match(r"CREATE TABLE `([^`]+)`", stmt)
            tables.setdefault(m.group(1), []).append(stmt.rstrip(";"))
        return tables
    # postgres: statements end with ";" at the end of a line; owner = first "public.<name>"
    stmt: list[str] = []
    for line in text.splitlines():
        stmt.append(line)
        # A function body ($$ … $$) has its own ";"-terminated lines: end only outside it.
        if line.rstrip().endswith(";") and "\n".join(stmt).count("$$") % 2 == 0:
            s = "\n".join(stmt)
            stmt = []
            m = re.search(r"\bpublic\.\"?(\w+)", s)
            owner = m.group(1) if m else "(schema)"
            tables.setdefault(owner, []).append(s)
    if stmt:
        tables.setdefault("(trailing)", []).append("\n".join(stmt))
    return tables


def django_tables_only(schema: dict, backend: str) -> dict:
    out = {}
    for table, stmts in schema.items():
        if is_djauth_table(table):
            continue
        kept = [s for s in stmts if not re.search(r"\b(djauth_\w+|__diesel_schema_migrations)\b", s)]
        if kept:
            out[table] = kept
    return out


def _render(schema: dict) -> list[str]:
    out = []
    for t in sorted(schema):
        out.append(f"== {t}")
        for s in schema[t]:
            out.extend(s.splitlines())
    return out


def assert_same_schema(expected: dict, actual: dict, backend: str, what: str, *, django_only=True):
    if django_only:
        expected = django_tables_only(expected, backend)
        actual = django_tables_only(actual, backend)
    if expected != actual:
        diff = "\n".join(
            difflib.unified_diff(_render(expected), _render(actual), "expected", "actual", lineterm="", n=2)
        )
        pytest.fail(f"{backend}: {what}: schemas differ\n{diff}", pytrace=False)


class BackendFactory:
    """Makes fresh databases on one backend; drops them at teardown."""

    def __init__(self, name: str, request, tmp_path: Path):
        self.name = name
        self._request = request
        self._tmp = tmp_path
        self._made: list[TestDatabase] = []
        self.server = None
        if name == "postgres":
            self.server = request.getfixturevalue("pg_server")
        elif name == "mysql":
            self.server = request.getfixturevalue("mariadb_server")

    def __repr__(self):
        return self.name

    def __str__(self):
        return self.name

    def new_database(self, tag: str = "db") -> TestDatabase:
        n = next(_counter)
        name = f"t{os.getpid()}_{n}_{re.sub(r'[^a-z0-9_]', '_', tag.lower())}"[:60]
        if self.name == "sqlite":
            db = TestDatabase("sqlite", name, path=self._tmp / f"{name}.sqlite3")
        else:
            self.server.create_database(name)
            db = TestDatabase(self.name, name, server=self.server)
        self._made.append(db)
        return db

    def cleanup(self):
        for db in self._made:
            _DROPS.append(_DROPPER.submit(_drop_quietly, db))


def _drop_quietly(db):
    try:
        db.drop()
    except Exception:  # noqa: BLE001  (throw-away server: best effort)
        pass


# Databases are dropped in the background (a MariaDB DROP DATABASE takes ~0.3 s); the server
# fixtures wait for the pending drops before they stop their server.
_DROPPER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbfixtures-drop")
_DROPS: list = []


def _drain_drops():
    while _DROPS:
        _DROPS.pop().result()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    f = BackendFactory(request.param, request, tmp_path)
    try:
        yield f
    finally:
        f.cleanup()


# ----------------------------------------------------------------------------------------
# Django in its own process
# ----------------------------------------------------------------------------------------

def _django_version():
    import django

    return "%d.%d" % django.VERSION[:2]


def run_djauth(*args, stdin=None, env=None, timeout=60):
    """Run the djauth binary with only ``env``'s DJAUTH_* settings (none inherited) and
    djcompat's process TZ; a panic fails the test.  Returns a djcompat.DjauthResult."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_") and k != "DATABASE_URL"}
    full["TZ"] = djcompat.DJAUTH_PROCESS_TZ
    full["DJAUTH_DJANGO_VERSION"] = _django_version()
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    proc = subprocess.run([str(djcompat.DJAUTH_BIN), *map(str, args)], input=stdin or b"",
                          capture_output=True, env=full, timeout=timeout)
    res = djcompat.DjauthResult(proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                                proc.stderr.decode("utf-8", "replace"))
    assert "panicked at" not in res.stderr, f"djauth {' '.join(map(str, args))} panicked: {res}"
    return res


class DjangoSideError(AssertionError):
    pass


ACCOUNTS_MODELS = {
    # (a) email is USERNAME_FIELD, username removed, UUID primary key
    "email_uuid": textwrap.dedent(
        '''
        import uuid

        from django.contrib.auth.models import AbstractUser, BaseUserManager
        from django.db import models


        class UserManager(BaseUserManager):
            use_in_migrations = True

            def _create_user(self, email, password, **extra_fields):
                if not email:
                    raise ValueError("email is required")
                user = self.model(email=self.normalize_email(email), **extra_fields)
                user.set_password(password)
                user.save(using=self._db)
                return user

            def create_user(self, email, password=None, **extra_fields):
                extra_fields.setdefault("is_staff", False)
                extra_fields.setdefault("is_superuser", False)
                return self._create_user(email, password, **extra_fields)

            def create_superuser(self, email, password=None, **extra_fields):
                extra_fields.setdefault("is_staff", True)
                extra_fields.setdefault("is_superuser", True)
                return self._create_user(email, password, **extra_fields)


        class User(AbstractUser):
            id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
            username = None
            email = models.EmailField("email address", unique=True)

            USERNAME_FIELD = "email"
            EMAIL_FIELD = "email"
            REQUIRED_FIELDS = []

            objects = UserManager()
        '''
    ),
    # (b) AbstractUser with an explicit BigAutoField primary key
    "bigauto": textwrap.dedent(
        '''
        from django.contrib.auth.models import AbstractUser
        from django.db import models


        class User(AbstractUser):
            id = models.BigAutoField(primary_key=True)
        '''
    ),
    # (c) the default AbstractUser in a table of its own name (AUTH_USER_TABLE)
    "db_table": textwrap.dedent(
        '''
        from django.contrib.auth.models import AbstractUser


        class User(AbstractUser):
            class Meta:
                db_table = "people"
        '''
    ),
}
ACCOUNTS_TABLE = {"email_uuid": "accounts_user", "bigauto": "accounts_user", "db_table": "people"}


class DjangoProject:
    """A Django project directory (settings module + apps) and a django_side.py process."""

    def __init__(self, root: Path, databases: dict, *, hashers_list=None, auto_field="django.db.models.AutoField",
                 user_model=None, use_tz=True, time_zone="America/Chicago", extra_settings=None):
        self.root = root
        self.databases = databases  # alias -> TestDatabase
        self.hashers = list(hashers_list or hashers("MD5PasswordHasher", "PBKDF2PasswordHasher"))
        self.auto_field = auto_field
        self.user_model = user_model  # None | a key of ACCOUNTS_MODELS
        self.use_tz = use_tz
        self.time_zone = time_zone
        self.secret_key = "djauth-db-tests-" + secrets.token_hex(16)
        self.extra_settings = dict(extra_settings or {})
        self.proc: subprocess.Popen | None = None
        self._write()

    @property
    def db(self) -> TestDatabase:
        return self.databases["default"]

    # -- files ------------------------------------------------------------------------
    def _write(self):
        self.root.mkdir(parents=True, exist_ok=True)
        apps = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
        settings = {
            "SECRET_KEY": self.secret_key,
            "DEBUG": False,
            "USE_TZ": self.use_tz,
            "TIME_ZONE": self.time_zone,
            "INSTALLED_APPS": apps + (["accounts"] if self.user_model else []),
            "DATABASES": {alias: db.django for alias, db in self.databases.items()},
            "PASSWORD_HASHERS": self.hashers,
            "DEFAULT_AUTO_FIELD": self.auto_field,
            "SESSION_ENGINE": "django.contrib.sessions.backends.db",
            "MIDDLEWARE": [],
            "TEMPLATES": [],
            "ROOT_URLCONF": None,
            "SILENCED_SYSTEM_CHECKS": ["fields.W342"],
        }
        if self.user_model:
            settings["AUTH_USER_MODEL"] = "accounts.User"
        settings.update(self.extra_settings)
        text = "# written by compat-tests/dbfixtures.py\n" + "".join(
            f"{k} = {v!r}\n" for k, v in settings.items()
        )
        (self.root / "djside_settings.py").write_text(text)
        if self.user_model:
            app = self.root / "accounts"
            (app / "migrations").mkdir(parents=True, exist_ok=True)
            (app / "__init__.py").write_text("")
            (app / "migrations" / "__init__.py").write_text("")
            (app / "models.py").write_text(ACCOUNTS_MODELS[self.user_model])

    # -- process ----------------------------------------------------------------------
    def start(self):
        if self.proc is not None:
            return self
        self.proc = subprocess.Popen(
            [sys.executable, str(DJANGO_SIDE), str(self.root), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.root / "django_side.stderr", "ab"),
            text=True,
            encoding="utf-8",
            cwd=self.root,
            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        )
        first = self._read()
        if not first.get("ok"):
            raise DjangoSideError(f"django_side.py did not start: {first.get('error')}\n{first.get('traceback', '')}")
        return self

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            err = (self.root / "django_side.stderr").read_text(errors="replace")[-3000:]
            raise DjangoSideError(f"django_side.py exited (rc={self.proc.poll()}):\n{err}")
        return json.loads(line)

    def call(self, op, **kwargs):
        """Run one django_side.py operation; its result, or DjangoSideError with the traceback."""
        self.start()
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        ans = self._read()
        if not ans["ok"]:
            raise DjangoSideError(f"Django side: {op}({kwargs!r}) failed: {ans['error']}\n{ans.get('traceback', '')}")
        return ans["result"]

    def manage(self, *args, **kwargs):
        """call_command(*args): {"rc", "stdout", "stderr"}."""
        return self.call("call_command", args=list(args), kwargs=kwargs)

    def migrate(self, database="default"):
        if self.user_model:
            r = self.manage("makemigrations", "accounts", verbosity=0)
            assert r["rc"] == 0, r
        r = self.manage("migrate", database=database, verbosity=1)
        assert r["rc"] == 0, r
        return r

    def close(self):
        p, self.proc = self.proc, None
        if p is None:
            return
        # nothing to flush or commit (autocommit, answers already read): no need to wait
        # for the interpreter's orderly exit
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass

    # -- djauth with matching settings --------------------------------------------------
    def djauth_env(self, alias="default") -> dict:
        env = {
            "DATABASE_URL": self.databases[alias].url,
            "DJAUTH_SECRET_KEY": self.secret_key,
            "DJAUTH_SECRET_KEY_FALLBACKS": "",
            "DJAUTH_PASSWORD_HASHERS": ",".join(self.hashers),
            "DJAUTH_DEFAULT_AUTO_FIELD": self.auto_field,
            "DJAUTH_USE_TZ": "true" if self.use_tz else "false",
            "DJAUTH_TIME_ZONE": self.time_zone,
            "DJAUTH_SESSION_ENGINE": "django.contrib.sessions.backends.db",
            "DJAUTH_AUTH_USER_MODEL": "accounts.User" if self.user_model else "auth.User",
        }
        if self.user_model == "db_table":
            env["DJAUTH_AUTH_USER_TABLE"] = "people"
        if self.user_model == "email_uuid":
            env["DJAUTH_USERNAME_FIELD"] = "email"
            env["DJAUTH_EMAIL_FIELD"] = "email"
        return env

    def djauth(self, *args, stdin=None, env=None, alias="default", timeout=60):
        full = self.djauth_env(alias)
        full.update(env or {})
        return run_djauth(*args, stdin=stdin, env=full, timeout=timeout)

    def describe(self, args, env=None, alias="default"):
        """The command and its environment (SECRET_KEY left out), for failure messages."""
        full = self.djauth_env(alias)
        full.update(env or {})
        shown = " ".join(f"{k}={v}" for k, v in sorted(full.items()) if v is not None and k != "DJAUTH_SECRET_KEY")
        return f"env {shown} djauth {' '.join(map(str, args))}"


@pytest.fixture
def django_project(tmp_path):
    """Factory: django_project(databases_or_db, **settings) -> started DjangoProject."""
    made: list[DjangoProject] = []

    def make(databases, **kwargs):
        if isinstance(databases, TestDatabase):
            databases = {"default": databases}
        root = tmp_path / f"project{len(made) + 1}"
        p = DjangoProject(root, databases, **kwargs)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.close()

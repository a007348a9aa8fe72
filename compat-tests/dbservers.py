"""Throw-away PostgreSQL and MariaDB servers for the compatibility tests (no Django needed).

    with postgres_server() as pg:          # pg.url == "postgres://postgres@127.0.0.1:PORT/postgres"
        pg.create_database("t1")
        url = pg.url_for("t1")             # "postgres://postgres@127.0.0.1:PORT/t1"
        text = postgres_schema(pg.url, "t1")
        pg.halt()                          # an outage: the process stops, data and port are kept
        pg.restart()                       # back, same URL and databases

    with mariadb_server() as my:           # my.url == "mysql://root@127.0.0.1:PORT/mysql"
        my.create_database("t1")
        text = mysql_schema(my.url, "t1")

    text = sqlite_schema("/path/to/db.sqlite3")

Each server lives in its own temporary directory (data directory, unix socket, log), listens on
a free port on 127.0.0.1 only, and is stopped and deleted when the ``with`` block ends, also on
exceptions.  Fallbacks for abnormal exits: an ``atexit`` hook stops whatever is still running,
and the server process gets PR_SET_PDEATHSIG so the kernel sends it SIGTERM if the Python
process dies without running atexit (SIGKILL, crash).

Authentication: PostgreSQL is initialised with ``--auth=trust`` (user ``postgres``, no
password).  MariaDB is initialised with ``--auth-root-authentication-method=normal``, which
creates ``root@localhost``/``root@127.0.0.1``/``root@::1`` with an *empty* password, so TCP
connections as ``root`` without a password work.

Root: ``initdb``/``postgres`` refuse to run as root, so when running as root the PostgreSQL
processes run as the ``postgres`` system user (else ``nobody``); ``mariadbd`` is started with
``--user=root``.

Binaries: PostgreSQL's server binaries are taken from the directory of ``initdb`` on PATH
(symlinks resolved) or the newest ``/usr/lib/postgresql/*/bin``; ``$DJAUTH_PG_BINDIR``
overrides.  MariaDB's ``mariadbd``/``mysqld`` from PATH, ``/usr/sbin`` or ``/usr/bin``;
``mariadb-install-db`` and the ``mariadb``/``mysql`` client from PATH.  Missing servers raise
:class:`ServerUnavailable` naming the Debian packages to install.

The helpers talk to the servers through the command line clients (``psql``, ``pg_dump``,
``mariadb``), so this module needs no database driver.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = [
    "ServerUnavailable",
    "DatabaseServer",
    "postgres_server",
    "mariadb_server",
    "postgres_available",
    "mariadb_available",
    "sqlite_schema",
    "postgres_schema",
    "mysql_schema",
    "port_is_open",
    "PG_APT_PACKAGES",
    "MARIADB_APT_PACKAGES",
]

PG_APT_PACKAGES = "postgresql"
MARIADB_APT_PACKAGES = "mariadb-server"  # pulls in mariadb-client (mariadb, mariadb-install-db)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class ServerUnavailable(RuntimeError):
    """The server software is not installed (or could not be started)."""


# ----------------------------------------------------------------------------------------
# small utilities
# ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _make_tmpdir(prefix: str) -> Path:
    # unix socket paths are limited to ~107 bytes: keep the directory short
    base = os.environ.get("TMPDIR") or "/tmp"
    if len(base) > 60 or not os.path.isdir(base):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


_libc = None


def _set_pdeathsig():
    """In the child between fork and exec: die with SIGTERM when the parent dies."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: atexit has to do
        pass


def _preexec(user: pwd.struct_passwd | None):
    def fn():
        os.setpgrp()  # keep Ctrl-C of an interactive run away from the server
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        # after setuid: a credential change clears the parent-death signal
        _set_pdeathsig()

    return fn


def _run(cmd, *, user=None, env=None, input=None, check=True, timeout=120):
    p = subprocess.run(
        [str(c) for c in cmd],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        preexec_fn=_preexec(user) if user is not None else None,
    )
    if check and p.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {p.returncode}): {' '.join(map(str, cmd))}\n"
            f"{p.stdout}\n{p.stderr}".rstrip()
        )
    return p


def _which(name: str, extra_dirs=()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "MARIADB"))}
    env.setdefault("LC_ALL", "C")
    return env


# ----------------------------------------------------------------------------------------
# server object + bookkeeping
# ----------------------------------------------------------------------------------------

_running: dict[int, "DatabaseServer"] = {}


def _stop_all_at_exit():
    for srv in list(_running.values()):
        with contextlib.suppress(Exception):
            srv.stop()


atexit.register(_stop_all_at_exit)


class DatabaseServer:
    """A running throw-away server.  ``str(server)`` is its URL."""

    kind: str  # "postgres" | "mariadb"

    def __init__(self, kind, tmpdir: Path, port: int, url: str):
        self.kind = kind
        self.tmpdir = tmpdir
        self.port = port
        self.host = "127.0.0.1"
        self.url = url
        self.process: subprocess.Popen | None = None
        self.log = tmpdir / "server.log"
        self.startup_seconds: float | None = None

    def __str__(self):
        return self.url

    def __repr__(self):
        return f"<{self.kind} server {self.url} in {self.tmpdir}>"

    def url_for(self, dbname: str) -> str:
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}/{dbname}"

    # overridden
    def create_database(self, name: str):  # pragma: no cover
        raise NotImplementedError

    def drop_database(self, name: str):  # pragma: no cover
        raise NotImplementedError

    def django_database(self, name: str) -> dict:  # pragma: no cover
        raise NotImplementedError

    def _terminate(self):  # pragma: no cover
        raise NotImplementedError

    def stop(self):
        """Stop the server (idempotent) and delete its directory."""
        try:
            self.halt()
        finally:
            _running.pop(id(self), None)
            self.process = None
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def halt(self):
        """Stop the server process but keep its data directory, port and URL, so that
        :meth:`restart` brings the same databases back (a database outage, in a test).
        :meth:`stop` (and the ``with`` block's end) still deletes everything."""
        p = self.process
        if p is None or p.poll() is not None:
            return
        self._terminate()
        try:
            p.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=STOP_TIMEOUT)

    def restart(self):
        """Start the server again after :meth:`halt`: same command, data directory and port;
        returns once it accepts connections (no-op if it is running)."""
        if self.process is not None and self.process.poll() is None:
            return
        if not self.tmpdir.exists():
            raise RuntimeError(f"{self!r} was stopped (its directory is gone): cannot restart")
        cmd, user = self._spawned
        self._spawn(cmd, user)
        self._wait_ready(self._ready, self.kind)

    def _spawn(self, cmd, user=None):
        self._spawned = (cmd, user)
        logf = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                preexec_fn=_preexec(user),
            )
        finally:
            logf.close()
        _running[id(self)] = self

    def _wait_ready(self, ready, what):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"{what} exited with status {self.process.returncode} during start-up:\n"
                    + _tail(self.log)
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"{what} not ready after {START_TIMEOUT:.0f} s:\n" + _tail(self.log))
            time.sleep(0.05)


# ----------------------------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------------------------

def _pg_version_key(path: str):
    m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/", path)
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0)


def pg_bindir() -> Path:
    """Directory holding initdb/postgres/psql/pg_dump of one PostgreSQL installation."""
    env = os.environ.get("DJAUTH_PG_BINDIR")
    if env:
        return Path(env)
    initdb = shutil.which("initdb")
    if initdb:
        d = Path(os.path.realpath(initdb)).parent
        if (d / "postgres").exists():
            return d
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_pg_version_key, reverse=True)
    if cands:
        return Path(cands[0]).parent
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or under "
        f"/usr/lib/postgresql/*/bin: install them with `apt-get install -y {PG_APT_PACKAGES}` "
        "(or set DJAUTH_PG_BINDIR)"
    )


def _pg_tool(name: str) -> str:
    with contextlib.suppress(ServerUnavailable):
        p = pg_bindir() / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise ServerUnavailable(f"PostgreSQL client `{name}` not found: apt-get install -y {PG_APT_PACKAGES}")


def postgres_available() -> bool:
    try:
        d = pg_bindir()
    except ServerUnavailable:
        return False
    return (d / "initdb").exists() and (d / "postgres").exists()


def _unprivileged_user():
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerUnavailable("running as root and neither a `postgres` nor a `nobody` user exists")


def _quote_pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer(DatabaseServer):
    def __init__(self, tmpdir, port, bindir: Path, user):
        super().__init__("postgres", tmpdir, port, f"postgres://postgres@127.0.0.1:{port}/postgres")
        self.bindir = bindir
        self.user = user
        self.datadir = tmpdir / "data"
        self.socket_dir = tmpdir

    def _terminate(self):
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown, like pg_ctl stop -m fast

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        p = _run(
            [self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", self.port, "-U", "postgres", "-d", dbname, "-c", sql],
            env=_clean_env(),
        )
        return p.stdout

    def create_database(self, name: str):
        self.psql(f"CREATE DATABASE {_quote_pg_ident(name)}")

    def drop_database(self, name: str):
        self.psql(f"DROP DATABASE IF EXISTS {_quote_pg_ident(name)} WITH (FORCE)")

    def django_database(self, name: str) -> dict:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def _ready(self) -> bool:
        # postmaster.pid line 8 says "ready" once connections are accepted (what pg_ctl -w polls)
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and port_is_open(self.port)


@contextlib.contextmanager
def postgres_server():
    """Start a throw-away PostgreSQL cluster; yields a :class:`DatabaseServer`."""
    bindir = pg_bindir()
    for tool in ("initdb", "postgres", "psql", "pg_dump"):
        if not (bindir / tool).exists():
            raise ServerUnavailable(f"{bindir / tool} missing: apt-get install -y {PG_APT_PACKAGES}")
    user = _unprivileged_user()
    tmpdir = _make_tmpdir("djauth-pg-")
    srv = PostgresServer(tmpdir, free_port(), bindir, user)
    try:
        t0 = time.monotonic()
        if user is not None:
            os.chown(tmpdir, user.pw_uid, user.pw_gid)
        _run(
            [bindir / "initdb", "-D", srv.datadir, "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            user=user, env=_clean_env(),
        )
        srv._spawn(
            [bindir / "postgres", "-D", srv.datadir, "-p", srv.port, "-k", srv.socket_dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            user=user,
        )
        srv._wait_ready(srv._ready, "postgres")
        srv.startup_seconds = time.monotonic() - t0
        yield srv
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------
# MariaDB
# ----------------------------------------------------------------------------------------

_SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec")


def mariadb_binaries() -> dict:
    server = _which("mariadbd", _SBIN) or _which("mysqld", _SBIN)
    install = _which("mariadb-install-db", _SBIN) or _which("mysql_install_db", _SBIN)
    client = _which("mariadb", _SBIN) or _which("mysql", _SBIN)
    if not (server and install and client):
        missing = [n for n, v in (("mariadbd", server), ("mariadb-install-db", install),
                                  ("mariadb client", client)) if not v]
        raise ServerUnavailable(
            f"MariaDB not installed ({', '.join(missing)} not found): "
            f"apt-get update && apt-get install -y {MARIADB_APT_PACKAGES}"
        )
    return {"server": server, "install": install, "client": client}


def mariadb_available() -> bool:
    try:
        mariadb_binaries()
    except ServerUnavailable:
        return False
    return True


def _quote_my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _mysql_cli_unescape(s: str) -> str:
    # --batch output escapes \n, \t, \\ and NUL
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "0": "\0"}.get(m.group(1), m.group(1)), s)


def _mysql_client_args(url: str):
    u = urlsplit(url)
    args = ["--no-defaults", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306),
            "-u", unquote(u.username or "root"), "--protocol=TCP"]
    env = _clean_env()
    if u.password:
        env["MYSQL_PWD"] = unquote(u.password)
    return args, env


def mysql_query(url: str, sql: str, dbname: str | None = None, client: str | None = None):
    """Run ``sql`` with the mariadb client; returns the rows as lists of strings."""
    client = client or mariadb_binaries()["client"]
    args, env = _mysql_client_args(url)
    db = dbname if dbname is not None else (urlsplit(url).path.lstrip("/") or None)
    cmd = [client, *args, "--batch", "--skip-column-names", "-e", sql]
    if db:
        cmd.append(db)
    out = _run(cmd, env=env).stdout
    return [[_mysql_cli_unescape(f) for f in line.split("\t")] for line in out.splitlines()]


class MariaDBServer(DatabaseServer):
    def __init__(self, tmpdir, port, bins):
        super().__init__("mariadb", tmpdir, port, f"mysql://root@127.0.0.1:{port}/mysql")
        self.bins = bins
        self.datadir = tmpdir / "data"
        self.socket = tmpdir / "mysqld.sock"

    def _terminate(self):
        self.process.send_signal(signal.SIGTERM)  # normal shutdown

    def query(self, sql: str, dbname: str | None = None):
        return mysql_query(self.url, sql, dbname, self.bins["client"])

    def create_database(self, name: str):
        self.query(f"CREATE DATABASE {_quote_my_ident(name)}")

    def drop_database(self, name: str):
        self.query(f"DROP DATABASE IF EXISTS {_quote_my_ident(name)}")

    def django_database(self, name: str) -> dict:
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": "root",
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def _ready(self) -> bool:
        if not port_is_open(self.port):
            return False
        try:
            self.query("SELECT 1")
        except RuntimeError:
            return False
        return True


@contextlib.contextmanager
def mariadb_server():
    """Start a throw-away MariaDB server; yields a :class:`DatabaseServer`."""
    bins = mariadb_binaries()
    tmpdir = _make_tmpdir("djauth-my-")
    srv = MariaDBServer(tmpdir, free_port(), bins)
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    try:
        t0 = time.monotonic()
        _run(
            [bins["install"], "--no-defaults", f"--datadir={srv.datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *as_root],
            env=_clean_env(), timeout=300,
        )
        srv._spawn(
            [bins["server"], "--no-defaults", f"--datadir={srv.datadir}", f"--socket={srv.socket}",
             f"--port={srv.port}", "--bind-address=127.0.0.1", f"--pid-file={tmpdir / 'mysqld.pid'}",
             f"--tmpdir={tmpdir}", "--skip-log-bin",
             # what Debian's /etc/mysql/mariadb.conf.d/50-server.cnf sets (--no-defaults drops it)
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
             # throw-away: durability off
             "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
             *as_root],
        )
        srv._wait_ready(srv._ready, "mariadbd")
        srv.startup_seconds = time.monotonic() - t0
        yield srv
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------
# normalised schemas for diff tests
# ----------------------------------------------------------------------------------------

def sqlite_schema(path) -> str:
    """Every row of sqlite_master (tables, indexes incl. autoindexes, sqlite_sequence),
    sorted by table then name, as ``<type> <name> ON <table>`` followed by its exact SQL."""
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        con.close()
    rows.sort(key=lambda r: (r[2], r[0] != "table", r[1]))
    out = []
    for typ, name, tbl, sql in rows:
        out.append(f"{typ} {name} ON {tbl}")
        out.append(f"    {sql if sql is not None else '(implicit)'}")
    return "\n".join(out) + "\n"


def postgres_schema(url: str, dbname: str) -> str:
    """``pg_dump --schema-only --no-owner --no-privileges`` without comments, SET lines,
    ``\\restrict`` keys and blank lines (pg_dump already orders objects deterministically)."""
    u = urlsplit(url)
    env = _clean_env()
    if u.password:
        env["PGPASSWORD"] = unquote(u.password)
    out = _run(
        [_pg_tool("pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
         "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432),
         "-U", unquote(u.username or "postgres"), "-d", dbname],
        env=env,
    ).stdout
    keep = []
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("--") or s.startswith("\\restrict") or s.startswith("\\unrestrict"):
            continue
        if re.match(r"^(SET |SELECT pg_catalog\.set_config\()", s):
            continue
        keep.append(line.rstrip())
    return "\n".join(keep) + "\n"


def mysql_schema(url: str, dbname: str, strip_auto_increment: bool = True) -> str:
    """``SHOW CREATE TABLE`` of every table, sorted by name.  ``AUTO_INCREMENT=<n>`` table
    options (the counter, which depends on the rows inserted) are removed by default."""
    tables = sorted(r[0] for r in mysql_query(url, "SHOW FULL TABLES", dbname))
    out = []
    for t in tables:
        rows = mysql_query(url, f"SHOW CREATE TABLE {_quote_my_ident(t)}", dbname)
        ddl = rows[0][1]
        if strip_auto_increment:
            ddl = re.sub(r" AUTO_INCREMENT=\d+", "", ddl)
        out.append(ddl + ";")
    return "\n".join(out) + "\n"

"""The throw-away database servers of dbservers.py start, answer a query and go away again.

A missing server package is a skip on a developer machine but a failure under CI (CI=true) or
with DJAUTH_REQUIRE_DBSERVERS=1, so a CI script that forgot `apt-get install mariadb-server`
cannot pass by skipping.
"""

import os
import sqlite3

import pytest

import dbservers

REQUIRED = bool(os.environ.get("CI")) or os.environ.get("DJAUTH_REQUIRE_DBSERVERS") == "1"


def _need(available, packages):
    if not available():
        msg = f"server not installed: apt-get install -y {packages}"
        if REQUIRED:
            pytest.fail(msg)
        pytest.skip(msg)


def test_postgres_server_starts_answers_and_stops():
    _need(dbservers.postgres_available, dbservers.PG_APT_PACKAGES)
    psycopg = pytest.importorskip("psycopg")
    with dbservers.postgres_server() as pg:
        port, tmpdir = pg.port, pg.tmpdir
        assert pg.url == f"postgres://postgres@127.0.0.1:{port}/postgres"
        assert dbservers.port_is_open(port)
        with psycopg.connect(pg.url.replace("postgres://", "postgresql://", 1)) as con:
            assert con.execute("SELECT 1 + 1").fetchone() == (2,)
        pg.create_database("djauth_probe")
        with psycopg.connect(pg.url_for("djauth_probe").replace("postgres://", "postgresql://", 1),
                             autocommit=True) as con:
            con.execute("CREATE TABLE t (id integer PRIMARY KEY, name varchar(10) UNIQUE)")
            assert con.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        schema = dbservers.postgres_schema(pg.url, "djauth_probe")
        assert "CREATE TABLE public.t" in schema and "t_name_key UNIQUE (name)" in schema
        assert "\\restrict" not in schema and "-- " not in schema
        pg.drop_database("djauth_probe")
    assert not dbservers.port_is_open(port)
    assert not tmpdir.exists()


def test_mariadb_server_starts_answers_and_stops():
    _need(dbservers.mariadb_available, dbservers.MARIADB_APT_PACKAGES)
    pymysql = pytest.importorskip("pymysql")
    with dbservers.mariadb_server() as my:
        port, tmpdir = my.port, my.tmpdir
        assert my.url == f"mysql://root@127.0.0.1:{port}/mysql"
        con = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="mysql")
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 + 1, @@character_set_server")
                assert cur.fetchone() == (2, "utf8mb4")
        finally:
            con.close()
        my.create_database("djauth_probe")
        my.query("CREATE TABLE t (id integer AUTO_INCREMENT PRIMARY KEY, name varchar(10) NOT NULL UNIQUE)",
                 "djauth_probe")
        my.query("INSERT INTO t (name) VALUES ('a'), ('b')", "djauth_probe")
        schema = dbservers.mysql_schema(my.url, "djauth_probe")
        assert schema.startswith("CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,")
        assert "AUTO_INCREMENT=" not in schema  # the counter is data, not schema
        assert "AUTO_INCREMENT=3" in dbservers.mysql_schema(my.url, "djauth_probe", strip_auto_increment=False)
        my.drop_database("djauth_probe")
    assert not dbservers.port_is_open(port)
    assert not tmpdir.exists()


def test_postgres_halt_and_restart_keep_the_data():
    _need(dbservers.postgres_available, dbservers.PG_APT_PACKAGES)
    with dbservers.postgres_server() as pg:
        port, tmpdir = pg.port, pg.tmpdir
        pg.create_database("djauth_probe")
        pg.psql("CREATE TABLE t (x integer); INSERT INTO t VALUES (42)", "djauth_probe")
        pg.halt()
        assert not dbservers.port_is_open(port)
        assert tmpdir.exists()
        pg.halt()  # idempotent
        pg.restart()
        assert pg.port == port and dbservers.port_is_open(port)
        assert pg.psql("SELECT x FROM t", "djauth_probe").strip() == "42"
    assert not dbservers.port_is_open(port)
    assert not tmpdir.exists()
    assert not dbservers._running


def test_server_is_stopped_when_the_block_raises():
    _need(dbservers.postgres_available, dbservers.PG_APT_PACKAGES)
    with pytest.raises(ZeroDivisionError):
        with dbservers.postgres_server() as pg:
            port, tmpdir = pg.port, pg.tmpdir
            1 / 0
    assert not dbservers.port_is_open(port)
    assert not tmpdir.exists()
    assert not dbservers._running


def test_django_accepts_pymysql_as_mysqldb():
    """Django's MySQL backend officially wants mysqlclient; PyMySQL passes its version check
    after pymysql.install_as_MySQLdb() (PyMySQL reports a mysqlclient-compatible version_info)."""
    pytest.importorskip("pymysql")
    try:
        import MySQLdb  # noqa: F401  (real mysqlclient installed: nothing to check)
    except ImportError:
        import pymysql

        pymysql.install_as_MySQLdb()
    from django.db.backends.mysql import base

    assert base.version >= (1, 4, 3)


def test_sqlite_schema_is_sorted_and_exact(tmp_path):
    db = tmp_path / "s.sqlite3"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "b" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "x" text UNIQUE)')
    con.execute('CREATE INDEX "b_x" ON "b" ("x")')
    con.execute('CREATE TABLE "a" ("id" integer)')
    con.commit()
    con.close()
    assert dbservers.sqlite_schema(db) == (
        "table a ON a\n"
        '    CREATE TABLE "a" ("id" integer)\n'
        "table b ON b\n"
        '    CREATE TABLE "b" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "x" text UNIQUE)\n'
        "index b_x ON b\n"
        '    CREATE INDEX "b_x" ON "b" ("x")\n'
        "index sqlite_autoindex_b_1 ON b\n"
        "    (implicit)\n"
        "table sqlite_sequence ON sqlite_sequence\n"
        "    CREATE TABLE sqlite_sequence(name,seq)\n"
    )

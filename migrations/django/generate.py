#!/usr/bin/env python3
"""Capture the DDL that Django's own `migrate` executes, per backend and DEFAULT_AUTO_FIELD.

Run with a Python that has Django 5.2, psycopg (3) and PyMySQL (or mysqlclient) installed, and
with PostgreSQL and MariaDB server binaries on the machine (Debian: postgresql, mariadb-server):

    /tmp/dj52/bin/pip install 'Django==5.2.*' 'psycopg[binary]' PyMySQL
    /tmp/dj52/bin/python migrations/django/generate.py            # all backends
    /tmp/dj52/bin/python migrations/django/generate.py sqlite     # or a subset: sqlite postgres mysql

For every variant it
  1. runs `sqlmigrate` for every migration on an empty scratch database (for the comparison
     printed at the end),
  2. runs a real `migrate` on another empty database with `connection.execute_wrapper`
     recording every statement sent to the database, tagged with the migration being applied
     (or `MigrationRecorder` for the creation of django_migrations),
  3. keeps the DDL (see `classify`), renders the file (format: see HEADER),
  4. parses the rendered file back, applies it statement by statement with the plain DB-API
     driver to a third empty database and checks that its schema is identical to the one Django
     produced (sqlite_master / pg_dump -s / SHOW CREATE TABLE, see compat-tests/dbservers.py),
  5. writes migrations/django/<backend>[-<autofield>].sql only if the check passed.

Django's `settings` can be configured once per process, so each variant runs in a child
process (`--worker`).  The servers are throw-away ones from compat-tests/dbservers.py.
"""

import argparse
import difflib
import io
import json
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "compat-tests"))

import dbservers  # noqa: E402

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
AUTO_FIELDS = {
    "autofield": "django.db.models.AutoField",
    "bigautofield": "django.db.models.BigAutoField",
}
MARKER = "-- djauth:statement"
OUT_DIR = HERE
RECORDER = "MigrationRecorder"

# ----------------------------------------------------------------------------------------
# classification of executed statements
# ----------------------------------------------------------------------------------------
ROW_TABLES = {"django_migrations", "django_content_type", "auth_permission"}
SKIP_KEYWORDS = {
    "BEGIN": "transaction control",
    "COMMIT": "transaction control",
    "ROLLBACK": "transaction control",
    "SAVEPOINT": "transaction control",
    "RELEASE": "transaction control",
    "SELECT": "query / introspection",
    "SHOW": "query / introspection",
    "PRAGMA": "PRAGMA",
    "SET": "session setting",
}


def _first_word(sql):
    m = re.match(r"\s*([A-Za-z]+)", sql)
    return m.group(1).upper() if m else ""


def _dml_table(sql):
    m = re.match(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+[`\"]?([A-Za-z0-9_]+)", sql, re.I)
    return m.group(1) if m else None


def classify(sql):
    """-> (keep: bool, reason)."""
    word = _first_word(sql)
    if word in ("CREATE", "ALTER", "DROP"):
        return True, "DDL"
    if word == "INSERT" and (_dml_table(sql) or "").startswith("new__"):
        return True, "SQLite table rebuild copy"
    if word in SKIP_KEYWORDS:
        # a combined statement such as "SET CONSTRAINTS x IMMEDIATE; ALTER TABLE ..." must not
        # be dropped silently
        if re.search(r";\s*(CREATE|ALTER|DROP)\b", sql, re.I):
            raise SystemExit(f"combined statement needs a decision: {sql!r}")
        return False, SKIP_KEYWORDS[word]
    if word in ("INSERT", "UPDATE", "DELETE") and _dml_table(sql) in ROW_TABLES:
        return False, f"DML on {_dml_table(sql)}"
    raise SystemExit(f"unclassified statement: {sql!r}")


# ----------------------------------------------------------------------------------------
# worker: one Django process per (backend, auto field)
# ----------------------------------------------------------------------------------------

def worker(spec_path, out_path):
    spec = json.loads(Path(spec_path).read_text())
    if spec["backend"] == "mysql":
        try:
            import MySQLdb  # noqa: F401
        except ImportError:
            import pymysql

            pymysql.install_as_MySQLdb()

    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="generate.py",
        USE_TZ=True,
        INSTALLED_APPS=INSTALLED_APPS,
        DATABASES={"default": spec["migrate_db"], "preview": spec["preview_db"]},
        DEFAULT_AUTO_FIELD=spec["auto_field"],
    )
    django.setup()

    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    # ---- 1. sqlmigrate, on an empty database, for every migration in plan order
    conn = connections["default"]
    executor = MigrationExecutor(conn)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
    order = [f"{m.app_label}.{m.name}" for m, _ in plan]
    sqlmigrate = {}
    for label in order:
        app, name = label.split(".", 1)
        buf = io.StringIO()
        call_command("sqlmigrate", app, name, database="preview", stdout=buf, stderr=io.StringIO(),
                     no_color=True)
        stmts = []
        for line in buf.getvalue().splitlines():
            s = line.strip()
            if not s or s.startswith("--") or s in ("BEGIN;", "COMMIT;", "START TRANSACTION;"):
                continue
            if not s.endswith(";"):
                raise SystemExit(f"sqlmigrate {label}: unexpected line {line!r}")
            stmts.append(s[:-1])
        sqlmigrate[label] = stmts
    connections["preview"].close()

    # ---- 2. the real migrate, with every executed statement recorded
    current = [None]
    captured = []

    orig_apply = MigrationExecutor.apply_migration
    orig_ensure = MigrationRecorder.ensure_schema

    applied_order = []

    def apply_migration(self, state, migration, *args, **kwargs):
        current[0] = f"{migration.app_label}.{migration.name}"
        applied_order.append(current[0])
        try:
            return orig_apply(self, state, migration, *args, **kwargs)
        finally:
            current[0] = "post-migration"

    def ensure_schema(self):
        if current[0] is None:
            current[0] = RECORDER
            try:
                return orig_ensure(self)
            finally:
                current[0] = None
        return orig_ensure(self)

    MigrationExecutor.apply_migration = apply_migration
    MigrationRecorder.ensure_schema = ensure_schema

    def wrapper(execute, sql, params, many, context):
        captured.append({"origin": current[0], "sql": sql, "params": repr(params), "many": many,
                         "has_params": bool(params)})
        return execute(sql, params, many, context)

    with conn.execute_wrapper(wrapper):
        call_command("migrate", database="default", verbosity=0, interactive=False)

    if applied_order != order:
        raise SystemExit(f"migrate applied {applied_order}, expected the plan {order}")

    # ---- 3. classify
    statements, skipped = [], {}
    for c in captured:
        keep, reason = classify(c["sql"])
        if keep:
            if c["has_params"] or c["many"]:
                raise SystemExit(f"DDL with parameters, needs inlining: {c}")
            if c["origin"] in (None, "post-migration"):
                raise SystemExit(f"DDL outside any migration: {c}")
            statements.append({"origin": c["origin"], "sql": c["sql"]})
        else:
            skipped[reason] = skipped.get(reason, 0) + 1

    if spec["backend"] == "sqlite":
        server_version = "SQLite " + sqlite3.sqlite_version
        driver = "Python's sqlite3 module"
    elif spec["backend"] == "postgresql":
        import psycopg

        server_version = "PostgreSQL " + conn.cursor().connection.info.parameter_status("server_version")
        driver = f"psycopg {psycopg.__version__}"
    else:
        import MySQLdb

        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server_version = ("MariaDB " if conn.mysql_is_mariadb else "MySQL ") + cur.fetchone()[0]
        driver = f"mysqlclient {'.'.join(map(str, MySQLdb.version_info[:3]))}"
        if "pymysql" in getattr(MySQLdb, "__file__", "") or MySQLdb.__name__ == "pymysql":
            import pymysql

            driver = f"PyMySQL {pymysql.VERSION_STRING} as MySQLdb"

    Path(out_path).write_text(json.dumps({
        "django": django.get_version(),
        "python": platform.python_version(),
        "server_version": server_version,
        "driver": driver,
        "order": order,
        "statements": statements,
        "skipped": skipped,
        "sqlmigrate": sqlmigrate,
    }, indent=1))


def run_worker(spec):
    with tempfile.TemporaryDirectory(prefix="djauth-gen-") as d:
        sp, op = Path(d) / "spec.json", Path(d) / "out.json"
        sp.write_text(json.dumps(spec))
        subprocess.run([sys.executable, __file__, "--worker", str(sp), str(op)], check=True)
        return json.loads(op.read_text())


# ----------------------------------------------------------------------------------------
# the file format
# ----------------------------------------------------------------------------------------
BACKEND_TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}

HEADER = """\
-- djauth: the DDL Django runs for `migrate` of auth + contenttypes + sessions -- {title}{variant}
--
-- GENERATED by migrations/django/generate.py -- do not edit; re-run the generator instead.
-- Produced by Django {django} (Python {python}) `manage.py migrate` with
--   INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
--   DEFAULT_AUTO_FIELD = "{auto_field}"
-- on an empty {server} database ({driver}).
-- Every statement the migrate run sent to the database was recorded with
-- connection.execute_wrapper; the DDL is kept here, in execution order.
{auto_note}--
-- FORMAT
--   Each statement is preceded by a marker line of the form
--       -- djauth:statement <origin>
--   where <origin> is `<app_label>.<migration_name>` (e.g. `auth.0001_initial`) for a statement
--   of that migration, or `MigrationRecorder` for the creation of the django_migrations table
--   (done by MigrationRecorder.ensure_schema before the first migration). The statement is the
--   text between its marker line and the next marker line (or the end of the file), with
--   surrounding whitespace and the single trailing `;` removed. Lines before the first marker
--   (this header) are comments. Django's DDL never contains a line starting with `-- djauth:`,
--   and none of the statements contains a newline.
--
-- LEFT OUT (not DDL, or rows djauth writes itself)
--   transaction control (BEGIN/COMMIT/SAVEPOINT/RELEASE), SET/SHOW/PRAGMA, introspection
--   SELECTs, and DML on django_migrations, django_content_type and auth_permission (rows of
--   MigrationRecorder, of the RunPython migrations contenttypes.0002 and auth.0011, and of
--   the post_migrate handlers). Skipped in this run:
{skipped}
--
-- TRANSACTIONS
{tx_note}--
-- MIGRATIONS, in the order Django applies them (statements per migration)
{order}--
-- VERIFIED: applying these statements to an empty database gives a schema identical to the one
-- Django's migrate produced ({verify_how}).
"""

TX_NOTES = {
    "sqlite": """\
--   Django runs each migration (atomic) in one transaction, with PRAGMA foreign_keys = OFF
--   set before BEGIN (SQLite ignores that PRAGMA inside a transaction) and a
--   PRAGMA foreign_key_check before COMMIT; its connections use foreign_keys = ON and
--   legacy_alter_table = OFF otherwise. AlterField is done by rebuilding the table:
--   CREATE TABLE "new__<t>", INSERT INTO "new__<t>" ... SELECT ... FROM "<t>", DROP TABLE "<t>",
--   ALTER TABLE "new__<t>" RENAME TO "<t>", then the table's indexes again. The rebuilt table
--   has the altered column LAST (hence auth_user.first_name is the last column). NB: `sqlmigrate`
--   prints these CREATE TABLE "new__<t>" statements with the altered column right after "id";
--   that is not what migrate executes. ALTER TABLE ... DROP COLUMN (contenttypes.0002) needs
--   SQLite >= 3.35.5 (Django 5.2 rebuilds the table instead on older SQLite).
""",
    "postgresql": """\
--   Django runs each migration (atomic) in one transaction (PostgreSQL has transactional DDL);
--   MigrationRecorder's CREATE TABLE statements run in their own transaction.
""",
    "mysql": """\
--   MySQL/MariaDB DDL commits implicitly: Django runs the statements without a transaction.
-- MySQL: for these migrations Django emits the same statements for MySQL 8.0 as for MariaDB
--   (compared with `sqlmigrate` output for a MySQL 8.0.36 connection).
""",
}

VERIFY_HOW = {
    "sqlite": "every row of sqlite_master, compared exactly, in rowid order too",
    "postgresql": "pg_dump --schema-only --no-owner",
    "mysql": "SHOW CREATE TABLE of every table, AUTO_INCREMENT=<counter> options removed",
}


def render(backend, autofield_key, result, auto_note=""):
    counts = {label: 0 for label in result["order"]}
    rec = sum(1 for s in result["statements"] if s["origin"] == RECORDER)
    for s in result["statements"]:
        if s["origin"] != RECORDER:
            counts[s["origin"]] += 1
    order = f"--   {RECORDER}: {rec}\n" + "".join(f"--   {k}: {v}\n" for k, v in counts.items())
    skipped = "\n".join(f"--     {v} x {k}" for k, v in sorted(result["skipped"].items()))
    variant = "" if autofield_key is None else f", DEFAULT_AUTO_FIELD = {AUTO_FIELDS[autofield_key].rsplit('.', 1)[1]}"
    text = HEADER.format(
        title=BACKEND_TITLES[backend],
        variant=variant,
        django=result["django"],
        python=result["python"],
        auto_field=AUTO_FIELDS[autofield_key or "autofield"] if autofield_key else
        "django.db.models.AutoField\" or \"django.db.models.BigAutoField",
        server=result["server_version"],
        driver=result["driver"],
        auto_note=auto_note,
        skipped=skipped,
        tx_note=TX_NOTES[backend],
        order=order,
        verify_how=VERIFY_HOW[backend],
    )
    for s in result["statements"]:
        sql = s["sql"].strip()
        if "\n" in sql or MARKER in sql or sql.endswith(";"):
            raise SystemExit(f"statement cannot be written in the file format: {sql!r}")
        text += f"\n{MARKER} {s['origin']}\n{sql};\n"
    return text


def parse(text):
    """The reader djauth implements: -> [(origin, sql)]."""
    out, origin, buf = [], None, []

    def flush():
        if origin is not None:
            sql = "\n".join(buf).strip()
            if sql.endswith(";"):
                sql = sql[:-1].rstrip()
            out.append((origin, sql))

    for line in text.splitlines():
        if line.startswith(MARKER):
            flush()
            origin, buf = line[len(MARKER):].strip(), []
        elif origin is not None:
            buf.append(line)
    flush()
    return out


# ----------------------------------------------------------------------------------------
# applying a file with the plain driver
# ----------------------------------------------------------------------------------------

def apply_sqlite(path, stmts):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for _, sql in stmts:
            con.execute(sql)
    finally:
        con.close()


def apply_postgres(url, dbname, stmts):
    import psycopg

    with psycopg.connect(_pg_dsn(url, dbname), autocommit=True) as con:
        for _, sql in stmts:
            con.execute(sql)


def apply_mysql(url, dbname, stmts):
    import pymysql

    from urllib.parse import urlsplit

    u = urlsplit(url)
    con = pymysql.connect(host=u.hostname, port=u.port, user=u.username or "root",
                          password=u.password or "", database=dbname, autocommit=True)
    try:
        with con.cursor() as cur:
            for _, sql in stmts:
                cur.execute(sql)
    finally:
        con.close()


def _pg_dsn(url, dbname):
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return f"postgresql://{u.netloc}/{dbname}"


def sqlite_master_rows(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------

def diff(a, b, an, bn):
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), an, bn))


def compare_sqlmigrate(result):
    """sqlmigrate (all migrations, plan order) vs what migrate executed (minus recorder)."""
    sm = [f"{label}: {s}" for label in result["order"] for s in result["sqlmigrate"][label]]
    ex = [f"{s['origin']}: {s['sql']}" for s in result["statements"] if s["origin"] != RECORDER]
    return diff("\n".join(sm) + "\n", "\n".join(ex) + "\n", "sqlmigrate", "migrate (executed)")


def check(name, ok, detail=""):
    print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if not ok:
        print(detail)
        raise SystemExit(f"verification failed: {name}")


def gen_sqlite(tmp, reports):
    results = {}
    for key, cls in AUTO_FIELDS.items():
        spec = {
            "backend": "sqlite",
            "auto_field": cls,
            "migrate_db": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / f"ref-{key}.sqlite3")},
            "preview_db": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / f"preview-{key}.sqlite3")},
        }
        results[key] = run_worker(spec)
    same = results["autofield"]["statements"] == results["bigautofield"]["statements"]
    check("sqlite: AutoField and BigAutoField execute identical SQL", same,
          diff("\n".join(s["sql"] for s in results["autofield"]["statements"]),
               "\n".join(s["sql"] for s in results["bigautofield"]["statements"]), "AutoField", "BigAutoField"))
    note = ("-- AutoField and BigAutoField give the same SQL on SQLite (both are `integer ... AUTOINCREMENT`):\n"
            "-- the generator captured both runs and checked that the statement lists are identical.\n")
    text = render("sqlite", None, results["autofield"], auto_note=note)
    stmts = parse(text)
    assert [s for _, s in stmts] == [s["sql"] for s in results["autofield"]["statements"]]
    for key in AUTO_FIELDS:
        applied = tmp / f"applied-{key}.sqlite3"
        apply_sqlite(applied, stmts)
        ref = tmp / f"ref-{key}.sqlite3"
        a, b = dbservers.sqlite_schema(ref), dbservers.sqlite_schema(applied)
        check(f"sqlite ({key}): sqlite_schema identical", a == b, diff(a, b, "django", "applied"))
        ra, rb = sqlite_master_rows(ref), sqlite_master_rows(applied)
        check(f"sqlite ({key}): sqlite_master identical in rowid order", ra == rb,
              diff("\n".join(map(repr, ra)), "\n".join(map(repr, rb)), "django", "applied"))
    (OUT_DIR / "sqlite.sql").write_text(text)
    reports["sqlite"] = results


def gen_server(backend, tmp, reports):
    ctx = dbservers.postgres_server() if backend == "postgresql" else dbservers.mariadb_server()
    with ctx as srv:
        print(f"  {backend} server: {srv.url} (started in {srv.startup_seconds:.2f} s)")
        results = {}
        for key, cls in AUTO_FIELDS.items():
            for role in ("ref", "preview", "applied"):
                srv.create_database(f"{role}_{key}")
            spec = {
                "backend": backend,
                "auto_field": cls,
                "migrate_db": srv.django_database(f"ref_{key}"),
                "preview_db": srv.django_database(f"preview_{key}"),
            }
            res = results[key] = run_worker(spec)
            text = render(backend, key, res)
            stmts = parse(text)
            assert [s for _, s in stmts] == [s["sql"] for s in res["statements"]]
            if backend == "postgresql":
                apply_postgres(srv.url, f"applied_{key}", stmts)
                a = dbservers.postgres_schema(srv.url, f"ref_{key}")
                b = dbservers.postgres_schema(srv.url, f"applied_{key}")
                check(f"postgresql ({key}): pg_dump -s identical", a == b, diff(a, b, "django", "applied"))
                fname = f"postgres-{key}.sql"
            else:
                apply_mysql(srv.url, f"applied_{key}", stmts)
                a = dbservers.mysql_schema(srv.url, f"ref_{key}")
                b = dbservers.mysql_schema(srv.url, f"applied_{key}")
                check(f"mysql ({key}): SHOW CREATE TABLE identical", a == b, diff(a, b, "django", "applied"))
                fname = f"mysql-{key}.sql"
            (OUT_DIR / fname).write_text(text)
        reports[backend] = results


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("backends", nargs="*", metavar="BACKEND",
                    help="sqlite, postgres and/or mysql (default: all three)")
    ap.add_argument("--out-dir", type=Path, default=HERE,
                    help="where to write the .sql files (default: next to this script)")
    ap.add_argument("--show-sqlmigrate-diff", action="store_true",
                    help="print the full sqlmigrate vs. executed diff")
    args = ap.parse_args()
    global OUT_DIR
    OUT_DIR = args.out_dir
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    args.backends = args.backends or ["sqlite", "postgres", "mysql"]
    for b in args.backends:
        if b not in ("sqlite", "postgres", "mysql"):
            ap.error(f"unknown backend {b!r}")
    reports = {}
    with tempfile.TemporaryDirectory(prefix="djauth-gen-") as d:
        tmp = Path(d)
        for b in args.backends:
            print(f"== {b}")
            if b == "sqlite":
                gen_sqlite(tmp, reports)
            else:
                gen_server("postgresql" if b == "postgres" else "mysql", tmp, reports)
    print("== sqlmigrate vs. what migrate executed")
    for backend, results in reports.items():
        for key, res in results.items():
            d = compare_sqlmigrate(res)
            n = sum(1 for l in d.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---")))
            print(f"  {backend} {key}: {'identical' if not d else f'{n} differing lines'}"
                  f" (+ {sum(1 for s in res['statements'] if s['origin'] == RECORDER)} MigrationRecorder statement(s) not in sqlmigrate)")
            if d and args.show_sqlmigrate_diff:
                print(d)


if __name__ == "__main__":
    main()

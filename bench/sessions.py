"""Ending one user's sessions: `djauth logout-user` (session index) against Django's usual loop.

    python bench/sessions.py [--users 10000] [--sessions 1000000] [--backends sqlite,postgres]
                             [--djauth target/release/djauth] [--markdown] [--results bench/RESULTS.md]

Run with a Python that has Django 5.2 and psycopg 3, e.g. target/compat-venvs/django-5.2/bin/python.
PostgreSQL is a throw-away cluster on a free loopback port (compat-tests/dbservers.py), SQLite a
temporary file; both are deleted at the end.  For each backend, in one run:

1. `djauth migrate`; N users (Django's bulk_create, MD5 password hashes so creating them is cheap);
   S login sessions spread at random over the users, each a real Django db-engine blob
   (SessionStore().encode of `_auth_user_id`, `_auth_user_backend`, `_auth_user_hash` in the order
   django.contrib.auth.login writes them, the hash from user.get_session_auth_hash()), encoded on
   all cores and bulk-inserted (PostgreSQL: COPY; SQLite: executemany in one transaction).  The
   triggers queue every row.
2. Times `djauth sessions catch-up` of all S queued rows, then `djauth sessions reindex`;
   a no-op djauth command (catch-up with an empty queue: process start + settings + connection)
   as the baseline; `djauth sessions catch-up` after 1,000 sessions made by Django's
   SessionStore.save() (several rounds, median); `djauth logout-user` for several users (by
   username, --id and --email in turn) with the index caught up; and, in a fresh Django process,
   Django's usual way for one user:
       for s in Session.objects.all():
           if s.get_decoded().get('_auth_user_id') == uid: s.delete()
   with its wall time and peak RSS (ru_maxrss); each s.delete() is its own autocommit
   transaction, as in a view or shell.  djauth times are wall times of the whole process.
3. Checks, decoding every django_session row with Django's SessionStore.decode: before the
   logouts the per-user counts are what was inserted; after them the logged-out users have no
   session left, each logout-user reported the number of sessions the user had, and every other
   user's count is unchanged; djauth_session_index agrees with Django's decoding throughout.
4. Prints a table per backend and the ratio Django's loop time / logout-user time; --markdown
   prints a section for bench/RESULTS.md, --results FILE appends it to FILE.

Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import re
import resource
import shlex
import signal
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "compat-tests"))
sys.path.insert(0, str(REPO / "bench"))

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_AGE = 1209600  # Django's default, two weeks
KEY_CHARS = string.ascii_lowercase + string.digits  # django.contrib.sessions VALID_KEY_CHARS
CHUNK = 10_000


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------------------------------
# Django, configured once per process (main process: never; pool workers and task children: here)
# ------------------------------------------------------------------------------------------

def configure_django(secret, database=None):
    import django
    from django.conf import settings

    if settings.configured:
        return
    kw = dict(
        SECRET_KEY=secret,
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        PASSWORD_HASHERS=HASHERS,
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        SESSION_COOKIE_AGE=SESSION_COOKIE_AGE,
    )
    if database:
        kw["DATABASES"] = {"default": database}
    settings.configure(**kw)
    django.setup()


def django_version():
    import django

    return "%d.%d" % django.VERSION[:2], django.get_version()


# ---- task children: `python sessions.py --task NAME`, JSON in on stdin, JSON out on stdout ----

def task_create_users(p):
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.contrib.auth.models import User

    hasher = MD5PasswordHasher()
    users = [User(username=f"user{i:06d}", email=f"user{i:06d}@example.com",
                  password=hasher.encode(f"pw-{i}", hasher.salt()))
             for i in range(1, p["n"] + 1)]
    User.objects.bulk_create(users, batch_size=2000)
    return [[str(u.pk), u.username, u.email, u.get_session_auth_hash()] for u in User.objects.order_by("pk")]


def task_make_sessions(p):
    """p["n"] sessions the way login() + SessionMiddleware write them, through SessionStore.save()
    (one outer transaction so SQLite does not sync 1,000 times; each save is still its own
    INSERT under Django's savepoint)."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    rng = random.Random(p["seed"])
    users = list(User.objects.all())
    made = collections.Counter()
    t = time.perf_counter()
    with transaction.atomic():
        for _ in range(p["n"]):
            u = rng.choice(users)
            s = SessionStore()
            s["_auth_user_id"] = u._meta.pk.value_to_string(u)
            s["_auth_user_backend"] = MODEL_BACKEND
            s["_auth_user_hash"] = u.get_session_auth_hash()
            s.save()
            made[str(u.pk)] += 1
    return {"seconds": time.perf_counter() - t, "made": made}


def task_django_logout(p):
    """Django's usual way to end one user's sessions, timed, with the process's peak RSS."""
    from django.contrib.sessions.models import Session

    uid = p["uid"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    deleted = 0
    for s in Session.objects.all():
        if s.get_decoded().get("_auth_user_id") == uid:
            s.delete()
            deleted += 1
    seconds = time.perf_counter() - t
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "deleted": deleted, "rss_before_kb": rss_before, "rss_peak_kb": rss_after}


TASKS = {"create-users": task_create_users, "make-sessions": task_make_sessions, "django-logout": task_django_logout}


def task_main(name):
    import warnings

    warnings.filterwarnings("ignore")
    p = json.loads(sys.stdin.read())
    configure_django(p["secret"], p["database"])
    result = TASKS[name](p)
    sys.stdout.write(json.dumps(result) + "\n")


def run_task(name, db, secret, **params):
    payload = json.dumps(dict(params, secret=secret, database=db.django)).encode()
    r = spawn([sys.executable, __file__, "--task", name], dict(os.environ), stdin=payload)
    if r.rc != 0:
        sys.exit(f"Django task {name} failed (exit {r.rc}):\n{r.err}")
    return json.loads(r.out.strip().splitlines()[-1])


# ---- pool workers: encode and decode with Django's SessionStore ----

_W = {}


def worker_init(secret, users):
    import warnings

    warnings.filterwarnings("ignore")
    configure_django(secret)
    from django.contrib.sessions.backends.db import SessionStore

    _W["store"] = SessionStore()
    _W["users"] = users


def encode_chunk(job):
    """`count` login sessions for random users; returns (rows for the backend, sessions per user)."""
    idx, count, seed, kind = job
    rng = random.Random(f"{seed}:{idx}")
    store, users = _W["store"], _W["users"]
    now = datetime.now(timezone.utc)
    made = collections.Counter()
    rows = [] if kind == "sqlite" else None
    lines = []
    for _ in range(count):
        pk, _username, _email, auth_hash = users[rng.randrange(len(users))]
        key = "".join(rng.choices(KEY_CHARS, k=32))
        blob = store.encode({"_auth_user_id": pk, "_auth_user_backend": MODEL_BACKEND, "_auth_user_hash": auth_hash})
        expire = now + timedelta(seconds=rng.randrange(3600, SESSION_COOKIE_AGE), microseconds=rng.randrange(1, 10**6))
        made[pk] += 1
        if kind == "sqlite":
            # what Django's SQLite backend stores for an aware datetime with USE_TZ: naive UTC, str()
            rows.append((key, blob, str(expire.replace(tzinfo=None))))
        else:
            lines.append(f"{key}\t{blob}\t{expire.isoformat()}\n")  # COPY text format; no tabs/backslashes
    return (rows if kind == "sqlite" else "".join(lines).encode()), made


def census_chunk(blobs):
    store = _W["store"]
    c = collections.Counter()
    for b in blobs:
        c[store.decode(b).get("_auth_user_id")] += 1
    return c


# ------------------------------------------------------------------------------------------
# databases (the main process talks to them with the plain drivers)
# ------------------------------------------------------------------------------------------

class SqliteDB:
    kind = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self.url = f"sqlite://{path}"
        self.django = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
        self.version = f"SQLite {sqlite3.sqlite_version}"

    def connect(self):
        return sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)

    def rows(self, sql):
        con = self.connect()
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def load(self, chunks):
        con = self.connect()
        try:
            con.execute("BEGIN")
            for rows in chunks:
                con.executemany("INSERT INTO django_session (session_key, session_data, expire_date) VALUES (?, ?, ?)", rows)
            con.execute("COMMIT")
        finally:
            con.close()

    def blob_chunks(self, size):
        con = self.connect()
        try:
            cur = con.execute("SELECT session_data FROM django_session")
            while batch := cur.fetchmany(size):
                yield [r[0] for r in batch]
        finally:
            con.close()

    def analyze(self):
        pass

    def stop_other_queries(self):
        pass  # the killed process held the only other connection


class PostgresDB:
    kind = "postgres"

    def __init__(self, server, name):
        self.server = server
        self.url = server.url_for(name)
        self.django = server.django_database(name)
        self.version = server.psql("SHOW server_version").strip()
        self.version = f"PostgreSQL {self.version}"

    def connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def rows(self, sql):
        with self.connect() as con:
            return con.execute(sql).fetchall()

    def load(self, chunks):
        import psycopg

        with psycopg.connect(self.url) as con:  # one transaction, committed on exit
            with con.cursor() as cur:
                with cur.copy("COPY django_session (session_key, session_data, expire_date) FROM STDIN") as cp:
                    for data in chunks:
                        cp.write(data)

    def blob_chunks(self, size):
        import psycopg

        with psycopg.connect(self.url) as con:
            with con.cursor(name="census") as cur:  # server-side: rows arrive in batches
                cur.itersize = size
                cur.execute("SELECT session_data FROM django_session")
                while batch := cur.fetchmany(size):
                    yield [r[0] for r in batch]

    def analyze(self):
        # autovacuum would do this on its own within a minute; done here so every run plans alike
        with self.connect() as con:
            con.execute("ANALYZE")

    def stop_other_queries(self):
        with self.connect() as con:
            con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def scalar(db, sql):
    return db.rows(sql)[0][0]


# ------------------------------------------------------------------------------------------
# djauth
# ------------------------------------------------------------------------------------------

# Linux carries a process's peak RSS across fork and exec: a child of this (large) process
# reports at least this process's RSS as its ru_maxrss.  Children are therefore started by GNU
# time, a ~2 MiB process, which reports its own child's peak (%M).
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

Run = collections.namedtuple("Run", "wall rss_kb rc out err timed_out")


def spawn(argv, env, stdin=b"", timeout=None):
    """Run argv; wall time, peak RSS (KiB), exit status, output. On timeout the process group
    is killed and timed_out is set."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="djauth-bench-rss-") as rssf:
        fin.write(stdin)
        fin.seek(0)
        cmd = [TIME_BIN, "-f", "%M", "-o", rssf.name, *argv] if TIME_BIN else list(argv)
        t = time.perf_counter()
        p = subprocess.Popen([str(a) for a in cmd], stdin=fin, stdout=out, stderr=err, env=env, start_new_session=True)
        timed_out = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)  # our own session: GNU time and its child
            p.wait()
        wall = time.perf_counter() - t
        if TIME_BIN:
            lines = Path(rssf.name).read_text().split()
            rss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        else:
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # an upper bound only
        out.seek(0)
        err.seek(0)
        return Run(wall, rss, p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), timed_out)


class Djauth:
    def __init__(self, exe, db, secret, dj_version, timeout):
        self.exe = str(exe)
        self.db = db
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_")}
        self.env.update(
            DATABASE_URL=db.url,
            DJAUTH_SECRET_KEY=secret,
            DJAUTH_DJANGO_VERSION=dj_version,
            DJAUTH_USE_TZ="true",
            DJAUTH_TIME_ZONE="UTC",
            DJAUTH_PASSWORD_HASHERS=",".join(HASHERS),
            DJAUTH_SESSION_COOKIE_AGE=str(SESSION_COOKIE_AGE),
        )

    def run(self, *args, may_time_out=False):
        """Run djauth; returns (wall seconds, peak RSS in KiB, first stdout line), or
        (None, None, reason) for a command that did not finish within --timeout and
        may_time_out.  Exits on any other failure."""
        r = spawn([self.exe, *args], self.env, timeout=self.timeout)
        what = f"djauth {' '.join(map(str, args))}"
        if r.timed_out:
            self.db.stop_other_queries()  # the server would go on running the killed command's query
            if not may_time_out:
                sys.exit(f"{what} did not finish within {self.timeout} s")
            log(f"{what}: killed after {self.timeout} s")
            return None, None, f"did not finish within {self.timeout:.0f} s (killed)"
        if r.rc != 0:
            sys.exit(f"{what} failed (exit {r.rc}):\n{r.out}{r.err}")
        first = r.out.strip().splitlines()[0] if r.out.strip() else ""
        return r.wall, r.rss_kb, first


def leading_number(line):
    m = re.match(r"\s*([\d,_]+)", line)
    return int(m.group(1).replace(",", "").replace("_", "")) if m else None


def require_commands(exe):
    if not Path(exe).exists():
        sys.exit(f"{exe} not found (cargo build --release, or pass --djauth)")
    for args in (["sessions", "--help"], ["logout-user", "--help"]):
        p = subprocess.run([str(exe), *args], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{exe} has no `{' '.join(args[:-1])}` command yet:\n{p.stderr.strip()}")


# ------------------------------------------------------------------------------------------
# one backend
# ------------------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.failures = []

    def __call__(self, ok, what):
        if not ok:
            self.failures.append(what)
            log(f"CHECK FAILED: {what}")
        return ok


def census(db, pool):
    """Sessions per _auth_user_id, every row decoded by Django (None: no user / undecodable)."""
    counts = collections.Counter()
    for c in pool.imap_unordered(census_chunk, db.blob_chunks(20_000)):
        counts.update(c)
    return counts


def index_counts(db):
    return collections.Counter({str(u): n for u, n in db.rows(
        "SELECT user_id, COUNT(*) FROM djauth_session_index GROUP BY user_id")})


def diff_summary(a, b, limit=5):
    keys = sorted(set(a) | set(b), key=str)
    bad = [(k, a.get(k, 0), b.get(k, 0)) for k in keys if a.get(k, 0) != b.get(k, 0)]
    return f"{len(bad)} users differ, e.g. {bad[:limit]}"


def bench_backend(kind, args, secret, dj_version, stack, check):
    import multiprocessing

    r = {"backend": kind}
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="djauth-bench-sessions-")))
    if kind == "sqlite":
        db = SqliteDB(tmp / "db.sqlite3")
    else:
        import dbservers

        log("starting a throw-away PostgreSQL cluster")
        server = stack.enter_context(dbservers.postgres_server())
        server.create_database("bench")
        db = PostgresDB(server, "bench")
    r["version"] = db.version
    dj = Djauth(args.djauth, db, secret, dj_version, args.timeout)

    log(f"{kind}: djauth migrate")
    dj.run("migrate")
    log(f"{kind}: creating {args.users:,} users (Django bulk_create)")
    users = run_task("create-users", db, secret, n=args.users)

    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(os.cpu_count() or 2, initializer=worker_init, initargs=(secret, users))
    stack.callback(pool.terminate)

    log(f"{kind}: encoding and inserting {args.sessions:,} Django session blobs")
    expected = collections.Counter()
    jobs = [(i, min(CHUNK, args.sessions - start), args.seed, kind) for i, start in enumerate(range(0, args.sessions, CHUNK))]

    def payloads():
        for data, made in pool.imap_unordered(encode_chunk, jobs):
            expected.update(made)
            yield data

    t = time.perf_counter()
    db.load(payloads())
    r["load_s"] = time.perf_counter() - t
    n_rows = scalar(db, "SELECT COUNT(*) FROM django_session")
    n_queue = scalar(db, "SELECT COUNT(*) FROM djauth_session_queue")
    check(n_rows == args.sessions, f"{kind}: {n_rows} django_session rows, expected {args.sessions}")
    check(n_queue == args.sessions, f"{kind}: {n_queue} queue entries after the load, expected {args.sessions}")
    log(f"{kind}: loaded in {r['load_s']:.1f} s; {n_queue:,} queued")

    log(f"{kind}: djauth sessions catch-up (all {n_queue:,} queued)")
    r["first_catchup_s"], r["first_catchup_rss_kb"], line = dj.run("sessions", "catch-up")
    r["first_catchup_line"] = line
    check(leading_number(line) == n_queue, f"{kind}: first catch-up said {line!r}, expected {n_queue} entries")
    check(scalar(db, "SELECT COUNT(*) FROM djauth_session_index") == args.sessions, f"{kind}: index rows after the first catch-up")

    log(f"{kind}: djauth sessions reindex")
    r["reindex_s"], r["reindex_rss_kb"], r["reindex_line"] = dj.run("sessions", "reindex", may_time_out=True)
    if check(r["reindex_s"] is not None, f"{kind}: djauth sessions reindex {r['reindex_line']}"):
        check(scalar(db, "SELECT COUNT(*) FROM djauth_session_index") == args.sessions, f"{kind}: index rows after reindex")
        check(index_counts(db) == expected, f"{kind}: index after reindex vs inserted: {diff_summary(index_counts(db), expected)}")

    # baseline: a no-op command that starts, reads settings, connects and finds the queue empty
    dj.run("sessions", "catch-up")  # whatever reindex left queued (nothing, normally)
    noop = []
    for _ in range(args.rounds):
        wall, _, line = dj.run("sessions", "catch-up")
        check(leading_number(line) == 0, f"{kind}: catch-up with an empty queue said {line!r}")
        noop.append(wall)
    r["noop_s"] = median(noop)
    r["version_s"] = median([dj.run("--version")[0] for _ in range(args.rounds)])

    log(f"{kind}: {args.rounds} rounds of 1,000 Django-made sessions + catch-up")
    cu, made_s = [], []
    for i in range(args.rounds):
        res = run_task("make-sessions", db, secret, n=1000, seed=f"{args.seed}:round{i}")
        expected.update(res["made"])
        made_s.append(res["seconds"])
        wall, _, line = dj.run("sessions", "catch-up")
        check(leading_number(line) == 1000, f"{kind}: catch-up after 1,000 new sessions said {line!r}")
        cu.append(wall)
    r["catchup_1000_s"] = cu
    r["django_make_1000_s"] = median(made_s)
    db.analyze()

    log(f"{kind}: census (every row decoded by Django)")
    before = census(db, pool)
    check(before.get(None, 0) == 0, f"{kind}: {before.get(None, 0)} rows decode to no user")
    check(before == expected, f"{kind}: Django's decoding vs inserted: {diff_summary(before, expected)}")
    check(index_counts(db) == before, f"{kind}: index vs Django's decoding: {diff_summary(index_counts(db), before)}")
    r["total_sessions"] = sum(before.values())

    rng = random.Random(f"{args.seed}:targets")
    targets = rng.sample(users, min(len(users), 2 * args.logouts + 1))
    dj_target, api_targets, targets = targets[-1], targets[args.logouts:-1], targets[:args.logouts]
    forms = [("username", lambda u: [u[1]]), ("--id", lambda u: ["--id", u[0]]), ("--email", lambda u: ["--email", u[2]])]
    lo = []
    for i, u in enumerate(targets):
        form, argv = forms[i % len(forms)]
        wall, rss, line = dj.run("logout-user", *argv(u))
        ended = leading_number(line)
        check(ended == before[u[0]], f"{kind}: logout-user {form} {u[1]} said {line!r}, the user had {before[u[0]]} sessions")
        lo.append({"user": u[1], "form": form, "sessions": before[u[0]], "ended": ended, "s": wall, "rss_kb": rss})
    r["logouts"] = lo

    log(f"{kind}: admin API DELETE /api/v1/admin/users/{{pk}}/sessions for {len(api_targets)} users (djauth serve)")
    r["api_logouts"] = api_revocations(dj, api_targets, before, kind, check)

    log(f"{kind}: census after logout-user and the admin API")
    after = census(db, pool)
    gone = {u[0] for u in targets + api_targets}
    for u in targets + api_targets:
        check(after.get(u[0], 0) == 0, f"{kind}: {after.get(u[0], 0)} sessions of {u[1]} left after logout-user")
    others_before = {k: v for k, v in before.items() if k not in gone}
    others_after = {k: v for k, v in after.items() if k not in gone}
    check(others_before == others_after, f"{kind}: other users' sessions changed: {diff_summary(others_after, others_before)}")
    check(index_counts(db) == after, f"{kind}: index vs Django's decoding after logout-user: {diff_summary(index_counts(db), after)}")
    pool.close()
    pool.join()

    log(f"{kind}: Django's loop over Session.objects.all() for {dj_target[1]} ({before[dj_target[0]]} sessions)")
    rows_before = scalar(db, "SELECT COUNT(*) FROM django_session")
    res = run_task("django-logout", db, secret, uid=dj_target[0])
    check(res["deleted"] == before[dj_target[0]], f"{kind}: Django's loop deleted {res['deleted']}, the user had {before[dj_target[0]]}")
    check(scalar(db, "SELECT COUNT(*) FROM django_session") == rows_before - res["deleted"], f"{kind}: row count after Django's loop")
    left = scalar(db, f"SELECT COUNT(*) FROM djauth_session_index WHERE user_id = '{dj_target[0]}'")
    check(left == 0, f"{kind}: {left} index rows left for {dj_target[1]} after Django deleted the sessions (delete trigger)")
    r["django"] = dict(res, user=dj_target[1], rows=rows_before)
    return r


def api_revocations(dj, users, before, kind, check):
    """Each user's sessions ended through `DELETE /api/v1/admin/users/{pk}/sessions` on a
    running `djauth serve` (index caught up, one kept-alive connection, as an admin tool or
    another service would call it); the client-side time of each request."""
    import http.client

    from _common import free_port, start_djauth, stop, wait_port

    token = "bench-" + "".join(random.choices(string.ascii_letters, k=32))
    port = free_port()
    env = dict(dj.env, DJAUTH_ALLOWED_HOSTS="127.0.0.1", DJAUTH_ADMIN_API_TOKEN=token)
    server = start_djauth(dj.exe, env, port)
    out = []
    try:
        wait_port(port, server, "djauth serve")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}"}
        # One warm-up request (connection, first query plans), on a user with no sessions.
        conn.request("GET", "/api/v1/admin/users/0/sessions", headers=headers)
        conn.getresponse().read()
        for u in users:
            t = time.perf_counter()
            conn.request("DELETE", f"/api/v1/admin/users/{u[0]}/sessions", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            wall = time.perf_counter() - t
            ended = json.loads(body).get("ended") if resp.status == 200 else None
            check(ended == before[u[0]], f"{kind}: API revocation of {u[1]} answered {resp.status} {body[:200]!r}, the user had {before[u[0]]} sessions")
            out.append({"user": u[1], "sessions": before[u[0]], "ended": ended, "s": wall})
        conn.close()
    finally:
        stop(server)
    return out


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------

def ms(s):
    return f"{s * 1e3:,.1f} ms"


def secs(s):
    return f"{s:,.2f} s" if s < 100 else f"{s:,.0f} s"


def mib(kb):
    return f"{kb / 1024:,.1f} MiB" if kb < 100 * 1024 else f"{kb / 1024:,.0f} MiB"


def summarize(r):
    lo = [x["s"] for x in r["logouts"]]
    r["logout_median_s"], r["logout_max_s"] = median(lo), max(lo)
    r["logout_sessions"] = [x["sessions"] for x in r["logouts"]]
    r["catchup_1000_median_s"] = median(r["catchup_1000_s"])
    r["ratio"] = r["django"]["seconds"] / r["logout_median_s"]
    api = [x["s"] for x in r["api_logouts"]]
    r["api_median_s"], r["api_max_s"] = median(api), max(api)
    r["api_ratio"] = r["django"]["seconds"] / r["api_median_s"]
    net = r["logout_median_s"] - r["noop_s"]
    r["ratio_net"] = r["django"]["seconds"] / net if net > 0 else float("inf")
    return r


def print_table(r, args):
    rows = [
        ("database", r["version"]),
        ("users / sessions", f"{args.users:,} / {r['total_sessions']:,} at the census (about {r['total_sessions'] / args.users:,.0f} per user)"),
        ("load: encode on all cores + bulk insert (triggers queue each row)", secs(r["load_s"])),
        ("djauth sessions catch-up, first (all queued)",
         f"{secs(r['first_catchup_s'])}  ({args.sessions / r['first_catchup_s']:,.0f} sessions/s, peak RSS {mib(r['first_catchup_rss_kb'])})"),
        ("djauth sessions reindex", r["reindex_line"] if r["reindex_s"] is None else
         f"{secs(r['reindex_s'])}  ({args.sessions / r['reindex_s']:,.0f} sessions/s, peak RSS {mib(r['reindex_rss_kb'])})"),
        ("no-op djauth (catch-up, empty queue), median", f"{ms(r['noop_s'])}   (djauth --version: {ms(r['version_s'])})"),
        (f"catch-up after 1,000 Django-made sessions, median of {args.rounds}",
         f"{ms(r['catchup_1000_median_s'])}  (min {ms(min(r['catchup_1000_s']))}, max {ms(max(r['catchup_1000_s']))}; "
         f"minus no-op {ms(r['catchup_1000_median_s'] - r['noop_s'])}; Django took {ms(r['django_make_1000_s'])} to make them)"),
        (f"djauth logout-user, {len(r['logouts'])} users ({min(r['logout_sessions'])}-{max(r['logout_sessions'])} sessions each)",
         f"median {ms(r['logout_median_s'])}, max {ms(r['logout_max_s'])}; minus no-op {ms(r['logout_median_s'] - r['noop_s'])}"),
        (f"admin API DELETE …/users/{{pk}}/sessions, {len(r['api_logouts'])} users "
         f"({min(x['sessions'] for x in r['api_logouts'])}-{max(x['sessions'] for x in r['api_logouts'])} sessions each)",
         f"median {ms(r['api_median_s'])}, max {ms(r['api_max_s'])}"),
        (f"Django's loop over Session.objects.all(), one user ({r['django']['deleted']} sessions)",
         f"{secs(r['django']['seconds'])}, peak RSS {mib(r['django']['rss_peak_kb'])} (after setup {mib(r['django']['rss_before_kb'])})"),
        ("ratio Django loop / logout-user (median)", f"{r['ratio']:,.0f}x   (against logout-user minus no-op: "
         + (f"{r['ratio_net']:,.0f}x)" if r["ratio_net"] != float("inf") else "n/a, within noise)")),
        ("ratio Django loop / admin API revocation (median)", f"{r['api_ratio']:,.0f}x"),
    ]
    w = max(len(a) for a, _ in rows)
    print(f"\n== {r['backend']} ==")
    for a, b in rows:
        print(f"  {a.ljust(w)}  {b}")
    for x in r["logouts"]:
        print(f"    logout-user {x['form']:<8} {x['user']}: {x['ended']} sessions ended in {ms(x['s'])} (peak RSS {mib(x['rss_kb'])})")
    for x in r["api_logouts"]:
        print(f"    admin API {x['user']}: {x['ended']} sessions ended in {ms(x['s'])}")


def markdown(results, args, started, load, versions, check):
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip or a == "--markdown" or a.startswith("--results="):
            skip = False
            continue
        if a == "--results":
            skip = True
            continue
        argv.append(a)
    py = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else "python"
    cmd = " ".join([py, "bench/sessions.py", *map(shlex.quote, argv)])
    out = [
        f"## `bench/sessions.py` — ending one user's sessions through the session index (issue 5)",
        "",
        "```",
        cmd.strip(),
        "```",
        "",
        f"{os.cpu_count()} cores, {platform.machine()}; Python {platform.python_version()}, Django {versions[1]}, "
        + ", ".join(r["version"] for r in results)
        + f"; load average {load:.1f} at the start, "
        + ", ".join(f"{r['load_end']:.1f} after {r['backend']}" for r in results)
        + " (the machine is shared: other builds and tests may run). Sessions: Django-made login blobs spread at random over the users; "
        "PostgreSQL is a throw-away cluster with fsync off, SQLite a file in /tmp. "
        "`no-op` is `djauth sessions catch-up` with an empty queue (process start, settings, connection). "
        f"Correctness (Django decodes every row before and after): {'all checks passed' if not check.failures else 'FAILED: ' + '; '.join(check.failures)}.",
        "",
        "| date | backend | users / sessions | first catch-up (all queued) | reindex | catch-up of 1,000 new (median of "
        f"{args.rounds}) | no-op djauth (median) | logout-user median / max ({args.logouts} users) | admin API revocation median / max ({args.logouts} users) | Django loop, one user: time / peak RSS | ratio Django / logout-user | ratio Django / API |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {started} | {r['version']} | {args.users:,} / {args.sessions:,} (+{args.rounds}×1,000) "
            f"| {secs(r['first_catchup_s'])} | {r['reindex_line'] if r['reindex_s'] is None else secs(r['reindex_s'])} "
            f"| {ms(r['catchup_1000_median_s'])} | {ms(r['noop_s'])} | {ms(r['logout_median_s'])} / {ms(r['logout_max_s'])} "
            f"| {ms(r['api_median_s'])} / {ms(r['api_max_s'])} "
            f"| {secs(r['django']['seconds'])} / {mib(r['django']['rss_peak_kb'])} | **{r['ratio']:,.0f}×** | **{r['api_ratio']:,.0f}×** |"
        )
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--djauth", default=str(REPO / "target" / "release" / "djauth"))
    ap.add_argument("--rounds", type=int, default=5, help="catch-up rounds of 1,000 new sessions; also no-op repeats")
    ap.add_argument("--logouts", type=int, default=6, help="users logged out by djauth logout-user")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before a djauth command is killed (default 900); "
                    "a reindex that runs out is reported and the run goes on")
    ap.add_argument("--markdown", action="store_true", help="print a section for bench/RESULTS.md")
    ap.add_argument("--results", metavar="FILE", help="append that section to FILE")
    ap.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.task:
        return task_main(args.task)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgres"):
            sys.exit(f"unknown backend {b!r} (sqlite, postgres)")
    if args.users < args.logouts + 1:
        sys.exit("--users must exceed --logouts")
    require_commands(args.djauth)
    versions = django_version()
    secret = "bench-sessions-" + "".join(random.SystemRandom().choices(string.ascii_letters + string.digits, k=40))
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    check = Checks()
    results = []
    print(f"{os.cpu_count()} cores, load {load:.1f}; Django {versions[1]}, Python {platform.python_version()}; "
          f"{args.users:,} users, {args.sessions:,} sessions; djauth {args.djauth}", flush=True)
    for kind in backends:
        with ExitStack() as stack:
            t = time.perf_counter()
            r = summarize(bench_backend(kind, args, secret, versions[0], stack, check))
            r["wall_s"] = time.perf_counter() - t
            r["load_end"] = os.getloadavg()[0]
            results.append(r)
            print_table(r, args)
            print(f"  ({kind} took {secs(r['wall_s'])} in all; load average now {r['load_end']:.1f})", flush=True)
    print(f"\ntotal {secs(time.perf_counter() - t0)}; checks: {'all passed' if not check.failures else f'{len(check.failures)} FAILED'}")
    for f in check.failures:
        print(f"  FAILED: {f}")
    md = markdown(results, args, started, load, versions, check)
    if args.markdown:
        print("\n" + md)
    if args.results:
        with open(args.results, "a") as f:
            f.write("\n" + md)
        print(f"appended to {args.results}")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())

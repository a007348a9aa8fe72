"""Soak test: two `djauth serve` instances and a live Django on one throw-away PostgreSQL, under
mixed load for N minutes, with the database stopped for a few seconds and started again mid-run
(issue 7).

    python bench/soak.py [--minutes 5] [--workers 12] [--no-restart] [--djauth PATH] [--markdown]
                         [--users-per-worker 4] [--outage-seconds 5] [--grace 5] [--rss-interval 2]
                         [--rss-csv FILE] [--seed N] [--keep] [--build] [--stale-ok]
    python bench/soak.py --minutes 0.5          # smoke: about 40 s in all on 2 busy cores

Needs: Django 5.2, gunicorn and psycopg 3 in this Python (target/compat-venvs/django-5.2/bin/python
after `make test`), PostgreSQL's server binaries (compat-tests/dbservers.py), and a release build of
djauth: a target/release/djauth older than the newest file in src/ is refused unless --build is
given (which runs `cargo build --release --features mysql`), or --stale-ok (the report then says
so). `--djauth PATH` runs another binary unchecked (the report names it): the compatibility suite
runs the smoke on its debug build (compat-tests/test_soak_smoke.py). The binary is copied into
the run's temporary directory first, so a rebuild during the run cannot change what is measured.
Servers' stderr goes to files in that directory, which is kept (and named) when the run fails, or
with --keep; `kill -USR1` prints every thread's stack.

Set-up: one PostgreSQL database migrated by `djauth migrate`; two `djauth serve` processes (A and
B, one worker per core each) and Django under gunicorn (one sync worker per core, startproject's
middleware minus messages, django.contrib.auth.urls plus a login_required page /who), all with
the same SECRET_KEY. Passwords use the MD5 hasher on both sides (as the compatibility tests do),
so that logins cost no PBKDF2 time on the two shared cores and never rehash.

Load: --workers threads, each owning its own --users-per-worker users, so that everything done to
one user happens in one thread and the script always knows which of that user's sessions must be
valid. Each step picks one of: a logged-in page (djauth A/B: /accounts/password_change/,
/api/v1/me; Django: /who, /accounts/password_change/), forward-auth /auth/verify on A or B, a login
(A, B or Django: GET the form, POST it), a logout (POST with the page's CSRF token, any side), a
password change (djauth A/B or Django), a revocation (`djauth logout-user`, or the admin API
`DELETE /api/v1/admin/users/{pk}/sessions` on A or B with DJAUTH_ADMIN_API_TOKEN), or an anonymous
request. Identities are checked (the username in /api/v1/me, /who and X-Auth-Username). After
every logout, password change and revocation, the ended sessions are asked for on another server
and must be anonymous there ("ended sessions still valid").

Outage: at half time the PostgreSQL postmaster gets SIGINT (fast shutdown), stays down for
--outage-seconds, and is started again on the same data directory and port. The outage window is
from the stop to --grace seconds after the restarted server accepts connections; a request counts
as inside it when its [start, end] overlaps the window. Inside the window, 5xx answers, transport
errors, and logged-out answers for live sessions are expected; a user touched by a mutating
request that failed there (logout, password change, revocation: did it take effect?) is left
alone until the window has ended, then resolved: its password is found by logging in, and each of
its sessions is asked for again (valid: still live; anonymous: ended by that request).

Session accounting: every session the load created (a login's cookie, or the new key of a password
change) must end the run either valid on all three servers (checked at the end on A's /api/v1/me,
B's /auth/verify and Django's /who) or ended by a logout, password change or revocation the script
made. A live session answered as logged out outside the window, or not valid at the end, is a
"lost session". Lost and still-valid sessions are reported with their user, key prefix, times (also
in UTC, to match the servers' logs) and every request made with them.

Reported but not judged: djauth_session_index against django_session after a final
`djauth sessions catch-up` (entries whose row is gone; rows naming a user that are not indexed),
and client-side latency percentiles per endpoint outside the window.

RSS: VmRSS of each djauth process from /proc/PID/status every --rss-interval seconds; the first
minute (at most 40% of a shorter run) is warm-up. Flat means (max - min) / min <= --rss-tolerance
(10%) after warm-up; the least-squares trend and the highest value of each minute are printed too.

Pass: no 5xx and no transport errors outside the outage window, no lost sessions, no ended session
still valid, no wrong identity, no unexpected answer outside the window, RSS flat, both djauth
processes alive with no "panicked" in their stderr. Exit status 1 otherwise. --markdown prints a
section for bench/RESULTS.md.
"""

import argparse
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, free_port, machine_note, newest_source, stop, wait_port, write_django_site  # noqa: E402

sys.path.insert(0, str(REPO / "compat-tests"))
import dbservers  # noqa: E402

TIMEOUT = 15.0
RESOLVE_SECONDS = 30.0  # after the load stops, how long a worker may take to settle its users
TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"')
ADMIN_TOKEN = secrets.token_urlsafe(32)

DJANGO_URLS = '''
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("who", login_required(lambda request: HttpResponse(request.user.get_username()))),
]
'''
FORM = "<form method=post>{% csrf_token %}{{ form.as_p }}</form>"
DJANGO_TEMPLATES = {
    "registration/login.html": FORM,
    "registration/password_change_form.html": FORM,
    "registration/password_change_done.html": "Password change successful",
    "registration/logged_out.html": "Logged out",
}
MAKE_USERS = r'''
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
out = {}
for name, password in json.loads(sys.argv[1]).items():
    out[name] = User.objects.create_user(name, name + "@example.com", password).pk
print(json.dumps(out))
'''


# ------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------

class Resp:
    __slots__ = ("status", "headers", "body", "cookies")

    def __init__(self, status, headers, body, cookies):
        self.status, self.headers, self.body, self.cookies = status, headers, body, cookies


class TransportError(Exception):
    pass


class Conn:
    """One worker's keep-alive connection to one server (gunicorn's sync workers close it)."""

    def __init__(self, port, user_agent):
        self.port = port
        self.user_agent = user_agent
        self.c = None

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None

    def request(self, method, path, body=None, cookies=None, headers=None):
        h = {"Host": "127.0.0.1", "User-Agent": self.user_agent}
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items() if v)
        if body is not None:
            body = urllib.parse.urlencode(body)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers or {})
        for _ in range(2):
            fresh = self.c is None
            if fresh:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                data = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if fresh:
                    raise TransportError(type(e).__name__) from e
                continue  # the server closed an idle keep-alive connection: the request was not read
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise TransportError(type(e).__name__) from e
            if r.will_close:
                self.close()
            cookies_set = {}
            hdrs = {}
            for k, v in r.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    cookies_set[name.strip()] = rest.split(";")[0]
                else:
                    hdrs[k.lower()] = v
            return Resp(r.status, hdrs, data.decode("utf-8", "replace"), cookies_set)
        raise TransportError("RemoteDisconnected")


# ------------------------------------------------------------------------------------------
# the outage window, shared by the main thread and the workers
# ------------------------------------------------------------------------------------------

class Window:
    def __init__(self, grace):
        self.grace = grace
        self.start = None  # stop sent
        self.ready = None  # restarted server accepts connections
        self.end = None    # ready + grace
        self.error = None  # the restart failed

    def overlaps(self, t0, t1):
        """Does [t0, t1] overlap the window (an open end counts as "still going")?"""
        if self.start is None or t1 < self.start:
            return False
        return self.end is None or t0 <= self.end

    def over(self, now=None):
        """No outage is going on or pending resolution: before it started, or after its end."""
        now = time.monotonic() if now is None else now
        return self.start is None or (self.end is not None and now > self.end)


# ------------------------------------------------------------------------------------------
# the model: users and their sessions
# ------------------------------------------------------------------------------------------

class Sess:
    __slots__ = ("key", "csrf", "user", "origin", "created", "state", "why", "ended_at", "history")

    def __init__(self, key, csrf, user, origin, created):
        self.key, self.csrf, self.user, self.origin, self.created = key, csrf, user, origin, created
        self.state = "live"  # live | ended | lost | suspect | uncertain
        self.why = None
        self.ended_at = None
        self.history = []  # (t, what): every request made with it, for the report

    def note(self, what):
        self.history.append((time.monotonic(), what))

    def describe(self):
        """Who, when (seconds into the load and UTC, to match the servers' logs), what happened."""
        h = "; ".join(f"{t - T0:.2f} {w}" for t, w in self.history[-12:])
        return (f"user {self.user.name} (pk {self.user.pk}), key {self.key[:8]}…, made by {self.origin} at "
                f"t={self.created - T0:.2f} s ({utc(self.created)}); history: {h}")

    def cookies(self):
        return {"sessionid": self.key, "csrftoken": self.csrf}


class User:
    def __init__(self, name, pk, password):
        self.name, self.pk, self.password = name, pk, password
        self.sessions = []  # live ones
        self.pending = []   # suspect / uncertain sessions, resolved after the window
        self.password_candidates = None  # set when a password change's outcome is unknown

    @property
    def frozen(self):
        return bool(self.pending) or self.password_candidates is not None


class Stats:
    def __init__(self):
        self.requests = []  # (t0, t1, label, status-or-error)
        self.created = Counter()
        self.ended = Counter()
        self.lost = []      # (reason, detail)
        self.zombies = []   # ended sessions still valid: detail strings
        self.wrong_user = []
        self.unexpected = []  # (t0, t1, label, status, what)
        self.notes = Counter()
        self.all_sessions = []
        self.short_revocations = []

    def merge(self, other):
        self.requests += other.requests
        self.created.update(other.created)
        self.ended.update(other.ended)
        self.lost += other.lost
        self.zombies += other.zombies
        self.wrong_user += other.wrong_user
        self.unexpected += other.unexpected
        self.notes.update(other.notes)
        self.short_revocations += other.short_revocations
        self.all_sessions += other.all_sessions


SERVERS = ("djauth-a", "djauth-b", "django")
DJAUTH = ("djauth-a", "djauth-b")


class Worker(threading.Thread):
    def __init__(self, idx, ports, users, window, stop_event, env, djauth, seed):
        super().__init__(name=f"soak-{idx}", daemon=True)
        self.conns = {name: Conn(port, f"djauth-soak/{idx}") for name, port in ports.items()}
        self.users = users
        self.window = window
        self.stop_event = stop_event
        self.env = env
        self.djauth = djauth
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.error = None

    # -- requests --------------------------------------------------------------------------

    def req(self, server, method, path, label=None, **kw):
        """One request, recorded under "server METHOD label". Returns (Resp or None, t0, t1)."""
        label = f"{server} {method} {label or path}"
        t0 = time.monotonic()
        try:
            r = self.conns[server].request(method, path, **kw)
            status = r.status
        except TransportError as e:
            r, status = None, f"error:{e}"
        t1 = time.monotonic()
        self.stats.requests.append((t0, t1, label, status))
        return r, t0, t1

    def failed(self, r):
        """A 5xx or a transport error: the request's outcome is unknown."""
        return r is None or r.status >= 500

    def unexpected(self, r, t0, t1, what):
        status = "error" if r is None else r.status
        if self.window.overlaps(t0, t1):
            self.stats.notes[f"unexpected answer inside the window ({what})"] += 1
        else:
            self.stats.unexpected.append((t0, t1, what, status, (r.body[:200] if r is not None else "")))

    def identity(self, server, sess, kind=None):
        got = self._identity(server, sess, kind)
        r = got[1]
        sess.note(f"{server} {'error' if r is None else r.status}: {got[0]}")
        return got

    def _identity(self, server, sess, kind=None):
        """Asks `server` who `sess` is. Returns "user" (the right one), "anon", "wrong", or
        "fail" (5xx / transport error / other), plus the request's t0, t1."""
        if server in DJAUTH:
            kind = kind or self.rng.choice(("me", "verify", "page"))
            if kind == "me":
                r, t0, t1 = self.req(server, "GET", "/api/v1/me", cookies=sess.cookies())
                if r is not None and r.status == 200:
                    return ("user" if json.loads(r.body).get("username") == sess.user.name else "wrong"), r, t0, t1
                if r is not None and r.status == 401:
                    return "anon", r, t0, t1
            elif kind == "verify":
                r, t0, t1 = self.req(server, "GET", "/auth/verify", cookies=sess.cookies())
                if r is not None and r.status == 200:
                    return ("user" if r.headers.get("x-auth-username") == sess.user.name else "wrong"), r, t0, t1
                if r is not None and r.status == 401:
                    return "anon", r, t0, t1
            else:
                r, t0, t1 = self.req(server, "GET", "/accounts/password_change/", cookies=sess.cookies())
                if r is not None and r.status == 200:
                    return "user", r, t0, t1
                if r is not None and r.status == 302 and r.headers.get("location", "").startswith("/accounts/login/"):
                    return "anon", r, t0, t1
        else:
            kind = kind or self.rng.choice(("who", "who", "page"))
            path = "/who" if kind == "who" else "/accounts/password_change/"
            r, t0, t1 = self.req(server, "GET", path, cookies=sess.cookies())
            if r is not None and r.status == 200:
                return ("user" if kind != "who" or r.body == sess.user.name else "wrong"), r, t0, t1
            if r is not None and r.status == 302 and r.headers.get("location", "").startswith("/accounts/login/"):
                return "anon", r, t0, t1
        return "fail", r, t0, t1

    def follow_cookies(self, sess, r, t0, t1, server):
        """Keeps the CSRF cookie current; a live session whose cookie is replaced or deleted
        without being asked is noted."""
        if r is None:
            return
        if "csrftoken" in r.cookies and r.cookies["csrftoken"] not in ('""', ""):
            sess.csrf = r.cookies["csrftoken"]
        new = r.cookies.get("sessionid")
        if new is not None and new != sess.key:
            what = "deleted" if new in ("", '""') else "new key"
            self.stats.notes[f"session cookie changed by {server} on a page request ({what})"] += 1

    # -- session bookkeeping ---------------------------------------------------------------

    def new_session(self, user, key, csrf, origin):
        s = Sess(key, csrf, user, origin, time.monotonic())
        s.note(f"created by {origin}")
        user.sessions.append(s)
        self.stats.created[origin] += 1
        self.stats.all_sessions.append(s)
        return s

    def end(self, sess, why):
        if sess in sess.user.sessions:
            sess.user.sessions.remove(sess)
        if sess in sess.user.pending:
            sess.user.pending.remove(sess)
        sess.state, sess.why, sess.ended_at = "ended", why, time.monotonic()
        sess.note(f"ended: {why}")
        self.stats.ended[why] += 1

    def lose(self, sess, reason, detail):
        if sess in sess.user.sessions:
            sess.user.sessions.remove(sess)
        if sess in sess.user.pending:
            sess.user.pending.remove(sess)
        sess.state, sess.why = "lost", reason
        self.stats.lost.append((reason, f"{detail}; {sess.describe()}"))

    def park(self, sess, state, why):
        """The session's fate is unknown until the window is over."""
        if sess in sess.user.sessions:
            sess.user.sessions.remove(sess)
        sess.state, sess.why = state, why
        sess.user.pending.append(sess)

    def anon_answer(self, sess, server, r, t0, t1, what):
        """A live session was answered as logged out."""
        if self.window.overlaps(t0, t1):
            self.stats.notes["live session answered as logged out inside the window"] += 1
            self.park(sess, "suspect", f"logged out by {server} inside the window")
        else:
            self.lose(sess, "answered as logged out", f"{what} on {server}: session made by {sess.origin} "
                      f"{time.monotonic() - sess.created:.0f} s earlier, user {sess.user.name}")

    def check_ended(self, sessions, exclude=None):
        """Each ended session must be anonymous on another server."""
        for s in sessions:
            server = self.rng.choice([x for x in SERVERS if x != exclude])
            got, r, t0, t1 = self.identity(server, s)
            if got in ("user", "wrong"):
                self.stats.zombies.append(f"{s.why}: still valid on {server} right after: {s.describe()}")
            elif got == "fail" and not self.window.overlaps(t0, t1):
                self.unexpected(r, t0, t1, f"ended-session check on {server}")

    # -- operations ------------------------------------------------------------------------

    def csrf_page(self, server, sess, path="/accounts/password_change/"):
        """GETs a logged-in form page for its CSRF token. Returns the token, or None after
        dealing with the answer (logged out → anon_answer; failure → nothing)."""
        r, t0, t1 = self.req(server, "GET", path, cookies=sess.cookies())
        sess.note(f"{server} GET {path} for a CSRF token: {'error' if r is None else r.status}")
        if r is not None and r.status == 200:
            self.follow_cookies(sess, r, t0, t1, server)
            m = TOKEN_RE.search(r.body)
            if m:
                return m.group(1)
            self.unexpected(r, t0, t1, f"no CSRF token in {path} on {server}")
            return None
        if r is not None and r.status == 302 and r.headers.get("location", "").startswith("/accounts/login/"):
            self.anon_answer(sess, server, r, t0, t1, f"GET {path}")
            return None
        if not self.failed(r):
            self.unexpected(r, t0, t1, f"GET {path} on {server}")
        return None

    def op_page(self, user):
        sess = self.rng.choice(user.sessions)
        server = self.rng.choice(SERVERS)
        got, r, t0, t1 = self.identity(server, sess)
        if got == "user":
            self.follow_cookies(sess, r, t0, t1, server)
        elif got == "anon":
            self.anon_answer(sess, server, r, t0, t1, "logged-in page")
        elif got == "wrong":
            self.stats.wrong_user.append(f"{server}: session of {user.name} answered as someone else")
        elif not self.failed(r):
            self.unexpected(r, t0, t1, f"logged-in page on {server}")

    def op_anonymous(self):
        server = self.rng.choice(SERVERS)
        if server in DJAUTH and self.rng.random() < 0.5:
            r, t0, t1 = self.req(server, "GET", "/auth/verify")
            ok = r is not None and r.status == 401
        else:
            r, t0, t1 = self.req(server, "GET", "/accounts/login/")
            ok = r is not None and r.status == 200
        if not ok and not self.failed(r):
            self.unexpected(r, t0, t1, f"anonymous request on {server}")

    def login(self, user, server, password=None):
        """Returns the new Sess, "refused" (wrong password), or None (failed)."""
        r, t0, t1 = self.req(server, "GET", "/accounts/login/")
        if r is None or r.status != 200:
            if not self.failed(r):
                self.unexpected(r, t0, t1, f"login form on {server}")
            return None
        m = TOKEN_RE.search(r.body)
        csrf = r.cookies.get("csrftoken")
        if not m or not csrf:
            self.unexpected(r, t0, t1, f"login form on {server} without a CSRF token")
            return None
        r, t0, t1 = self.req(server, "POST", "/accounts/login/",
                             body={"username": user.name, "password": password or user.password,
                                   "csrfmiddlewaretoken": m.group(1)},
                             cookies={"csrftoken": csrf})
        if r is not None and r.status == 302 and r.cookies.get("sessionid") not in (None, "", '""'):
            return self.new_session(user, r.cookies["sessionid"], r.cookies.get("csrftoken", csrf), f"login on {server}")
        if r is not None and r.status == 200 and "correct username and password" in r.body:
            return "refused"
        if not self.failed(r):
            self.unexpected(r, t0, t1, f"login POST on {server}")
        return None

    def op_login(self, user):
        server = self.rng.choice(SERVERS)
        got = self.login(user, server)
        if got == "refused":
            now = time.monotonic()
            self.stats.unexpected.append((now, now, f"login on {server} refused the current password", 200, user.name))

    def op_logout(self, user):
        sess = self.rng.choice(user.sessions)
        server = self.rng.choice(SERVERS)
        token = self.csrf_page(server, sess)
        if token is None:
            return
        r, t0, t1 = self.req(server, "POST", "/accounts/logout/", body={"csrfmiddlewaretoken": token},
                             cookies=sess.cookies())
        if r is not None and r.status == 200 and "Logged out" in r.body:
            self.end(sess, f"logout on {server}")
            self.check_ended([sess], exclude=server)
        elif self.failed(r):
            self.park(sess, "uncertain", f"logout on {server} answered {r.status if r else 'error'}")
        else:
            self.unexpected(r, t0, t1, f"logout POST on {server}")

    def op_password_change(self, user):
        sess = self.rng.choice(user.sessions)
        server = self.rng.choice(SERVERS)
        token = self.csrf_page(server, sess)
        if token is None:
            return
        new = secrets.token_urlsafe(12)
        r, t0, t1 = self.req(server, "POST", "/accounts/password_change/",
                             body={"old_password": user.password, "new_password1": new, "new_password2": new,
                                   "csrfmiddlewaretoken": token},
                             cookies=sess.cookies())
        if (r is not None and r.status == 302 and r.headers.get("location") == "/accounts/password_change/done/"
                and r.cookies.get("sessionid") not in (None, "", '""')):
            user.password = new
            others = [s for s in user.sessions if s is not sess]
            self.end(sess, f"key cycled by password change on {server}")
            for s in others:
                self.end(s, f"other session ended by password change on {server}")
            kept = self.new_session(user, r.cookies["sessionid"], r.cookies.get("csrftoken", sess.csrf),
                                    f"password change on {server}")
            self.check_ended([sess] + others, exclude=server)
            other = self.rng.choice([x for x in SERVERS if x != server])
            got, r2, t0, t1 = self.identity(other, kept)
            if got == "anon":
                self.anon_answer(kept, other, r2, t0, t1, "session kept by a password change")
            elif got == "wrong":
                self.stats.wrong_user.append(f"{other}: session kept by a password change answered as someone else")
        elif self.failed(r):
            user.password_candidates = [new, user.password]
            for s in list(user.sessions):
                self.park(s, "uncertain", f"password change on {server} answered {r.status if r else 'error'}")
        else:
            self.unexpected(r, t0, t1, f"password change POST on {server}")

    def op_revoke(self, user):
        how = self.rng.choice(("cli", "djauth-a", "djauth-b"))
        ended = None
        if how == "cli":
            t0 = time.monotonic()
            p = subprocess.run([self.djauth, "logout-user", user.name], env=self.env, capture_output=True, text=True)
            t1 = time.monotonic()
            self.stats.requests.append((t0, t1, "cli djauth logout-user", "exit 0" if p.returncode == 0 else f"exit {p.returncode}"))
            if p.returncode == 0:
                m = re.search(r"\d+", p.stdout)
                ended = int(m.group()) if m else -1
            failed = p.returncode != 0
            if failed and not self.window.overlaps(t0, t1):
                self.stats.unexpected.append((t0, t1, "djauth logout-user", f"exit {p.returncode}", p.stderr.strip()[:300]))
        else:
            r, t0, t1 = self.req(how, "DELETE", f"/api/v1/admin/users/{user.pk}/sessions",
                                 label="/api/v1/admin/users/{pk}/sessions",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            failed = self.failed(r)
            if r is not None and r.status == 200:
                ended = json.loads(r.body).get("ended")
            elif not failed:
                self.unexpected(r, t0, t1, f"admin revocation on {how}")
                return
        label = "logout-user" if how == "cli" else f"admin API on {how}"
        if failed:
            for s in list(user.sessions):
                self.park(s, "uncertain", f"revocation ({label}) failed")
            return
        mine = list(user.sessions)
        if ended is not None and ended < len(mine):
            self.stats.notes["revocation ended fewer sessions than the script holds"] += 1
            self.stats.short_revocations.append(f"{label} at t={t0 - T0:.2f} s ({utc(t0)}) for {user.name}: "
                                                f"ended {ended}, the script holds {len(mine)}")
        for s in mine:
            self.end(s, f"revoked ({label})")
        self.check_ended(mine)

    # -- resolving users touched inside the window ------------------------------------------

    def resolve(self, user):
        """After the window: finds the password (if a change's outcome was unknown) and asks
        again for every session whose fate was unknown."""
        if user.password_candidates is not None:
            for pw in user.password_candidates:
                got = None
                for _ in range(5):
                    got = self.login(user, self.rng.choice(SERVERS), password=pw)
                    if got is not None:
                        break
                    time.sleep(0.5)
                if got is None:
                    return False  # still failing: try again later
                if got != "refused":
                    user.password = pw
                    break
            else:
                now = time.monotonic()
                self.stats.unexpected.append((now, now, "neither the old nor the new password logs in", 200, user.name))
                return False
            user.password_candidates = None
        for s in list(user.pending):
            verdicts = []
            for server in SERVERS:
                got, r, t0, t1 = self.identity(server, s, kind="me" if server in DJAUTH else "who")
                verdicts.append(got)
            if "fail" in verdicts:
                return False
            if verdicts == ["user"] * 3:
                self.stats.notes["session answered as logged out inside the window: valid afterwards" if s.state == "suspect"
                                 else "session touched by a request that failed inside the window: valid afterwards"] += 1
                user.pending.remove(s)
                s.state, s.why = "live", None
                user.sessions.append(s)
            elif s.state == "uncertain" and verdicts == ["anon"] * 3:
                self.end(s, "ended by a request that failed inside the window")
            elif "wrong" in verdicts:
                self.stats.wrong_user.append(f"pending session of {user.name}: {verdicts}")
                self.lose(s, "wrong identity", str(verdicts))
            else:
                self.lose(s, "logged out across the outage", f"{s.why}; afterwards {dict(zip(SERVERS, verdicts))}")
        return True

    # -- loop ------------------------------------------------------------------------------

    def step(self):
        if self.window.over():
            for u in self.users:
                if u.frozen:
                    self.resolve(u)
        active = [u for u in self.users if not u.frozen]
        if not active:
            self.op_anonymous()
            time.sleep(0.05)
            return
        user = self.rng.choice(active)
        if not user.sessions:
            return self.op_login(user)
        x = self.rng.random() * 100
        if x < 45:
            return self.op_page(user)
        if x < 55:
            return self.op_anonymous()
        if x < 70:
            return self.op_logout(user) if len(user.sessions) >= 5 else self.op_login(user)
        if x < 84:
            return self.op_logout(user)
        if x < 93:
            return self.op_password_change(user)
        return self.op_revoke(user)

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.step()
            while not self.window.over():
                time.sleep(0.2)
            deadline = time.monotonic() + RESOLVE_SECONDS
            while any(u.frozen for u in self.users) and time.monotonic() < deadline:
                for u in self.users:
                    if u.frozen:
                        self.resolve(u)
                time.sleep(0.2)
        except Exception as e:  # a bug in this script: report it, do not hang the run
            import traceback
            self.error = traceback.format_exc()
        finally:
            for c in self.conns.values():
                c.close()


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------

class Restart:
    """The database outage, driven from the main thread's loop (`tick`): SIGINT to the
    postmaster (fast shutdown; dbservers' halt() where it exists), `outage` seconds after that
    the same command again (without blocking, so RSS sampling goes on), then the window ends
    `grace` seconds after the server accepts connections. The new postmaster must be
    started by the main thread: dbservers gives it PR_SET_PDEATHSIG, which fires when the
    *thread* that forked it exits (from a short-lived thread, the server would get SIGTERM, a
    smart shutdown, and refuse every new connection while djauth's pool holds one open)."""

    def __init__(self, server, window, at, outage, log):
        self.server, self.window, self.at, self.outage, self.log = server, window, at, outage, log
        self.state = "before"
        self.stopped = None

    def tick(self, now):
        w, srv = self.window, self.server
        try:
            if self.state == "before" and now >= self.at:
                w.start = time.monotonic()
                self.log(f"stopping PostgreSQL (SIGINT) at t={w.start - T0:.1f} s")
                if hasattr(srv, "halt"):
                    srv.halt()
                else:
                    srv.process.send_signal(signal.SIGINT)
                    srv.process.wait(timeout=30)
                self.stopped = time.monotonic()
                self.state = "down"
            elif self.state == "down" and now >= w.start + self.outage:
                if getattr(srv, "_spawned", None):
                    cmd, user = srv._spawned  # what dbservers started it with
                else:  # dbservers without halt()/restart(): the command postgres_server() uses
                    cmd = [srv.bindir / "postgres", "-D", srv.datadir, "-p", srv.port, "-k", srv.socket_dir,
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                           "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
                    user = srv.user
                srv._spawn(cmd, user)
                self.state = "starting"
            elif self.state == "starting":
                if srv.process.poll() is not None:
                    raise RuntimeError("postgres exited during the restart:\n" + dbservers._tail(srv.log))
                if now - w.start > 90:
                    raise RuntimeError("postgres not ready 90 s after the stop")
                if srv._ready():
                    w.ready = time.monotonic()
                    w.end = w.ready + w.grace
                    self.state = "done"
                    self.log(f"PostgreSQL stopped in {self.stopped - w.start:.1f} s, accepting again at "
                             f"t={w.ready - T0:.1f} s ({w.ready - w.start:.1f} s after the stop); "
                             f"window ends at t={w.end - T0:.1f} s")
        except Exception as e:
            w.error = f"{type(e).__name__}: {e}"
            w.ready = w.ready or time.monotonic()
            w.end = w.end or time.monotonic()
            self.state = "done"
            self.log(f"restart failed: {w.error}")


def proc_status(pid):
    """(VmRSS in KiB, thread count) from /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["Threads"])
    except (OSError, KeyError, ValueError):
        return None


def start_logged(cmd, env, logfile):
    f = open(logfile, "wb")
    try:
        return subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL, stderr=f)
    finally:
        f.close()


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))]


def slope_per_min(samples):
    """Least-squares slope of (t, kib) samples, in KiB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


T0 = time.monotonic()
WALL = time.time() - time.monotonic()


def utc(t):
    """A monotonic time as UTC wall-clock time (the servers' logs use it)."""
    w = WALL + t
    return time.strftime("%H:%M:%S", time.gmtime(w)) + f".{int(w % 1 * 1000):03d}Z"


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------

def main():
    global T0
    import faulthandler
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack on stderr

    def terminated(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")  # unwinds the ExitStack: servers stopped

    signal.signal(signal.SIGTERM, terminated)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=12, help="load threads (8-16 suits 2 cores)")
    ap.add_argument("--users-per-worker", type=int, default=4)
    ap.add_argument("--no-restart", action="store_true", help="no database outage")
    ap.add_argument("--outage-seconds", type=float, default=5.0, help="how long PostgreSQL stays down")
    ap.add_argument("--grace", type=float, default=5.0, help="seconds after the restart still inside the window")
    ap.add_argument("--rss-interval", type=float, default=2.0)
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--rss-csv", type=Path, help="write every RSS sample (seconds, process, KiB) to this file")
    ap.add_argument("--djauth", type=Path, default=None,
                    help="the binary to run (default target/release/djauth, which must not be older than src/)")
    ap.add_argument("--build", action="store_true", help="run cargo build --release --features mysql first")
    ap.add_argument("--stale-ok", action="store_true", help="run a binary older than src/ (the report says so)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) even on success")
    ap.add_argument("--markdown", action="store_true", help="print a section for bench/RESULTS.md")
    args = ap.parse_args()
    if args.build:
        subprocess.run(["cargo", "build", "--release", "--features", "mysql"], cwd=REPO, check=True)
    default_binary = args.djauth is None
    src = (REPO / "target" / "release" / "djauth" if default_binary else args.djauth).resolve()
    if not src.exists():
        sys.exit(f"{src} missing: cargo build --release --features mysql (or pass --build)")
    # Only the default release binary is checked: one named with --djauth (e.g. the debug build
    # compat-tests/test_soak_smoke.py runs) is the caller's choice, and is named in the report.
    stale = default_binary and src.stat().st_mtime < newest_source()
    if stale and not args.stale_ok:
        sys.exit(f"{src} is older than src/: cargo build --release --features mysql (or pass --build, or --stale-ok)")
    import django

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    duration = args.minutes * 60
    warmup = min(60.0, 0.4 * duration)
    note = machine_note() + ("; djauth binary OLDER than src/" if stale else "") + \
        ("" if default_binary else f"; djauth binary {src}")
    command = "python bench/soak.py " + " ".join(sys.argv[1:])

    def log(msg):
        print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    stats = Stats()
    failures = []
    window = Window(args.grace)
    rss = {"djauth-a": [], "djauth-b": []}
    threads = {"djauth-a": [], "djauth-b": []}
    tmp = Path(tempfile.mkdtemp(prefix="djauth-soak-"))
    ok = False
    with ExitStack() as stack:
        djauth = tmp / "djauth"
        shutil.copy2(src, djauth)
        server = stack.enter_context(dbservers.postgres_server())
        server.create_database("soak")
        pg_version = server.psql("SHOW server_version").strip()
        secret = secrets.token_urlsafe(40)
        env = dict(os.environ, DATABASE_URL=server.url_for("soak"), DJAUTH_SECRET_KEY=secret,
                   DJAUTH_ALLOWED_HOSTS="127.0.0.1", DJAUTH_DJANGO_VERSION="%d.%d" % django.VERSION[:2],
                   DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
                   DJAUTH_ADMIN_API_TOKEN=ADMIN_TOKEN)
        subprocess.run([djauth, "migrate"], env=env, check=True, capture_output=True)
        denv = write_django_site(tmp, secret, server.django_database("soak"), DJANGO_URLS, templates=DJANGO_TEMPLATES)
        passwords = {f"soak{w:02d}u{i}": secrets.token_urlsafe(12)
                     for w in range(args.workers) for i in range(args.users_per_worker)}
        pks = json.loads(subprocess.run([sys.executable, "-c", MAKE_USERS, json.dumps(passwords)], env=denv,
                                        check=True, capture_output=True, text=True).stdout)

        cores = os.cpu_count() or 2
        ports = {name: free_port() for name in SERVERS}
        procs = {}
        for name in DJAUTH:
            procs[name] = start_logged([djauth, "serve", "--bind", f"127.0.0.1:{ports[name]}"], env, tmp / f"{name}.log")
            stack.callback(stop, procs[name])
        procs["django"] = start_logged([sys.executable, "-m", "gunicorn", "-w", str(cores), "-b",
                                        f"127.0.0.1:{ports['django']}", "--log-level", "warning",
                                        "django.core.wsgi:get_wsgi_application()"], denv, tmp / "gunicorn.log")
        stack.callback(stop, procs["django"])
        for name in SERVERS:
            wait_port(ports[name], procs[name], name)

        rng = random.Random(seed)
        stop_event = threading.Event()
        workers = []
        for w in range(args.workers):
            users = [User(n, str(pks[n]), passwords[n]) for n in passwords if n.startswith(f"soak{w:02d}u")]
            workers.append(Worker(w, ports, users, window, stop_event, env, djauth, rng.randrange(1 << 30)))
        log(f"{len(passwords)} users, {args.workers} workers, {duration:.0f} s of load, seed {seed}; logs in {tmp}")
        T0 = time.monotonic()
        for wk in workers:
            wk.start()
        restart_at = T0 + duration / 2
        restart = None if args.no_restart else Restart(server, window, T0 + duration / 2, args.outage_seconds, log)
        next_sample = T0
        end_at = T0 + duration
        while True:
            now = time.monotonic()
            if now >= end_at and (restart is None or restart.state in ("before", "done")):
                break
            if now >= next_sample:
                for name in DJAUTH:
                    st = proc_status(procs[name].pid)
                    if st is not None:
                        rss[name].append((now - T0, st[0]))
                        threads[name].append(st[1])
                next_sample += args.rss_interval
            if restart is not None:
                restart.tick(now)
            time.sleep(0.05)
        stop_event.set()
        load_seconds = time.monotonic() - T0
        log("load stopped; resolving and checking every session")
        for wk in workers:
            deadline = time.monotonic() + 120
            while wk.is_alive() and time.monotonic() < deadline:
                wk.join(timeout=0.5)
            if wk.is_alive():
                failures.append(f"worker {wk.name} did not finish")
            if wk.error:
                failures.append(f"worker {wk.name} crashed:\n{wk.error}")
            stats.merge(wk.stats)

        # Final check: every live session valid on all three servers; every ended session
        # anonymous on B (and on Django for a sample).
        checker = Worker(-1, ports, [], window, stop_event, env, djauth, seed)
        live = [s for s in stats.all_sessions if s.state == "live"]
        valid_at_end = 0
        for s in live:
            verdicts = [checker.identity("djauth-a", s, "me")[0], checker.identity("djauth-b", s, "verify")[0],
                        checker.identity("django", s, "who")[0]]
            if verdicts == ["user"] * 3:
                valid_at_end += 1
            else:
                s.state = "lost"
                stats.lost.append(("not valid at the end", f"{s.describe()}: "
                                   f"{dict(zip(SERVERS, verdicts))}"))
        ended = [s for s in stats.all_sessions if s.state == "ended"]
        for s in ended:
            if checker.identity("djauth-b", s, "me")[0] in ("user", "wrong"):
                stats.zombies.append(f"{s.why}: valid on djauth-b at the end: {s.describe()}")
        for s in random.Random(seed).sample(ended, min(200, len(ended))):
            if checker.identity("django", s, "who")[0] in ("user", "wrong"):
                stats.zombies.append(f"{s.why}: valid on django at the end: {s.describe()}")
        final_requests = len(checker.stats.requests)
        final_failed = sum(1 for r in checker.stats.requests if not isinstance(r[3], int) or r[3] >= 500)
        if final_failed:
            failures.append(f"{final_failed} of the {final_requests} final-check requests failed (5xx / errors)")
        if window.error:
            failures.append(f"the database restart failed: {window.error}")
        unresolved = [s for s in stats.all_sessions if s.state in ("suspect", "uncertain")]
        rows = server.psql("SELECT count(*) FROM django_session", "soak").strip()
        index_rows = server.psql("SELECT count(*) FROM djauth_session_index", "soak").strip()
        # The session index against django_session, after a catch-up: entries whose session
        # row is gone, and rows the index does not know; each matched with the script's record.
        subprocess.run([djauth, "sessions", "catch-up"], env=env, capture_output=True)
        by_key = {s.key: s for s in stats.all_sessions}

        def describe(key, extra=""):
            s = by_key.get(key)
            if s is None:
                return f"{key[:8]}… not one the script holds{extra}"
            t = f"made by {s.origin} at t={s.created - T0:.1f} s"
            if s.ended_at is not None:
                t += f", {s.why} at t={s.ended_at - T0:.1f} s"
            else:
                t += f", {s.state}" + (f" ({s.why})" if s.why else "")
            return f"{key[:8]}… {t}{extra}"

        orphans = [line.split("|") for line in server.psql(
            "SELECT session_key, created, last_seen, coalesce(user_agent, '') FROM djauth_session_index i "
            "WHERE NOT EXISTS (SELECT 1 FROM django_session s WHERE s.session_key = i.session_key) "
            "ORDER BY created", "soak").splitlines() if line]
        orphans = [describe(k, f"; index row created {c}, last seen {ls}, agent {ua or '-'}") for k, c, ls, ua in orphans]
        # Rows without a user (e.g. a Django login that failed inside the window between
        # cycle_key's INSERT and the UPDATE carrying the user) are rightly not indexed.
        unindexed = []
        for line in server.psql(
                "SELECT session_key, session_data FROM django_session s WHERE NOT EXISTS "
                "(SELECT 1 FROM djauth_session_index i WHERE i.session_key = s.session_key)", "soak").splitlines():
            if not line.strip():
                continue
            key, _, blob = line.partition("|")
            decoded = subprocess.run([djauth, "session", "decode", blob], env=env, capture_output=True, text=True)
            try:
                owner = json.loads(decoded.stdout).get("_auth_user_id")
            except ValueError:
                owner = None
            if owner is not None:
                unindexed.append(describe(key, f"; its data names user id {owner}"))

        alive = {name: procs[name].poll() is None for name in DJAUTH}
        stop(procs["djauth-a"], procs["djauth-b"], procs["django"])
        logs = {name: (tmp / f"{name}.log").read_text(errors="replace") for name in DJAUTH}

    # --------------------------------------------------------------------------------------
    # report
    # --------------------------------------------------------------------------------------
    by_endpoint = defaultdict(Counter)
    latencies = defaultdict(list)  # outside the window only
    inside, outside = Counter(), Counter()
    for t0, t1, label, status in stats.requests:
        by_endpoint[label][status] += 1
        if not window.overlaps(t0, t1):
            latencies[label].append(1000 * (t1 - t0))
        bad = (not isinstance(status, int) and not status.startswith("exit 0")) or (isinstance(status, int) and status >= 500)
        if bad:
            kind = "5xx" if isinstance(status, int) else ("cli" if status.startswith("exit") else "error")
            (inside if window.overlaps(t0, t1) else outside)[kind] += 1
    outside_detail = Counter(f"{label} -> {status}" for t0, t1, label, status in stats.requests
                             if ((isinstance(status, int) and status >= 500) or
                                 (not isinstance(status, int) and status != "exit 0"))
                             and not window.overlaps(t0, t1))
    total = len(stats.requests)
    created = sum(stats.created.values())
    n_ended = sum(stats.ended.values())
    lost = len(stats.lost)
    unaccounted = created - valid_at_end - n_ended - lost - len(unresolved)

    rss_report = {}
    for name, samples in rss.items():
        after = [(t, v) for t, v in samples if t >= warmup]
        if not after:
            rss_report[name] = None
            continue
        lo, hi = min(v for _, v in after), max(v for _, v in after)
        rss_report[name] = {"first": after[0][1], "last": after[-1][1], "min": lo, "max": hi,
                            "spread": (hi - lo) / lo, "slope": slope_per_min(after), "n": len(after),
                            "peak_warmup": max((v for t, v in samples if t < warmup), default=None)}
    if args.rss_csv:
        with open(args.rss_csv, "w") as f:
            f.write("seconds,process,vmrss_kib\n")
            for name, samples in rss.items():
                for t, v in samples:
                    f.write(f"{t:.1f},{name},{v}\n")
    by_minute = {name: [max(v for t, v in samples if m * 60 <= t < (m + 1) * 60)
                        for m in range(int(max((t for t, _ in samples), default=0) // 60) + 1)
                        if any(m * 60 <= t < (m + 1) * 60 for t, _ in samples)]
                 for name, samples in rss.items()}
    panics = {name: text.count("panicked") for name, text in logs.items()}
    warn_lines = {name: Counter(re.sub(r"^\S+\s+", "", re.sub(r"\x1b\[[0-9;]*m", "", line)).strip()[:160]
                                for line in text.splitlines() if " WARN " in line or " ERROR " in line)
                  for name, text in logs.items()}

    if outside["5xx"]:
        failures.append(f"{outside['5xx']} 5xx answers outside the outage window")
    if outside["error"]:
        failures.append(f"{outside['error']} transport errors outside the outage window")
    if outside["cli"]:
        failures.append(f"{outside['cli']} failed `djauth logout-user` runs outside the outage window")
    if lost:
        failures.append(f"{lost} lost sessions")
    if unresolved:
        failures.append(f"{len(unresolved)} sessions whose fate could not be resolved")
    if unaccounted:
        failures.append(f"bookkeeping: {unaccounted} sessions unaccounted for (a bug in this script)")
    if stats.zombies:
        failures.append(f"{len(stats.zombies)} ended sessions still valid")
    if stats.wrong_user:
        failures.append(f"{len(stats.wrong_user)} answers with the wrong identity")
    if stats.unexpected:
        failures.append(f"{len(stats.unexpected)} unexpected answers outside the outage window")
    for name, r in rss_report.items():
        if r is None:
            failures.append(f"{name}: no RSS samples after warm-up")
        elif r["spread"] > args.rss_tolerance:
            failures.append(f"{name}: RSS not flat after warm-up ({r['min']} .. {r['max']} KiB, "
                            f"{100 * r['spread']:.1f}% > {100 * args.rss_tolerance:.0f}%)")
    for name in DJAUTH:
        if not alive[name]:
            failures.append(f"{name} exited during the run")
        if panics[name]:
            failures.append(f"{name}: {panics[name]} 'panicked' in stderr")

    out = []
    p = out.append
    p(f"soak: {load_seconds:.0f} s of load, {args.workers} workers, {len(passwords)} users, seed {seed}")
    p(f"machine: {note}; PostgreSQL {pg_version}")
    if window.start is not None:
        p(f"outage: PostgreSQL stopped at t={window.start - T0:.1f} s, accepting again at t={window.ready - T0:.1f} s "
          f"({window.ready - window.start:.1f} s); window until t={window.end - T0:.1f} s (grace {args.grace:.0f} s)")
    else:
        p("outage: none (--no-restart)")
    p(f"requests: {total} in {load_seconds:.0f} s ({total / load_seconds:.0f}/s), plus {final_requests} in the final check")
    p("")
    p("requests by endpoint and status (latency p50/p99 outside the window):")
    width = max(len(k) for k in by_endpoint) if by_endpoint else 10
    for label in sorted(by_endpoint):
        c = by_endpoint[label]
        lat = latencies[label]
        p(f"  {label:<{width}}  {pct(lat, 50):7.1f} /{pct(lat, 99):7.1f} ms  "
          + "  ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))))
    p("")
    p(f"5xx inside the window: {inside['5xx']}, outside: {outside['5xx']}")
    p(f"transport errors inside the window: {inside['error']}, outside: {outside['error']}")
    p(f"failed logout-user runs inside the window: {inside['cli']}, outside: {outside['cli']}")
    for k, v in outside_detail.most_common(10):
        p(f"  outside: {k}: {v}")
    p("")
    p(f"sessions created: {created} ({', '.join(f'{k}: {v}' for k, v in sorted(stats.created.items()))})")
    p(f"  valid on all three servers at the end: {valid_at_end}")
    p(f"  ended by the script: {n_ended}")
    for k, v in sorted(stats.ended.items()):
        p(f"    {k}: {v}")
    p(f"  lost: {lost}")
    for reason, detail in stats.lost[:20]:
        p(f"    {reason}: {detail}")
    if unresolved:
        p(f"  unresolved: {len(unresolved)}")
    p(f"  unaccounted (bookkeeping check): {unaccounted}")
    for d in stats.short_revocations[:10]:
        p(f"revocation that ended fewer sessions than the script holds: {d}")
    p(f"ended sessions still valid: {len(stats.zombies)}")
    for z in stats.zombies[:10]:
        p(f"  {z}")
    p(f"wrong identity: {len(stats.wrong_user)}")
    for z in stats.wrong_user[:10]:
        p(f"  {z}")
    p(f"unexpected answers outside the window: {len(stats.unexpected)}")
    for t0, t1, what, status, body in stats.unexpected[:10]:
        p(f"  t={t0 - T0:.1f} s {what}: {status} {body!r}")
    for k, v in sorted(stats.notes.items()):
        p(f"note: {k}: {v}")
    p(f"django_session rows at the end: {rows}; djauth_session_index rows: {index_rows}")
    p(f"session index after a catch-up (reported, not judged): {len(orphans)} entries whose django_session row is gone, "
      f"{len(unindexed)} rows of a user not indexed")
    for d in orphans[:10]:
        p(f"  index entry without a session: {d}")
    for d in unindexed[:10]:
        p(f"  session not indexed: {d}")
    p("")
    p(f"RSS (VmRSS, KiB) every {args.rss_interval:g} s, warm-up {warmup:.0f} s:")
    for name, r in rss_report.items():
        if r is None:
            p(f"  {name}: no samples")
            continue
        p(f"  {name}: peak in warm-up {r['peak_warmup']}, after: first {r['first']}, last {r['last']}, "
          f"min {r['min']}, max {r['max']}, spread {100 * r['spread']:.1f}% ({r['n']} samples), "
          f"trend {r['slope']:+.0f} KiB/min")
        p(f"    highest per minute (MiB): " + " ".join(f"{v / 1024:.1f}" for v in by_minute[name]))
        p(f"    threads: first sample {threads[name][0]}, last {threads[name][-1]}, most {max(threads[name])}")
    for name in DJAUTH:
        p(f"{name} stderr: {'alive' if alive[name] else 'EXITED'}, {panics[name]} 'panicked', "
          f"{sum(warn_lines[name].values())} WARN/ERROR lines")
        for line, n in warn_lines[name].most_common(5):
            p(f"  {n} x {line}")
    p("")
    p("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    print("\n".join(out))

    if args.markdown:
        md = markdown(command, note, pg_version, args, load_seconds, window, total, by_endpoint, latencies, inside,
                      outside, stats, created, valid_at_end, n_ended, lost, rss_report, warmup, failures, panics,
                      orphans, unindexed, by_minute)
        print()
        print(md)

    ok = not failures
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}", file=sys.stderr)
    sys.exit(0 if ok else 1)


def markdown(command, note, pg_version, args, load_seconds, window, total, by_endpoint, latencies, inside, outside,
             stats, created, valid_at_end, n_ended, lost, rss_report, warmup, failures, panics, orphans, unindexed,
             by_minute):
    date = time.strftime("%Y-%m-%d %H:%M")
    lines = [f"### {date} — {load_seconds / 60:.1f} min, {args.workers} workers", "", "```", command, "```", "",
             f"{note}; PostgreSQL {pg_version} (throw-away cluster, fsync off). "
             f"Two `djauth serve` (one worker per core each) and Django under gunicorn (one sync worker per core) "
             f"on one database, all on the same cores as the {args.workers} load threads "
             f"({args.workers * args.users_per_worker} users). Latencies are measured by the Python client, "
             f"whose threads share the cores with the servers, so they include client-side queueing."]
    if window.start is not None:
        lines.append(f"Database stopped at {window.start - T0:.0f} s for {window.ready - window.start:.1f} s "
                     f"(stop to accepting again); window = that plus {args.grace:.0f} s.")
    lines += ["", f"{total:,} requests ({total / load_seconds:.0f}/s).", "",
              "| endpoint | answers | p50 / p99 outside the window |", "|---|---|---|"]
    for label in sorted(by_endpoint):
        c = by_endpoint[label]
        lat = latencies[label]
        lines.append(f"| `{label}` | " + ", ".join(f"{k}: {v:,}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))
                     + f" | {pct(lat, 50):.1f} / {pct(lat, 99):.1f} ms |")
    lines += ["", "| check | result |", "|---|---|",
              f"| 5xx inside / outside the outage window | {inside['5xx']} / **{outside['5xx']}** |",
              f"| transport errors inside / outside | {inside['error']} / **{outside['error']}** |",
              f"| sessions created | {created:,} |",
              f"| valid on A, B and Django at the end | {valid_at_end:,} |",
              f"| ended by the script's logouts, password changes, revocations | {n_ended:,} |",
              f"| lost sessions | **{lost}** |",
              f"| lost sessions per reason | {', '.join(f'{k}: {v}' for k, v in Counter(r for r, _ in stats.lost).items()) or '–'} |",
              f"| ended sessions still valid | {len(stats.zombies)} |",
              f"| wrong identity | {len(stats.wrong_user)} |",
              f"| unexpected answers outside the window | {len(stats.unexpected)} |"]
    for name, r in rss_report.items():
        if r is not None:
            lines.append(f"| {name} RSS after {warmup:.0f} s warm-up | {r['min'] / 1024:.1f}–{r['max'] / 1024:.1f} MiB, "
                         f"spread {100 * r['spread']:.1f}% (≤ {100 * args.rss_tolerance:.0f}%), trend {r['slope']:+.0f} KiB/min; "
                         f"highest per minute " + " ".join(f"{v / 1024:.1f}" for v in by_minute[name]) + " |")
    lines.append(f"| panics in djauth stderr | {sum(panics.values())} |")
    lines.append(f"| session index after a catch-up: entries without a session row / rows of a user not indexed (not judged) "
                 f"| {len(orphans)} / {len(unindexed)} |")
    lines += ["", "**PASS**" if not failures else "**FAIL**: " + "; ".join(failures)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

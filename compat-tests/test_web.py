"""djauth serve and Django on one SQLite database and one SECRET_KEY: logging in and out on
either side is seen by the other. Django runs in a subprocess (django_web_side) because the
format tests configure Django in-process with other settings."""

import http.client
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

import djcompat

HERE = Path(__file__).resolve().parent
DJANGO_SIDE = textwrap.dedent(
    """
    import json, sys, django
    from django.conf import settings
    cfg = json.loads(sys.argv[1])
    settings.configure(
        SECRET_KEY=cfg["secret"], SECRET_KEY_FALLBACKS=cfg.get("fallbacks", []), USE_TZ=True, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": cfg.get("django_db") or {"ENGINE": "django.db.backends.sqlite3", "NAME": cfg["db"]}},
        SESSION_ENGINE=cfg.get("engine", "django.contrib.sessions.backends.db"),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {
                "registration/password_reset_confirm.html": "{% if validlink %}VALID{{ form.as_p }}{% else %}INVALID{% endif %}",
                "registration/password_reset_form.html": "{{ form.as_p }}",
                "registration/password_reset_email.html": "{{ protocol }}://{{ domain }}/accounts/reset/{{ uid }}/{{ token }}/",
                "registration/password_reset_subject.txt": "Password reset on {{ site_name }}",
            })]}}],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware"],
    )
    django.setup()
    from django.http import HttpResponse
    from django.urls import path
    from django.urls import include
    urlpatterns = [path("who", lambda r: HttpResponse(r.user.get_username() or "-")),
                   path("accounts/", include("django.contrib.auth.urls"))]
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django.test import Client
    op = cfg["op"]
    if op == "create_user":
        User.objects.create_user(cfg["username"], cfg.get("email", "x@example.com"), cfg["password"])
        print("ok")
    elif op == "who":
        c = Client()
        c.cookies["sessionid"] = cfg["sessionid"]
        print(c.get("/who").content.decode())
    elif op == "login":
        c = Client()
        assert c.login(username=cfg["username"], password=cfg["password"])
        print(c.cookies["sessionid"].value)
    elif op == "check_password":
        from django.contrib.auth import authenticate
        print(bool(authenticate(username=cfg["username"], password=cfg["password"])))
    elif op == "reset_request":
        from django.core import mail
        c = Client()
        r = c.post("/accounts/password_reset/", {"email": cfg["email"]})
        assert r.status_code == 302, r.status_code
        print(mail.outbox[0].body.strip() if mail.outbox else "")
    elif op == "reset_confirm":
        c = Client()
        r = c.get(cfg["path"])
        if r.status_code != 302:
            print("INVALID-LINK"); raise SystemExit
        r = c.get(r["Location"])
        assert b"VALID" in r.content and b"INVALID" not in r.content, r.content
        r = c.post(r.wsgi_request.path, {"new_password1": cfg["password"], "new_password2": cfg["password"]})
        print(r.status_code, r.get("Location", ""))
    elif op == "anonymous_session":
        from django.contrib.sessions.backends.db import SessionStore
        st = SessionStore()
        st["cart"] = "3 items"
        st.create()
        st.save()
        print(st.session_key)
    elif op == "session_exists":
        print(Session.objects.filter(session_key=cfg["sessionid"]).exists())
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def start_djauth(env):
    """`djauth serve` on a free loopback port, waited for; the caller terminates it."""
    port = free_port()
    proc = subprocess.Popen([djcompat.DJAUTH_BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("djauth serve did not start: " + proc.stderr.read().decode())



ENGINES = {"db": "django.contrib.sessions.backends.db",
           "signed_cookies": "django.contrib.sessions.backends.signed_cookies"}


@pytest.fixture(scope="module")
def pg():
    import dbservers
    with dbservers.postgres_server() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite-db", "sqlite-signed_cookies", "postgres-db"])
def site(request):
    backend, engine_name = request.param.split("-")
    engine = ENGINES[engine_name]
    tmp = tempfile.mkdtemp(prefix="djauth-web-")
    db = os.path.join(tmp, "db.sqlite3")
    django_db, database_url = None, f"sqlite://{db}"
    if backend == "postgres":
        server = request.getfixturevalue("pg")
        name = "web_" + secrets.token_hex(4)
        server.create_database(name)
        django_db, database_url = server.django_database(name), server.url_for(name)
    secret = secrets.token_urlsafe(40)
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        DJAUTH_SECRET_KEY=secret,
        DJAUTH_ALLOWED_HOSTS="127.0.0.1",
        DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
        DJAUTH_DJANGO_VERSION=os.environ.get("DJAUTH_DJANGO_VERSION", "5.2"),
        DJAUTH_SESSION_ENGINE=engine,
    )
    subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, check=True, capture_output=True)
    proc, port = start_djauth(env)

    def django(op, **kw):
        import json
        out = subprocess.run([sys.executable, "-c", DJANGO_SIDE,
                              json.dumps({"op": op, "db": db, "secret": secret, "engine": engine,
                                          "django_db": django_db, **kw})],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def start_another(**extra):
        """Another djauth process on the same database, with other settings."""
        proc2, p2 = start_djauth({**env, **extra})
        started.append(proc2)
        return {"port": p2}

    started = []
    yield {"port": port, "django": django, "engine": engine_name, "secret": secret, "start_djauth": start_another}
    for p in started:
        p.terminate()
        p.wait(timeout=10)
    proc.terminate()
    proc.wait(timeout=10)


def request(site, method, path, body=None, cookies=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", site["port"], timeout=10)
    h = {"Host": f"127.0.0.1:{site['port']}"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        body = urllib.parse.urlencode(body)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read().decode()
    set_cookies = {}
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            set_cookies[name] = rest.split(";")[0]
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data, set_cookies


def login_page(site, csrf_cookie=None):
    status, _, html, cookies = request(site, "GET", "/accounts/login/",
                                       cookies={"csrftoken": csrf_cookie} if csrf_cookie else None)
    assert status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"', html).group(1)
    return token, cookies["csrftoken"]


def test_login_on_djauth_is_seen_by_django_and_logout_ends_it(site):
    site["django"]("create_user", username="alice", password="pw-alice")
    token, csrf_cookie = login_page(site)
    status, headers, _, cookies = request(site, "POST", "/accounts/login/?next=/after/",
                                          {"username": "alice", "password": "pw-alice", "csrfmiddlewaretoken": token},
                                          cookies={"csrftoken": csrf_cookie})
    assert status == 302 and headers["location"] == "/after/"
    assert cookies["csrftoken"] != csrf_cookie, "login rotates the CSRF secret"
    key = cookies["sessionid"]
    assert site["django"]("who", sessionid=key) == "alice"
    # The token of the page before login no longer matches the rotated secret.
    status, _, _, _ = request(site, "POST", "/accounts/logout/", {"csrfmiddlewaretoken": token},
                              cookies={"csrftoken": cookies["csrftoken"], "sessionid": key})
    assert status == 403
    token, csrf_cookie = login_page(site, cookies["csrftoken"])
    status, _, html, cookies2 = request(site, "POST", "/accounts/logout/", {"csrfmiddlewaretoken": token},
                                        cookies={"csrftoken": csrf_cookie, "sessionid": key})
    assert status == 200 and "Logged out" in html
    assert cookies2["sessionid"] == '""'
    if site["engine"] == "db":
        # A signed cookie cannot be revoked server-side: logout only deletes it (issue 5 adds
        # a per-user "not before" for that); a db session's row is gone.
        assert site["django"]("who", sessionid=key) == "-"
        assert site["django"]("session_exists", sessionid=key) == "False"


def test_login_cycles_a_pre_existing_session_and_sets_djangos_cookie_attributes(site):
    """Session fixation: a session planted before login never becomes the logged-in one
    (Django's cycle_key); the new cookie is HttpOnly and SameSite=Lax as Django sets it, and
    Secure with SESSION_COOKIE_SECURE."""
    if site["engine"] != "db":
        pytest.skip("signed cookies carry no server-side key to fixate")
    site["django"]("create_user", username="fixated", password="pw-fixated")
    planted = site["django"]("anonymous_session")
    for extra, secure in (({}, False), ({"DJAUTH_SESSION_COOKIE_SECURE": "true"}, True)):
        target = site if not extra else {**site, **site["start_djauth"](**extra)}
        token, csrf_cookie = login_page(target)
        conn = http.client.HTTPConnection("127.0.0.1", target["port"], timeout=10)
        body = urllib.parse.urlencode({"username": "fixated", "password": "pw-fixated",
                                       "csrfmiddlewaretoken": token})
        conn.request("POST", "/accounts/login/", body=body, headers={
            "Host": f"127.0.0.1:{target['port']}", "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}; sessionid={planted}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 302
        session_cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("sessionid=")]
        assert len(session_cookie) == 1
        new_key = session_cookie[0].split(";")[0].split("=", 1)[1]
        attrs = [a.strip() for a in session_cookie[0].split(";")[1:]]
        assert new_key != planted
        assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/" in attrs
        assert ("Secure" in attrs) == secure
        assert site["django"]("who", sessionid=new_key) == "fixated"
        assert site["django"]("session_exists", sessionid=planted) == "False"
        planted = site["django"]("anonymous_session")


def test_django_login_is_ended_by_djauth_logout(site):
    site["django"]("create_user", username="bob", password="pw-bob")
    key = site["django"]("login", username="bob", password="pw-bob")
    token, csrf_cookie = login_page(site)
    status, _, _, cookies = request(site, "POST", "/accounts/logout/?next=/bye/", {"csrfmiddlewaretoken": token},
                                    cookies={"csrftoken": csrf_cookie, "sessionid": key})
    assert status == 302
    assert cookies["sessionid"] == '""'
    if site["engine"] == "db":
        assert site["django"]("who", sessionid=key) == "-"


def test_wrong_password_csrf_and_methods(site):
    token, csrf_cookie = login_page(site)
    status, _, html, cookies = request(site, "POST", "/accounts/login/",
                                       {"username": "nobody", "password": "x", "csrfmiddlewaretoken": token},
                                       cookies={"csrftoken": csrf_cookie})
    assert status == 200
    assert "Please enter a correct username and password. Note that both fields may be case-sensitive." in html
    assert "sessionid" not in cookies
    status, _, html, _ = request(site, "POST", "/accounts/login/", {"username": "a", "password": "b"},
                                 cookies={"csrftoken": csrf_cookie})
    assert status == 403 and "CSRF verification failed" in html
    status, headers, _, _ = request(site, "GET", "/accounts/logout/")
    if os.environ.get("DJAUTH_DJANGO_VERSION", "5.2") != "4.2":
        assert status == 405 and headers["allow"] == "POST, OPTIONS"
    status, _, _, _ = request(site, "GET", "/accounts/login/", headers={"Host": "evil.example"})
    assert status == 400
    status, _, html, _ = request(site, "POST", "/accounts/login/", {"csrfmiddlewaretoken": token},
                                 cookies={"csrftoken": csrf_cookie})
    assert status == 200 and html.count("This field is required.") == 2
    status, _, _, _ = request(site, "GET", "/accounts/login/?next=//evil.com/")
    assert status == 200


def djauth_login(site, username, password):
    token, csrf_cookie = login_page(site)
    status, _, _, cookies = request(site, "POST", "/accounts/login/",
                                    {"username": username, "password": password, "csrfmiddlewaretoken": token},
                                    cookies={"csrftoken": csrf_cookie})
    assert status == 302
    return cookies["sessionid"], cookies["csrftoken"]


def test_password_change_keeps_this_session_and_ends_the_others(site):
    site["django"]("create_user", username="carol", password="old-pass-carol")
    other = site["django"]("login", username="carol", password="old-pass-carol")
    key, csrf_cookie = djauth_login(site, "carol", "old-pass-carol")
    status, headers, _, _ = request(site, "GET", "/accounts/password_change/?a=1&b=x%20y")
    assert status == 302
    assert headers["location"] == "/accounts/login/?next=/accounts/password_change/%3Fa%3D1%26b%3Dx%2520y"
    status, _, html, _ = request(site, "GET", "/accounts/password_change/", cookies={"sessionid": key, "csrftoken": csrf_cookie})
    assert status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"', html).group(1)
    cookies = {"sessionid": key, "csrftoken": csrf_cookie}
    status, _, html, _ = request(site, "POST", "/accounts/password_change/",
                                 {"old_password": "wrong", "new_password1": "a", "new_password2": "b",
                                  "csrfmiddlewaretoken": token}, cookies=cookies)
    assert status == 200
    assert "Your old password was entered incorrectly. Please enter it again." in html
    assert "The two password fields didn\u2019t match." in html
    status, headers, _, new_cookies = request(site, "POST", "/accounts/password_change/",
                                              {"old_password": "old-pass-carol", "new_password1": "new-pass-carol",
                                               "new_password2": "new-pass-carol", "csrfmiddlewaretoken": token},
                                              cookies=cookies)
    assert status == 302 and headers["location"] == "/accounts/password_change/done/"
    new_key = new_cookies["sessionid"]
    assert new_key != key, "update_session_auth_hash cycles the key"
    assert site["django"]("who", sessionid=new_key) == "carol", "this session stays logged in"
    assert site["django"]("who", sessionid=other) == "-", "Django's other session ends (hash check)"
    assert site["django"]("check_password", username="carol", password="new-pass-carol") == "True"
    status, _, html, _ = request(site, "GET", "/accounts/password_change/done/", cookies={"sessionid": new_key})
    assert status == 200 and "Password change successful" in html


class SmtpSink:
    """A minimal SMTP server on loopback that keeps what it receives."""

    def __init__(self):
        import threading
        self.messages = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            f = conn.makefile("rwb")
            f.write(b"220 sink ESMTP\r\n"); f.flush()
            data, in_data = [], False
            for line in f:
                if in_data:
                    if line in (b".\r\n", b".\n"):
                        self.messages.append(b"".join(data).decode("utf-8", "replace"))
                        data, in_data = [], False
                        f.write(b"250 OK\r\n"); f.flush()
                    else:
                        data.append(line)
                    continue
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    f.write(b"250 sink\r\n")
                elif cmd == b"DATA":
                    in_data = True
                    f.write(b"354 go\r\n")
                elif cmd == b"QUIT":
                    f.write(b"221 bye\r\n"); f.flush()
                    break
                else:
                    f.write(b"250 OK\r\n")
                f.flush()
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def mail_site(tmp_path_factory):
    sink = SmtpSink()
    tmp = tmp_path_factory.mktemp("reset")
    db = str(tmp / "db.sqlite3")
    secret = secrets.token_urlsafe(40)
    env = dict(os.environ, DATABASE_URL=f"sqlite://{db}", DJAUTH_SECRET_KEY=secret, DJAUTH_ALLOWED_HOSTS="127.0.0.1",
               DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
               DJAUTH_EMAIL_HOST="127.0.0.1", DJAUTH_EMAIL_PORT=str(sink.port), DJAUTH_TIME_ZONE="America/Chicago",
               DJAUTH_DJANGO_VERSION=os.environ.get("DJAUTH_DJANGO_VERSION", "5.2"))
    subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, check=True, capture_output=True)
    proc, port = start_djauth(env)

    def django(op, **kw):
        import json
        out = subprocess.run([sys.executable, "-c", DJANGO_SIDE.replace('settings.configure(', 'settings.configure(TIME_ZONE="America/Chicago", ', 1),
                              json.dumps({"op": op, "db": db, "secret": secret, **kw})],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    yield {"port": port, "django": django, "sink": sink}
    proc.terminate()
    proc.wait(timeout=10)
    sink.close()


def test_reset_link_mailed_by_djauth_works_on_django_once(mail_site):
    site = mail_site
    site["django"]("create_user", username="dave", password="old-dave-pass", email="dave@example.com")
    token, csrf_cookie = login_page(site)
    before = len(site["sink"].messages)
    status, headers, _, _ = request(site, "POST", "/accounts/password_reset/",
                                    {"email": "DAVE@example.com", "csrfmiddlewaretoken": token}, cookies={"csrftoken": csrf_cookie})
    assert status == 302 and headers["location"] == "/accounts/password_reset/done/"
    # An unknown address gets the same answer and no mail.
    status, headers, _, _ = request(site, "POST", "/accounts/password_reset/",
                                    {"email": "nobody@example.com", "csrfmiddlewaretoken": token}, cookies={"csrftoken": csrf_cookie})
    assert status == 302
    deadline = time.time() + 5
    while len(site["sink"].messages) < before + 1 and time.time() < deadline:
        time.sleep(0.05)
    assert len(site["sink"].messages) == before + 1
    import email
    parsed = email.message_from_string(site["sink"].messages[-1])
    msg = parsed["Subject"] + "\n" + parsed.get_payload(decode=True).decode()
    assert msg.startswith("Password reset on 127.0.0.1")
    assert "In case you\u2019ve forgotten, you are: dave" in msg or "you are: dave" in msg
    path = re.search(r"http://127\.0\.0\.1:\d+(/accounts/reset/[^/\s]+/[^/\s]+/)", msg).group(1)
    assert site["django"]("reset_confirm", path=path, password="new-dave-pass") == "302 /accounts/reset/done/"
    assert site["django"]("check_password", username="dave", password="new-dave-pass") == "True"
    assert site["django"]("reset_confirm", path=path, password="again") == "INVALID-LINK", "links work once"


def test_reset_link_mailed_by_django_works_on_djauth_once(mail_site):
    site = mail_site
    site["django"]("create_user", username="erin", password="old-erin-pass", email="erin@example.com")
    body = site["django"]("reset_request", email="erin@example.com")
    links = re.findall(r"(/accounts/reset/[^/\s]+/[^/\s]+/)", body)
    assert links
    path = links[-1]
    status, headers, _, cookies = request(site, "GET", path)
    assert status == 302 and headers["location"].endswith("/set-password/")
    sess = cookies["sessionid"]
    status, _, html, cookies2 = request(site, "GET", headers["location"], cookies={"sessionid": sess})
    assert status == 200 and "Enter new password" in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"', html).group(1)
    status, headers, _, _ = request(site, "POST", headers["location"],
                                    {"new_password1": "new-erin-pass", "new_password2": "new-erin-pass", "csrfmiddlewaretoken": token},
                                    cookies={"sessionid": sess, "csrftoken": cookies2["csrftoken"]})
    assert status == 302 and headers["location"] == "/accounts/reset/done/"
    assert site["django"]("check_password", username="erin", password="new-erin-pass") == "True"
    status, _, html, _ = request(site, "GET", path)
    assert status == 200 and "Password reset unsuccessful" in html


def test_rotated_secret_key_with_fallbacks(site):
    site["django"]("create_user", username="frank", password="pw-frank", email="frank@example.com")
    old = site["secret"]
    key = site["django"]("login", username="frank", password="pw-frank")
    new = secrets.token_urlsafe(40)
    rotated = site["start_djauth"](DJAUTH_SECRET_KEY=new, DJAUTH_SECRET_KEY_FALLBACKS=old)
    status, _, _, cookies = request(rotated, "GET", "/accounts/password_change/", cookies={"sessionid": key})
    assert status == 200, "a session made under the old key stays logged in through the fallback"
    new_key = cookies["sessionid"]
    if site["engine"] == "db":
        assert new_key != key, "Django cycles the key after a fallback match"
    assert site["django"]("who", sessionid=new_key, secret=new) == "frank", "re-signed under the new key"
    second = site["django"]("login", username="frank", password="pw-frank")
    without = site["start_djauth"](DJAUTH_SECRET_KEY=new)
    status, headers, _, _ = request(without, "GET", "/accounts/password_change/", cookies={"sessionid": second})
    assert status == 302 and headers["location"].startswith("/accounts/login/"), "no fallback: logged out"


def test_bad_input_gets_clear_answers(site):
    # A body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused, not read.
    big = {"username": "x" * 3_000_000, "password": "y"}
    status, _, _, _ = request(site, "POST", "/accounts/login/", big)
    assert status == 413
    # Invalid UTF-8 in a form is replaced, as Django's QueryDict does; the form just fails.
    token, csrf_cookie = login_page(site)
    conn = http.client.HTTPConnection("127.0.0.1", site["port"], timeout=10)
    conn.request("POST", "/accounts/login/", body=f"username=%FF%FE&password=x&csrfmiddlewaretoken={token}",
                 headers={"Host": f"127.0.0.1:{site['port']}", "Cookie": f"csrftoken={csrf_cookie}",
                          "Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    assert r.status == 200 and "Please enter a correct username" in r.read().decode()
    # Garbage cookies: an unknown session is dropped (cookie deleted), a malformed CSRF cookie
    # is replaced by a fresh secret.
    status, _, _, cookies = request(site, "GET", "/accounts/login/",
                                    cookies={"sessionid": "not-a-session-" + "z" * 10, "csrftoken": "bad!"})
    assert status == 200
    assert cookies["sessionid"] == '""'
    assert re.fullmatch(r"[A-Za-z0-9]{32}", cookies["csrftoken"])
    status, _, html, _ = request(site, "POST", "/accounts/login/", {"username": "a", "password": "b", "csrfmiddlewaretoken": token},
                                 cookies={"csrftoken": "bad!"})
    assert status == 403


def test_database_outage_is_503_without_panic():
    """The database going away gives 503 with Retry-After within a bounded time, no panic."""
    import dbservers
    with dbservers.postgres_server() as server:
        server.create_database("outage")
        env = dict(os.environ, DATABASE_URL=server.url_for("outage"), DJAUTH_SECRET_KEY="k" * 50,
                   DJAUTH_ALLOWED_HOSTS="127.0.0.1")
        subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, check=True, capture_output=True)
        proc, port = start_djauth(env)
        try:
            site = {"port": port}
            assert request(site, "GET", "/accounts/login/")[0] == 200
            server.stop()
            t0 = time.time()
            status, headers, _, _ = request(site, "GET", "/accounts/password_change/",
                                            cookies={"sessionid": "a" * 32})
            assert status == 503 and headers.get("retry-after")
            assert time.time() - t0 < 8
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        assert b"panicked" not in err

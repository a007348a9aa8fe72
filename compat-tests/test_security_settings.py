"""SecurityMiddleware / XFrameOptionsMiddleware settings, the proxy settings of HttpRequest
(SECURE_PROXY_SSL_HEADER, USE_X_FORWARDED_HOST), LoginView's redirect_authenticated_user and
URL names in LOGIN_REDIRECT_URL: the same request gets the same status, redirect and
security headers from Django and from djauth serve, under the same settings."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import djcompat
from test_web import request, start_djauth

DJANGO = textwrap.dedent(
    """
    import json, sys, django
    from django.conf import settings
    cfg = json.loads(sys.argv[1])
    s = cfg["settings"]
    if "SECURE_PROXY_SSL_HEADER" in s:
        s["SECURE_PROXY_SSL_HEADER"] = tuple(s["SECURE_PROXY_SSL_HEADER"])
    settings.configure(
        SECRET_KEY=cfg["secret"], USE_TZ=True, ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": cfg["db"]}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {"registration/login.html": "{{ form }}"})]}}],
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                    "django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.middleware.clickjacking.XFrameOptionsMiddleware"],
        **s,
    )
    django.setup()
    from django.contrib.auth import views
    from django.test import Client
    from django.urls import include, path
    login = views.LoginView.as_view(redirect_authenticated_user=cfg.get("redirect_authenticated_user", False))
    urlpatterns = [path("accounts/login/", login), path("accounts/", include("django.contrib.auth.urls"))]
    c = Client(raise_request_exception=False)
    if cfg.get("login_as"):
        from django.contrib.auth.models import User
        c.force_login(User.objects.get(username=cfg["login_as"]))
    headers = cfg.get("headers", {})
    meta = {"HTTP_HOST": "127.0.0.1", **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}}
    r = c.generic(cfg.get("method", "GET"), cfg["path"], **meta)
    keep = ["location", "strict-transport-security", "x-content-type-options", "referrer-policy",
            "cross-origin-opener-policy", "x-frame-options"]
    print(json.dumps({"status": r.status_code, "headers": {k: r[k] for k in keep if r.has_header(k)}}))
    """
)

KEEP = ["location", "strict-transport-security", "x-content-type-options", "referrer-policy",
        "cross-origin-opener-policy", "x-frame-options"]

CASES = [
    # (id, settings, request headers, path, login_as, redirect_authenticated_user)
    ("defaults", {}, {}, "/accounts/login/", None, False),
    ("headers-off", {"SECURE_CONTENT_TYPE_NOSNIFF": False, "SECURE_REFERRER_POLICY": None,
                     "SECURE_CROSS_ORIGIN_OPENER_POLICY": None, "X_FRAME_OPTIONS": "sameorigin"},
     {}, "/accounts/login/", None, False),
    ("hsts-via-proxy", {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
                        "SECURE_HSTS_SECONDS": 3600, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
                        "SECURE_HSTS_PRELOAD": True},
     {"X-Forwarded-Proto": "https, http"}, "/accounts/login/", None, False),
    ("hsts-not-secure", {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
                         "SECURE_HSTS_SECONDS": 3600},
     {"X-Forwarded-Proto": "http"}, "/accounts/login/", None, False),
    ("ssl-redirect", {"SECURE_SSL_REDIRECT": True}, {}, "/accounts/login/?next=/x%20y", None, False),
    ("ssl-redirect-host", {"SECURE_SSL_REDIRECT": True, "SECURE_SSL_HOST": "secure.example"},
     {}, "/accounts/login/", None, False),
    ("ssl-redirect-exempt", {"SECURE_SSL_REDIRECT": True, "SECURE_REDIRECT_EXEMPT": [r"^accounts/log"]},
     {}, "/accounts/login/", None, False),
    ("ssl-redirect-behind-proxy", {"SECURE_SSL_REDIRECT": True,
                                   "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]},
     {"X-Forwarded-Proto": "https"}, "/accounts/login/", None, False),
    ("forwarded-host", {"USE_X_FORWARDED_HOST": True, "SECURE_SSL_REDIRECT": True,
                        "ALLOWED_HOSTS": ["127.0.0.1", "proxy.example"]},
     {"X-Forwarded-Host": "proxy.example"}, "/accounts/login/", None, False),
    ("forwarded-host-disallowed", {"USE_X_FORWARDED_HOST": True,
                                   "ALLOWED_HOSTS": ["127.0.0.1", "proxy.example"]},
     {"X-Forwarded-Host": "evil.example"}, "/accounts/login/", None, False),
    ("redirect-authenticated", {"LOGIN_REDIRECT_URL": "/home/"}, {}, "/accounts/login/", "alice", True),
    ("redirect-authenticated-next", {}, {}, "/accounts/login/?next=/deep/page/", "alice", True),
    ("redirect-authenticated-url-name", {"LOGIN_REDIRECT_URL": "password_change"}, {},
     "/accounts/login/", "alice", True),
    ("not-redirected-without-flag", {"LOGIN_REDIRECT_URL": "/home/"}, {}, "/accounts/login/", "alice", False),
    ("login-url-name", {"LOGIN_URL": "login"}, {}, "/accounts/password_change/", None, False),
]


def _env_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "None"
    if isinstance(v, list):
        return ",".join(v)
    return str(v)


@pytest.fixture(scope="module")
def world():
    tmp = tempfile.mkdtemp(prefix="djauth-security-")
    db = os.path.join(tmp, "db.sqlite3")
    secret = "security-settings-" + os.urandom(8).hex()
    base = dict(os.environ, DATABASE_URL=f"sqlite://{db}", DJAUTH_SECRET_KEY=secret,
                DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
                DJAUTH_DJANGO_VERSION=os.environ.get("DJAUTH_DJANGO_VERSION", "5.2"))
    subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=base, check=True, capture_output=True)
    # One user, created by Django.
    code = DJANGO.split("django.setup()")[0] + "django.setup()\nfrom django.contrib.auth.models import User\nUser.objects.create_user('alice', 'a@example.com', 'pw')\n"
    subprocess.run([sys.executable, "-c", code, json.dumps({"secret": secret, "db": db, "settings": {}})],
                   check=True, capture_output=True, text=True)
    return {"db": db, "secret": secret, "env": base}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_answer_as_django(world, case):
    _, settings, headers, path, login_as, redirect_auth = case
    settings = {"ALLOWED_HOSTS": ["127.0.0.1"], **settings}
    out = subprocess.run(
        [sys.executable, "-c", DJANGO, json.dumps({
            "secret": world["secret"], "db": world["db"], "settings": settings, "headers": headers,
            "path": path, "login_as": login_as, "redirect_authenticated_user": redirect_auth})],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = json.loads(out.stdout)

    env = dict(world["env"])
    for k, v in settings.items():
        env["DJAUTH_" + k] = _env_value(v)
    env["DJAUTH_LOGIN_REDIRECT_AUTHENTICATED_USER"] = "true" if redirect_auth else "false"
    proc, port = start_djauth(env)
    try:
        site = {"port": port}
        cookies = None
        if login_as:
            key = subprocess.run([djcompat.DJAUTH_BIN, "session", "login", login_as], env=env,
                                 capture_output=True, text=True, check=True).stdout.strip()
            cookies = {"sessionid": key}
        status, got_headers, _, _ = request(site, "GET", path, cookies=cookies,
                                            headers={"Host": "127.0.0.1", **headers})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = {"status": status, "headers": {k: got_headers[k] for k in KEEP if k in got_headers}}
    if expected["status"] == 400:
        # DisallowedHost: only the status is comparable (Django's page differs by DEBUG).
        assert got["status"] == 400
        return
    assert got == expected

"""`{{ form.as_p }}` from djauth's pages is byte for byte what Django renders for the same
form and the same submitted data: labels, widgets and their attributes, error lists, help
texts and the whitespace of django/forms/p.html (Django 5.0+ adds aria attributes and ids;
4.2 does not)."""

import json
import os
import re
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
    settings.configure(SECRET_KEY="forms", USE_TZ=True,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": cfg["db"]}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        AUTH_PASSWORD_VALIDATORS=cfg["validators"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}])
    django.setup()
    from django.contrib.auth import forms
    from django.contrib.auth.models import User
    if cfg["form"] == "setup":
        User.objects.create_user("alice", "alice@example.com", "pw-alice")
        raise SystemExit
    user = User.objects.get(username="alice")
    data = cfg["data"]
    f = {
        "login": lambda: forms.AuthenticationForm(data=data),
        "reset": lambda: forms.PasswordResetForm(data=data),
        "change": lambda: forms.PasswordChangeForm(user, data=data),
    }[cfg["form"]]()
    if data is not None:
        f.is_valid()
    print(json.dumps(f.as_p()))
    """
)

VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

CASES = [
    # (id, form, page, submitted data or None for GET)
    ("login-get", "login", "/accounts/login/", None),
    ("login-missing", "login", "/accounts/login/", {"username": "al<ice", "password": ""}),
    ("login-wrong", "login", "/accounts/login/", {"username": "alice", "password": "nope"}),
    ("reset-get", "reset", "/accounts/password_reset/", None),
    ("reset-invalid", "reset", "/accounts/password_reset/", {"email": "not an address"}),
    ("change-get", "change", "/accounts/password_change/", None),
    ("change-mismatch", "change", "/accounts/password_change/",
     {"old_password": "pw-alice", "new_password1": "a-Long-pass-1", "new_password2": "other-Pass-2"}),
    ("change-wrong-old", "change", "/accounts/password_change/",
     {"old_password": "nope", "new_password1": "x", "new_password2": "x"}),
]


@pytest.fixture(scope="module", params=["no-validators", "validators"])
def world(request):
    validators = VALIDATORS if request.param == "validators" else []
    tmp = tempfile.mkdtemp(prefix="djauth-forms-")
    db = os.path.join(tmp, "db.sqlite3")
    templates = os.path.join(tmp, "templates", "registration")
    os.makedirs(templates)
    for name in ("login.html", "password_reset_form.html", "password_change_form.html"):
        with open(os.path.join(templates, name), "w") as f:
            f.write("<form>{{ form.as_p }}</form>")
    env = dict(os.environ, DATABASE_URL=f"sqlite://{db}", DJAUTH_SECRET_KEY="forms",
               DJAUTH_ALLOWED_HOSTS="127.0.0.1",
               DJAUTH_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
               DJAUTH_DJANGO_VERSION=os.environ.get("DJAUTH_DJANGO_VERSION", "5.2"),
               DJAUTH_TEMPLATE_DIRS=os.path.dirname(templates),
               DJAUTH_AUTH_PASSWORD_VALIDATORS=",".join(v["NAME"] for v in validators))
    subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, check=True, capture_output=True)

    def django(form, data=None):
        out = subprocess.run([sys.executable, "-c", DJANGO, json.dumps(
            {"db": db, "validators": validators, "form": form, "data": data})],
            capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    django("setup")
    proc, port = start_djauth(env)
    yield {"port": port, "django": django, "env": env}
    proc.terminate()
    proc.wait(timeout=10)


def _djauth_as_p(world, page, data):
    site = {"port": world["port"]}
    cookies = {}
    if page == "/accounts/password_change/":
        key = subprocess.run([djcompat.DJAUTH_BIN, "session", "login", "alice"], env=world["env"],
                             capture_output=True, text=True, check=True).stdout.strip()
        cookies["sessionid"] = key
    # A GET first sets the CSRF cookie.
    status, _, html, set_cookies = request(site, "GET", page, cookies=cookies)
    assert status == 200, html
    if data is not None:
        # The test templates print no {% csrf_token %}; Django (and djauth) also accept the
        # unmasked 32-character secret as the form token.
        cookies["csrftoken"] = token = set_cookies["csrftoken"]
        status, _, html, _ = request(site, "POST", page, {**data, "csrfmiddlewaretoken": token},
                                     cookies=cookies)
        assert status == 200, (status, html)
    m = re.fullmatch(r"<form>(.*)</form>", html, re.S)
    assert m, html
    return m.group(1)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_as_p_is_djangos(world, case):
    _, form, page, data = case
    expected = world["django"](form, data)
    assert _djauth_as_p(world, page, data) == expected

#!/usr/bin/env python3
"""Reference implementation of the djauth CLI contract, on top of real Django.

Not used by the suite itself.  It exists to validate the *tests*: running the suite with
    PATH=<venv>/bin:$PATH DJAUTH_BIN=compat-tests/reference_djauth.py pytest compat-tests
(one Python process per call: slow) or, much faster, in the test process itself with
    COMPAT_REFERENCE=inprocess pytest compat-tests
must pass, since here "djauth" is Django.  A test that fails against this script is a
wrong test, not a djauth bug.  (Run it with the venv's python: it imports Django.)
"""

import argparse
import json
import os
import sys
import types
from datetime import datetime
from unittest import mock
from zoneinfo import ZoneInfo


def settings_from_env(env):
    import django

    want = env.get("DJAUTH_DJANGO_VERSION", "5.2")
    if want != "%d.%d" % django.VERSION[:2]:
        die(2, f"DJAUTH_DJANGO_VERSION={want} does not match Django {django.get_version()}")
    if not env.get("DJAUTH_SECRET_KEY"):
        die(2, "DJAUTH_SECRET_KEY is not set")

    def lst(name):
        return [x for x in env.get(name, "").split(",") if x]

    hashers = lst("DJAUTH_PASSWORD_HASHERS") or [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
    ]
    return dict(
        SECRET_KEY=env["DJAUTH_SECRET_KEY"],
        SECRET_KEY_FALLBACKS=lst("DJAUTH_SECRET_KEY_FALLBACKS"),
        PASSWORD_HASHERS=hashers,
        SESSION_COOKIE_AGE=int(env.get("DJAUTH_SESSION_COOKIE_AGE") or 1209600),
        PASSWORD_RESET_TIMEOUT=int(env.get("DJAUTH_PASSWORD_RESET_TIMEOUT") or 259200),
        TIME_ZONE=env.get("DJAUTH_TIME_ZONE") or "America/Chicago",
        USE_TZ=(env.get("DJAUTH_USE_TZ", "true").lower() in ("1", "true", "yes", "on")),
        CSRF_TRUSTED_ORIGINS=lst("DJAUTH_CSRF_TRUSTED_ORIGINS"),
    )


def configure():
    import time

    import django
    from django.conf import settings

    d = settings_from_env(os.environ)
    settings.configure(
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
        DATABASES={},
        TEMPLATES=[],
        **d,
    )
    os.environ["TZ"] = d["TIME_ZONE"]
    time.tzset()
    django.setup()


def run_inprocess(argv, stdin_bytes, env):
    """Run one command inside an already configured Django process (the test suite's),
    with the env's settings applied through override_settings.  Returns (rc, out, err)."""
    import io

    from django.test import override_settings

    saved = sys.stdin, sys.stdout, sys.stderr
    o, e = io.BytesIO(), io.BytesIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin_bytes), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(o, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(e, encoding="utf-8", write_through=True)
    rc = 0
    try:
        a = parser().parse_args(argv)
        with override_settings(**settings_from_env(env)):
            dispatch(a)
    except SystemExit as ex:
        rc = ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        out_bytes, err_bytes = o.getvalue(), e.getvalue()
        for w in (sys.stdin, sys.stdout, sys.stderr):
            w.detach()
        sys.stdin, sys.stdout, sys.stderr = saved
    return rc, out_bytes, err_bytes


def die(code, msg):
    print(msg, file=sys.stderr)
    sys.exit(code)


def read_stdin_password():
    data = sys.stdin.buffer.read().decode("utf-8")
    if data.endswith("\n"):
        data = data[:-1]
    return data


def pinned(now):
    """Context manager pinning signing's clock and the token generator's clock."""
    from contextlib import ExitStack

    from django.conf import settings
    from django.contrib.auth.tokens import PasswordResetTokenGenerator
    from django.core import signing

    stack = ExitStack()
    if now is not None:
        stack.enter_context(mock.patch.object(signing, "time", types.SimpleNamespace(time=lambda: now)))
        local = datetime.fromtimestamp(now, ZoneInfo(settings.TIME_ZONE)).replace(tzinfo=None)
        stack.enter_context(mock.patch.object(PasswordResetTokenGenerator, "_now", return_value=local))
    return stack


def out(s):
    sys.stdout.buffer.write((s + "\n").encode("utf-8"))


def out_json(obj):
    sys.stdout.buffer.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------
def cmd_session(a):
    from django.core import signing

    salt_cookie = "django.contrib.sessions.backends.signed_cookies"
    with pinned(getattr(a, "now", None)):
        _cmd_session(a, signing, salt_cookie)


def _cmd_session(a, signing, salt_cookie):
    if a.action == "decode":
        from django.conf import settings

        try:
            if a.engine == "db":
                d = signing.loads(a.blob, salt="django.contrib.sessions.SessionStore")
            else:
                d = signing.loads(a.blob, salt=salt_cookie, max_age=settings.SESSION_COOKIE_AGE)
        except signing.BadSignature as e:
            die(1, f"{type(e).__name__}: {e}")
        except Exception as e:
            die(1, f"malformed session data: {e}")
        out_json(d)
    elif a.action == "encode":
        try:
            d = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        except ValueError as e:
            die(1, f"invalid JSON: {e}")
        if not isinstance(d, dict):
            die(1, "session data must be a JSON object")
        salt = "django.contrib.sessions.SessionStore" if a.engine == "db" else salt_cookie
        out(signing.dumps(d, salt=salt, compress=True))
    elif a.action == "auth-hash":
        from django.contrib.auth.models import User

        out(User(password=a.password_field).get_session_auth_hash())
    elif a.action == "verify-auth-hash":
        from django.contrib.auth.models import User
        from django.utils.crypto import constant_time_compare

        u = User(password=a.password_field)
        if a.hash and constant_time_compare(a.hash, u.get_session_auth_hash()):
            out("current")
        elif a.hash and any(constant_time_compare(a.hash, h) for h in u.get_session_auth_fallback_hash()):
            out("fallback")
        else:
            out("mismatch")
            sys.exit(1)


def cmd_password(a):
    from django.contrib.auth import hashers

    if a.action == "hash":
        pw = read_stdin_password()
        name = a.hasher or hashers.get_hashers()[0].algorithm
        try:
            hashers.get_hasher(name)
        except ValueError as e:
            die(2, str(e))
        salt = a.salt
        if salt and name.startswith("bcrypt"):
            salt = salt.encode("ascii")  # Django >= 5.0 bcrypt encode() wants bytes
        try:
            out(hashers.make_password(pw, salt, name))
        except ValueError as e:
            die(1, str(e))
    else:
        pw = read_stdin_password()
        enc = a.encoded
        if not hashers.is_password_usable(enc):
            algorithm = None
        else:
            try:
                algorithm = hashers.identify_hasher(enc).algorithm
            except ValueError:
                algorithm = None
        try:
            if hasattr(hashers, "verify_password"):
                valid, must_update = hashers.verify_password(pw, enc)
            else:
                valid = hashers.check_password(pw, enc)
                must_update = False
                if algorithm:
                    pref = hashers.get_hasher("default")
                    must_update = pref.algorithm != algorithm or pref.must_update(enc)
        except Exception as e:
            valid, must_update = False, False
            print(f"malformed hash: {e}", file=sys.stderr)
        out(json.dumps({"valid": valid, "must_update": must_update, "algorithm": algorithm}))
        if not valid:
            if algorithm is None:
                print("unknown or unusable password hash", file=sys.stderr)
            sys.exit(1)


def cmd_signing(a):
    from django.core import signing

    with pinned(a.now):
        try:
            if a.action == "dumps":
                obj = json.loads(sys.stdin.buffer.read().decode("utf-8"))
                kw = {"salt": a.salt} if a.salt is not None else {}
                out(signing.dumps(obj, key=a.key, compress=a.compress, **kw))
            elif a.action == "loads":
                kw = {"salt": a.salt} if a.salt is not None else {}
                out_json(signing.loads(a.token, key=a.key, max_age=a.max_age, **kw))
            else:
                cls = signing.TimestampSigner if a.timestamp else signing.Signer
                s = cls(salt=a.salt, algorithm=a.algorithm)
                if a.action == "sign":
                    out(s.sign(a.value))
                elif a.timestamp:
                    out(s.unsign(a.value, max_age=a.max_age))
                else:
                    out(s.unsign(a.value))
        except signing.BadSignature as e:
            die(1, f"{type(e).__name__}: {e}")
        except Exception as e:  # zlib.error, ValueError, binascii.Error, ...
            die(1, f"bad input: {type(e).__name__}: {e}")


def cmd_token(a):
    from django.contrib.auth.tokens import PasswordResetTokenGenerator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    if a.action == "uidb64":
        out(urlsafe_base64_encode(force_bytes(a.pk)))
        return
    data = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    last_login = data.get("last_login")
    if last_login is not None:
        last_login = datetime.fromisoformat(last_login)
    user = types.SimpleNamespace(
        pk=data["pk"],
        password=data["password"],
        last_login=last_login,
        email=data.get("email") or "",
        get_email_field_name=lambda: "email",
    )
    gen = PasswordResetTokenGenerator()
    with pinned(a.now):
        if a.action == "make":
            out(gen.make_token(user))
        elif gen.check_token(user, a.token):
            out("valid")
        else:
            die(1, "invalid token")


def cmd_csrf(a):
    from django.middleware import csrf

    if a.action == "mask":
        out(csrf._mask_cipher_secret(a.secret))
    elif a.action == "unmask":
        out(csrf._unmask_cipher_token(a.token))
    elif a.action == "new-secret":
        out(csrf._get_new_csrf_string())
    elif a.action in ("check-token", "check-origin"):
        from django.http import HttpResponse
        from django.test import RequestFactory

        reasons = []

        class MW(csrf.CsrfViewMiddleware):
            def _reject(self, request, reason):
                reasons.append(reason)
                return HttpResponse(status=403)

        if a.action == "check-token":
            extra = {}
            data = {}
            if a.header:
                extra["HTTP_X_CSRFTOKEN"] = a.token.encode("utf-8").decode("latin-1")
            else:
                data["csrfmiddlewaretoken"] = a.token
            req = RequestFactory().post("/", data=data, **extra)
            req.COOKIES["csrftoken"] = a.secret
        else:
            secret = csrf._get_new_csrf_string()
            extra = {"HTTP_HOST": a.host}
            if a.origin is not None:
                extra["HTTP_ORIGIN"] = a.origin
            if a.referer is not None:
                extra["HTTP_REFERER"] = a.referer
            if a.port is not None:
                extra["SERVER_PORT"] = a.port
            req = RequestFactory().post(
                "/", data={"csrfmiddlewaretoken": csrf._mask_cipher_secret(secret)}, secure=a.secure, **extra
            )
            req.COOKIES["csrftoken"] = secret
        from django.test import override_settings

        with override_settings(CSRF_COOKIE_DOMAIN=getattr(a, "cookie_domain", None)):
            mw = MW(lambda r: HttpResponse())
            mw.process_request(req)
            mw.process_view(req, lambda r: HttpResponse(), (), {})
        if reasons:
            out(reasons[0])
            sys.exit(1)
        if a.action == "check-origin":
            out("ok")


def parser():
    p = argparse.ArgumentParser(prog="djauth")
    sub = p.add_subparsers(dest="group", required=True)

    s = sub.add_parser("session").add_subparsers(dest="action", required=True)
    for name in ("decode", "encode"):
        sp = s.add_parser(name)
        sp.add_argument("--engine", choices=["db", "signed_cookies"], default="db")
        sp.add_argument("--now", type=float)
        if name == "decode":
            sp.add_argument("blob")
    sp = s.add_parser("auth-hash")
    sp.add_argument("password_field")
    sp = s.add_parser("verify-auth-hash")
    sp.add_argument("hash")
    sp.add_argument("password_field")

    s = sub.add_parser("password").add_subparsers(dest="action", required=True)
    sp = s.add_parser("hash")
    sp.add_argument("--hasher")
    sp.add_argument("--salt")
    sp = s.add_parser("check")
    sp.add_argument("encoded")

    s = sub.add_parser("signing").add_subparsers(dest="action", required=True)
    sp = s.add_parser("dumps")
    sp.add_argument("--salt")
    sp.add_argument("--compress", action="store_true")
    sp.add_argument("--key")
    sp.add_argument("--now", type=float)
    sp = s.add_parser("loads")
    sp.add_argument("--salt")
    sp.add_argument("--max-age", type=float)
    sp.add_argument("--key")
    sp.add_argument("--now", type=float)
    sp.add_argument("token")
    for name in ("sign", "unsign"):
        sp = s.add_parser(name)
        sp.add_argument("--salt")
        sp.add_argument("--algorithm")
        sp.add_argument("--timestamp", action="store_true")
        sp.add_argument("--now", type=float)
        if name == "unsign":
            sp.add_argument("--max-age", type=float)
        sp.add_argument("value")

    s = sub.add_parser("token").add_subparsers(dest="action", required=True)
    sp = s.add_parser("make")
    sp.add_argument("--now", type=float)
    sp = s.add_parser("check")
    sp.add_argument("--now", type=float)
    sp.add_argument("token")
    sp = s.add_parser("uidb64")
    sp.add_argument("pk")

    s = sub.add_parser("csrf").add_subparsers(dest="action", required=True)
    s.add_parser("mask").add_argument("secret")
    s.add_parser("unmask").add_argument("token")
    s.add_parser("new-secret")
    sp = s.add_parser("check-token")
    sp.add_argument("--secret", required=True)
    sp.add_argument("--header", action="store_true")
    sp.add_argument("token")
    sp = s.add_parser("check-origin")
    sp.add_argument("--host", required=True)
    sp.add_argument("--secure", action="store_true")
    sp.add_argument("--origin")
    sp.add_argument("--referer")
    sp.add_argument("--cookie-domain")
    sp.add_argument("--port")

    return p


def dispatch(a):
    {"session": cmd_session, "password": cmd_password, "signing": cmd_signing, "token": cmd_token, "csrf": cmd_csrf}[
        a.group
    ](a)


def main():
    a = parser().parse_args()
    configure()
    dispatch(a)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    main()

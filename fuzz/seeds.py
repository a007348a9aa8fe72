"""Write the committed fuzz seeds (fuzz/corpus/<target>/seed-*) from real Django.

    target/compat-venvs/django-5.2/bin/python fuzz/seeds.py

The keys, salts, user and clock here are the ones the fuzz targets use (fuzz/fuzz_targets/common.rs),
so the seeds carry valid signatures and the fuzzer starts past the HMAC checks.
"""

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import django
from django.conf import settings

KEY = "djauth-fuzz-secret-key"
OLD_KEY = "djauth-fuzz-old-key"
T = 1_700_000_000  # the targets' clock (fuzz: NOW)

settings.configure(
    SECRET_KEY=KEY,
    SECRET_KEY_FALLBACKS=[OLD_KEY],
    USE_TZ=True,
    TIME_ZONE="UTC",
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
    DATABASES={},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()

from django.contrib.auth import hashers  # noqa: E402
from django.contrib.auth.tokens import PasswordResetTokenGenerator  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore  # noqa: E402
from django.core import signing  # noqa: E402
from django.http import QueryDict, SimpleCookie  # noqa: E402
from django.middleware.csrf import _mask_cipher_secret  # noqa: E402
from django.utils.http import urlsafe_base64_encode  # noqa: E402

OUT = Path(__file__).resolve().parent / "corpus"
PASSWORD = "hunter2"
SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"  # a CSRF secret (csrftoken cookie since 4.1)


def write(target, name, value):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    data = value.encode() if isinstance(value, str) else value
    (d / f"seed-{name}").write_bytes(data)


def at_t(fn):
    with mock.patch("time.time", return_value=float(T)):
        return fn()


# ---------------------------------------------------------------- signing
write("signing", "signer", signing.Signer().sign("hello"))
write("signing", "signer-fallback", signing.Signer(key=OLD_KEY).sign("hello:world"))
write("signing", "timestamp-signer", at_t(lambda: signing.TimestampSigner().sign("hello")))
write("signing", "dumps", at_t(lambda: signing.dumps({"a": 1, "b": [1.5, None, True], "é": "x"})))
write("signing", "dumps-compressed", at_t(lambda: signing.dumps({"k": "x" * 200}, compress=True)))
write("signing", "signed-cookie", at_t(lambda: signing.get_cookie_signer(salt="color").sign("blue")))

# ---------------------------------------------------------------- session
login = {
    "_auth_user_id": "1",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "0" * 64,
    "_session_expiry": 3600,
}
write("session", "db-login", at_t(lambda: SessionStore().encode(login)))
write("session", "db-empty", at_t(lambda: SessionStore().encode({})))
write(
    "session",
    "db-expiry-datetime",
    at_t(lambda: SessionStore().encode({"_session_expiry": "2026-11-24T08:04:14.853841+00:00"})),
)


def cookie_blob(data):
    s = CookieStore()
    s.update(data)
    return s._get_session_key()


write("session", "signed-cookie", at_t(lambda: cookie_blob(login)))

# ---------------------------------------------------------------- hashers
# One hash of PASSWORD per hasher, at the lowest work factors each accepts.
SALT = "fuzzsaltfuzzsaltfuzzsa"
hashes = {
    "pbkdf2_sha256": hashers.PBKDF2PasswordHasher().encode(PASSWORD, SALT, iterations=100),
    "pbkdf2_sha1": hashers.PBKDF2SHA1PasswordHasher().encode(PASSWORD, SALT, iterations=100),
    "md5": hashers.MD5PasswordHasher().encode(PASSWORD, SALT),
    "scrypt": hashers.ScryptPasswordHasher().encode(PASSWORD, SALT, n=16, r=1, p=1),
    "unsalted_md5": hashers.UnsaltedMD5PasswordHasher().encode(PASSWORD, "")
    if hasattr(hashers, "UnsaltedMD5PasswordHasher")
    else None,
}


class CheapArgon2(hashers.Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 8
    parallelism = 1


class CheapBcrypt(hashers.BCryptPasswordHasher):
    rounds = 4


class CheapBcryptSha256(hashers.BCryptSHA256PasswordHasher):
    rounds = 4


hashes["argon2"] = CheapArgon2().encode(PASSWORD, SALT)
for h, enc in [
    (hashers.PBKDF2PasswordHasher(), hashes["pbkdf2_sha256"]),
    (hashers.ScryptPasswordHasher(), hashes["scrypt"]),
    (CheapArgon2(), hashes["argon2"]),
]:
    assert h.verify(PASSWORD, enc), enc
hashes["bcrypt"] = CheapBcrypt().encode(PASSWORD, CheapBcrypt().salt())
hashes["bcrypt_sha256"] = CheapBcryptSha256().encode(PASSWORD, CheapBcryptSha256().salt())
# Hashers Django 5.1+ no longer ships, in the formats Django 4.2 wrote.
import hashlib  # noqa: E402

hashes["sha1"] = "sha1$%s$%s" % (SALT, hashlib.sha1((SALT + PASSWORD).encode()).hexdigest())
hashes["unsalted_sha1"] = "sha1$$%s" % hashlib.sha1(PASSWORD.encode()).hexdigest()
hashes["unsalted_md5"] = hashlib.md5(PASSWORD.encode()).hexdigest()
try:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt

    hashes["crypt"] = "crypt$$%s" % crypt.crypt(PASSWORD, "ab")
    hashes["crypt-md5"] = "crypt$$%s" % crypt.crypt(PASSWORD, "$1$fuzzsalt$")
    hashes["crypt-sha512"] = "crypt$$%s" % crypt.crypt(PASSWORD, "$6$rounds=1000$fuzzsalt$")
except ImportError:
    pass
for name, encoded in hashes.items():
    if encoded:
        write("hashers", name, encoded)
write("hashers", "unusable", hashers.make_password(None))
# "password\nencoded": a line before the hash is the password tried.
write("hashers", "wrong-password", "not-" + PASSWORD + "\n" + hashes["md5"])


# ---------------------------------------------------------------- tokens
class User:
    """The user the tokens target checks tokens for (fuzz: TOKEN_USER)."""

    pk = 1
    password = hashes["md5"]
    last_login = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    email = "alice@example.com"

    @classmethod
    def get_email_field_name(cls):
        return "email"


class AtT(PasswordResetTokenGenerator):
    def _now(self):
        return datetime.fromtimestamp(T, tz=timezone.utc).replace(tzinfo=None)


uid = urlsafe_base64_encode(b"1")
token = AtT().make_token(User)
write("tokens", "token", f"{token}\n{uid}")
write("tokens", "token-uuid-pk", f"{token}\n{urlsafe_base64_encode(b'12345678-1234-5678-1234-567812345678')}")
write("tokens", "set-password", f"set-password\n{uid}")

# ---------------------------------------------------------------- csrf
# Lines: cookie, POST token, header token, host, origin, referer, trusted origins, allowed hosts,
# cookie domain (fuzz_targets/csrf.rs).
masked = _mask_cipher_secret(SECRET)
write(
    "csrf",
    "post-https",
    "\n".join([SECRET, masked, "", "example.com", "https://example.com", "", "", "example.com", ""]),
)
write(
    "csrf",
    "header-referer",
    "\n".join(
        [SECRET, "", masked, "example.com:8443", "", "https://example.com:8443/accounts/login/",
         "https://*.example.org", ".example.com", ".example.com"]
    ),
)
write("csrf", "legacy-masked-cookie", "\n".join([_mask_cipher_secret(SECRET), masked]))

# ---------------------------------------------------------------- cookie_header
c = SimpleCookie()
c["csrftoken"] = SECRET
c["sessionid"] = "qrqggtd4cwz2qboal4rekv7fbeyapngc"
c["signed"] = at_t(lambda: signing.get_cookie_signer(salt="color").sign("blue"))
c["quoted"] = 'a "quoted" value; with semicolon'
write("cookie_header", "request", "; ".join(m.OutputString() for m in c.values()))
write("cookie_header", "set-cookie", c["sessionid"].OutputString())

# ---------------------------------------------------------------- form_body
q = QueryDict(mutable=True)
q["csrfmiddlewaretoken"] = masked
q["username"] = "alice"
q["password"] = "p@ss wörd&=+"
q["next"] = "/accounts/profile/?a=1&b=2"
write("form_body", "login", q.urlencode())
q2 = QueryDict(mutable=True)
q2.setlist("new_password1", ["x", "y"])
write("form_body", "repeated", q2.urlencode() + "&empty=&=novalue&noequals")

# ---------------------------------------------------------------- http
# Lines: next URL, Host, allowed hosts, raw path, raw query (fuzz_targets/http.rs).
write("http", "relative", "\n".join(["/accounts/profile/", "example.com", "example.com", "/accounts/login/", "next=%2Faccounts%2Fprofile%2F"]))
write("http", "absolute", "\n".join(["https://example.com/x?y=1#z", "example.com:8000", ".example.com", "/a%20b/caf%C3%A9", "x=|&y=^"]))
write("http", "evil", "\n".join(["//evil.com/\\x", "[::1]:8000", "[::1]", "/%zz/", "q=%E2%82%AC"]))

print(f"seeds written under {OUT}", file=sys.stderr)

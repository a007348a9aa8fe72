"""CLI contract: exit codes, settings from the environment, DJAUTH_DJANGO_VERSION."""

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher

from djcompat import INPROCESS, ok

pytestmark = pytest.mark.skipif(INPROCESS, reason="CLI/config contract of the binary, not Django behaviour")

# "correct horse" with salt abcdefghijklmnopqrstuv, from the spec (produced by each Django).
PBKDF2_BY_VERSION = {
    "4.2": "pbkdf2_sha256$600000$abcdefghijklmnopqrstuv$YwuuPhVNfWRMu1PCdmnmSxN0KZ3ZlgOJcLi7hu9+CkI=",
    "5.2": "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE=",
    "6.0": "pbkdf2_sha256$1200000$abcdefghijklmnopqrstuv$qpvfi7nfV+GcruFoiHOF6ayd/lqEJ/ciAplQGJMa1zQ=",
    "6.1": "pbkdf2_sha256$1500000$abcdefghijklmnopqrstuv$pNqHYgQMzZwLzZH8KDx+/7Hu5G0/nkZvE3+OniqKI9o=",
}
SCRYPT_P1 = "scrypt$16384$abcdefghijklmnopqrstuv$8$1$NSnoIm3vLpDMiLvc+TzkKtXEJGSHphhvkGRpzYQHyvEXGr+784hQA71c+qDUQtSeGdsdq/SfW8IG8hQUkeJTJQ=="
SCRYPT_P5 = "scrypt$16384$abcdefghijklmnopqrstuv$8$5$2CyFzwiSp10903TARkWJsyfC9Q3aeX0RvkHqKxHNeBplPnTz1lYfWZu5pEy7/A6r1KH53voY5f8NgFIZC1gWWA=="
DEFAULT_HASHERS = ",".join(
    "django.contrib.auth.hashers." + c
    for c in ("PBKDF2PasswordHasher", "PBKDF2SHA1PasswordHasher", "Argon2PasswordHasher", "BCryptSHA256PasswordHasher", "ScryptPasswordHasher")
)


@pytest.mark.parametrize("version", sorted(PBKDF2_BY_VERSION))
def test_django_version_selects_work_factors(djauth, version):
    env = {"DJAUTH_DJANGO_VERSION": version, "DJAUTH_PASSWORD_HASHERS": DEFAULT_HASHERS}
    args = ["password", "hash", "--salt", "abcdefghijklmnopqrstuv"]
    assert ok(djauth(*args, "--hasher", "pbkdf2_sha256", stdin="correct horse\n", env=env)) == PBKDF2_BY_VERSION[version]
    expected_scrypt = SCRYPT_P1 if version == "4.2" else SCRYPT_P5
    assert ok(djauth(*args, "--hasher", "scrypt", stdin="correct horse\n", env=env)) == expected_scrypt
    # must_update follows the selected version's work factor
    other = "4.2" if version != "4.2" else "5.2"
    for v in (version, other):
        res = djauth("password", "check", PBKDF2_BY_VERSION[v], stdin="correct horse\n", env=env)
        assert res.rc == 0 and res.json["must_update"] is (v != version), (v, res)


def test_django_version_defaults_to_5_2(djauth):
    env = {"DJAUTH_DJANGO_VERSION": None, "DJAUTH_PASSWORD_HASHERS": DEFAULT_HASHERS}
    encoded = ok(djauth("password", "hash", "--hasher", "pbkdf2_sha256", "--salt", "abcdefghijklmnopqrstuv", stdin="correct horse\n", env=env))
    assert encoded == PBKDF2_BY_VERSION["5.2"]


def test_default_password_hashers_are_djangos(djauth):
    """Without DJAUTH_PASSWORD_HASHERS: Django's default list (PBKDF2 first, no md5)."""
    env = {"DJAUTH_PASSWORD_HASHERS": None}
    encoded = ok(djauth("password", "hash", stdin="pw\n", env=env))
    assert identify_hasher(encoded).algorithm == "pbkdf2_sha256"
    assert check_password("pw", encoded)
    res = djauth("password", "hash", "--hasher", "md5", stdin="pw\n", env=env)
    assert res.rc in (1, 2) and res.stdout == "", res


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["session"],
        ["session", "decode"],
        ["session", "decode", "--engine", "cache", "x"],
        ["signing", "sign"],
        ["csrf", "check-origin"],  # --host missing
        ["token", "check"],
        ["signing", "unsign", "--timestamp", "--max-age", "soon", "v:1:x"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2(djauth, args):
    res = djauth(*args)
    assert res.rc == 2, res
    assert res.stdout == ""


@pytest.mark.parametrize(
    "env",
    [
        {"DJAUTH_SECRET_KEY": None},
        {"DJAUTH_DJANGO_VERSION": "3.2"},
        {"DJAUTH_PASSWORD_RESET_TIMEOUT": "three days"},
        {"DJAUTH_PASSWORD_HASHERS": "django.contrib.auth.hashers.NoSuchHasher"},
    ],
    ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()),
)
def test_config_errors_exit_2(djauth, env):
    if "DJAUTH_PASSWORD_HASHERS" in env:
        res = djauth("password", "hash", stdin="pw\n", env=env)
    elif "DJAUTH_PASSWORD_RESET_TIMEOUT" in env:
        res = djauth("token", "check", "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be", stdin='{"pk": "1", "password": "x", "last_login": null, "email": ""}', env=env)
    else:
        res = djauth("signing", "sign", "hello", env=env)
    assert res.rc == 2, res
    assert res.stdout == "" and res.stderr.strip()

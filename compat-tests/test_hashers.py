"""Password hashers: every hasher the installed Django ships, both directions, must_update."""

import json
import re

import pytest
from django.conf import settings
from django.contrib.auth import hashers
from django.contrib.auth.hashers import check_password, get_hasher, identify_hasher, make_password
from django.test import override_settings

from conftest import DJANGO_VERSION
from djcompat import (
    django_identify,
    django_verify,
    hasher_path,
    installed_algorithms,
    ok,
    random_password,
)

ALGORITHMS = installed_algorithms()

PBKDF2_ITERATIONS = {"4.2": 600_000, "5.0": 720_000, "5.1": 870_000, "5.2": 1_000_000, "6.0": 1_200_000, "6.1": 1_500_000}
SCRYPT_PARALLELISM = {"4.2": 1, "5.0": 1}.get(DJANGO_VERSION, 5)

# Salts a fixed-salt make_password() accepts, per algorithm.
FIXED_SALT = {
    "pbkdf2_sha256": "abcdefghijklmnopqrstuv",
    "pbkdf2_sha1": "abcdefghijklmnopqrstuv",
    "argon2": "abcdefghijklmnopqrstuv",
    "scrypt": "abcdefghijklmnopqrstuv",
    "md5": "abcdefghijklmnopqrstuv",
    "sha1": "abcdefghijklmnopqrstuv",
    "bcrypt_sha256": "$2b$12$abcdefghijklmnopqrstuu",
    "bcrypt": "$2b$12$abcdefghijklmnopqrstuu",
    "crypt": "ab",
    "unsalted_md5": "",
    "unsalted_sha1": "",
}
SALTED_22 = {"pbkdf2_sha256", "pbkdf2_sha1", "argon2", "scrypt", "md5", "sha1"}

FORMAT = {
    "pbkdf2_sha256": r"pbkdf2_sha256\$%d\$[A-Za-z0-9]{22}\$[A-Za-z0-9+/]{43}=" % PBKDF2_ITERATIONS[DJANGO_VERSION],
    "pbkdf2_sha1": r"pbkdf2_sha1\$%d\$[A-Za-z0-9]{22}\$[A-Za-z0-9+/]{27}=" % PBKDF2_ITERATIONS[DJANGO_VERSION],
    "argon2": r"argon2\$argon2id\$v=19\$m=102400,t=2,p=8\$[A-Za-z0-9+/]{30}\$[A-Za-z0-9+/]{43}",
    "bcrypt_sha256": r"bcrypt_sha256\$\$2b\$12\$[./A-Za-z0-9]{53}",
    "bcrypt": r"bcrypt\$\$2b\$12\$[./A-Za-z0-9]{53}",
    "scrypt": r"scrypt\$16384\$[A-Za-z0-9]{22}\$8\$%d\$[A-Za-z0-9+/]{86}==" % SCRYPT_PARALLELISM,
    "md5": r"md5\$[A-Za-z0-9]{22}\$[0-9a-f]{32}",
    "sha1": r"sha1\$[A-Za-z0-9]{22}\$[0-9a-f]{40}",
    "unsalted_sha1": r"sha1\$\$[0-9a-f]{40}",
    "unsalted_md5": r"[0-9a-f]{32}",
    "crypt": r"crypt\$\$[./A-Za-z0-9]{13}",
}


def stdin_pw(pw):
    return pw + "\n"


def django_make(pw, salt, algorithm):
    """make_password(pw, salt, algorithm).  bcrypt salts go in as bytes: since 5.0 Django's
    bcrypt encode() no longer force_bytes() the salt, so a str salt raises TypeError there."""
    if algorithm.startswith("bcrypt") and isinstance(salt, str) and salt:
        salt = salt.encode("ascii")
    return make_password(pw, salt, algorithm)


def djauth_check(djauth, pw, encoded):
    res = djauth("password", "check", encoded, stdin=stdin_pw(pw))
    assert res.rc in (0, 1), res
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res
    doc = json.loads(lines[0])
    assert set(doc) == {"valid", "must_update", "algorithm"}, doc
    assert res.rc == (0 if doc["valid"] else 1), res
    return doc


def django_must_update(encoded):
    """verify_password's second result without the (slow) hashing."""
    try:
        hasher = identify_hasher(encoded)
    except ValueError:
        return False
    preferred = get_hasher("default")
    return hasher.algorithm != preferred.algorithm or preferred.must_update(encoded)


SLOW = ("pbkdf2_sha256", "pbkdf2_sha1", "bcrypt_sha256", "bcrypt", "scrypt")


def passwords_for(algorithm, rng):
    """One password for the slow hashers (suite budget), two for the fast ones."""
    pws = [random_password(rng, 1, 20), random_password(rng, 0, 12)]
    if algorithm in SLOW:
        pws = pws[:1]
    if algorithm == "bcrypt":  # bcrypt >= 5 refuses > 72 bytes (also for pw + "x")
        pws = [p if len(p.encode()) <= 60 else p[:12] for p in pws]
    if algorithm == "crypt":  # DES crypt(3) only reads 8 bytes: stay below so pw+"x" differs
        pws = [p.encode()[:7].decode("utf-8", "ignore") or "pw" for p in pws]
    return pws


@pytest.fixture
def md5_preferred():
    """Checking an unusable/unknown hash runs one dummy hash with the preferred hasher
    (timing equalisation) on both sides; make that hasher cheap.  The verdict does not
    depend on which hasher is preferred."""
    order = [hasher_path("md5")] + [p for p in settings.PASSWORD_HASHERS if p != hasher_path("md5")]
    with override_settings(PASSWORD_HASHERS=order):
        yield


def test_version_parameters_are_what_the_suite_assumes():
    assert settings.PASSWORD_HASHERS[0].endswith(".PBKDF2PasswordHasher")
    assert get_hasher("pbkdf2_sha256").iterations == PBKDF2_ITERATIONS[DJANGO_VERSION]
    assert get_hasher("scrypt").parallelism == SCRYPT_PARALLELISM
    legacy = {"sha1", "unsalted_sha1", "unsalted_md5"}
    assert legacy <= set(ALGORITHMS) if DJANGO_VERSION == "4.2" else not (legacy & set(ALGORITHMS))


# ---------------------------------------------------------------------------------------
# Both directions, every hasher
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_djauth_hash_accepted_by_django(djauth, rng, algorithm):
    for i, pw in enumerate(passwords_for(algorithm, rng)):
        encoded = ok(djauth("password", "hash", "--hasher", algorithm, stdin=stdin_pw(pw)))
        assert re.fullmatch(FORMAT[algorithm], encoded), encoded
        assert identify_hasher(encoded).algorithm == algorithm
        assert check_password(pw, encoded), (pw, encoded)
        # same work factor and salt size as Django: no rehash ping-pong
        assert get_hasher(algorithm).must_update(encoded) is False, encoded
        if i == 0:
            assert not check_password(pw + "x", encoded)
            again = ok(djauth("password", "hash", "--hasher", algorithm, stdin=stdin_pw(pw)))
            if algorithm not in ("unsalted_md5", "unsalted_sha1"):
                assert again != encoded, "salt must be random"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_django_hash_accepted_by_djauth(djauth, rng, algorithm):
    for i, pw in enumerate(passwords_for(algorithm, rng)):
        encoded = make_password(pw, None, algorithm)
        doc = djauth_check(djauth, pw, encoded)
        assert doc == {
            "valid": True,
            "must_update": django_must_update(encoded),
            "algorithm": algorithm,
        }, encoded
        if i == 0:
            wrong = pw[:-1] if pw else " "
            doc = djauth_check(djauth, wrong, encoded)
            assert doc == {"valid": False, "must_update": django_must_update(encoded), "algorithm": algorithm}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fixed_salt_byte_for_byte(djauth, rng, algorithm):
    """--salt S gives exactly make_password(pw, S, algorithm) (all hashers are deterministic then)."""
    salt = FIXED_SALT[algorithm]
    pw = passwords_for(algorithm, rng)[0]
    expected = django_make(pw, salt, algorithm)
    args = ["password", "hash", "--hasher", algorithm]
    if salt:
        args += ["--salt", salt]
    assert ok(djauth(*args, stdin=stdin_pw(pw))) == expected


def test_default_hasher_is_first_of_password_hashers(djauth, rng):
    pw = random_password(rng, 1, 10)
    encoded = ok(djauth("password", "hash", stdin=stdin_pw(pw)))
    assert identify_hasher(encoded).algorithm == "pbkdf2_sha256"
    assert check_password(pw, encoded)
    reordered = [hasher_path("md5")] + [p for p in settings.PASSWORD_HASHERS if not p.endswith(".MD5PasswordHasher")]
    with override_settings(PASSWORD_HASHERS=reordered):
        encoded = ok(djauth("password", "hash", stdin=stdin_pw(pw)))
        assert encoded.startswith("md5$")
        assert check_password(pw, encoded)
        assert ok(djauth("password", "hash", "--salt", "NaCl", stdin=stdin_pw(pw))) == make_password(pw, "NaCl")


def test_stdin_trailing_newline(djauth):
    md5 = ["password", "hash", "--hasher", "md5", "--salt", "seasalt"]
    assert ok(djauth(*md5, stdin="pw\n")) == make_password("pw", "seasalt", "md5")
    assert ok(djauth(*md5, stdin="pw")) == make_password("pw", "seasalt", "md5")
    assert ok(djauth(*md5, stdin="pw\n\n")) == make_password("pw\n", "seasalt", "md5")
    assert ok(djauth(*md5, stdin="a\nb\n")) == make_password("a\nb", "seasalt", "md5")
    assert ok(djauth(*md5, stdin=" pw \n")) == make_password(" pw ", "seasalt", "md5")
    assert ok(djauth(*md5, stdin="\n")) == make_password("", "seasalt", "md5")
    enc = make_password("pw\n", "seasalt", "md5")
    assert djauth_check(djauth, "pw\n", enc)["valid"] is True  # sent as "pw\n\n"
    assert djauth_check(djauth, "pw", enc)["valid"] is False


def test_hasher_must_be_in_password_hashers(djauth):
    with override_settings(PASSWORD_HASHERS=[hasher_path("pbkdf2_sha256"), hasher_path("md5")]):
        for name in ("argon2", "scrypt", "lolcat"):
            res = djauth("password", "hash", "--hasher", name, stdin="pw\n")
            assert res.rc in (1, 2) and res.stdout == "", res
        # and only listed hashers verify
        enc = make_password("pw", "seasalt", "md5")
        assert djauth_check(djauth, "pw", enc)["valid"] is True
    with override_settings(PASSWORD_HASHERS=[hasher_path("pbkdf2_sha256")]):
        assert check_password("pw", enc) is False
        doc = djauth_check(djauth, "pw", enc)
        assert doc == {"valid": False, "must_update": False, "algorithm": None}


# ---------------------------------------------------------------------------------------
# Fixed vectors
# ---------------------------------------------------------------------------------------
# Literal hashes from Django's own tests/auth_tests/test_hashers.py (4.1, 4.2, 5.2, 6.1
# releases).  (password, encoded, algorithm, needs)
DJANGO_TEST_VECTORS = [
    ("lètmein", "pbkdf2_sha256$390000$seasalt$8xBlGd3jVgvJ+92hWPxi5ww0uuAuAnKgC45eudxro7c=", "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha256$600000$seasalt$OAXyhAQ/4ZDA9V5RMExt3C1OwQdUpLZ99vm1McFlLRA=", "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=", "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha256$390000$seasalt2$geC/uZ92nRXDSjSxeoiBqYyRcrLzMm8xK3ro1QS1uo8=", "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha256$600000$seasalt2$OSllgFdJjYQjb0RfMzrx8u0XYl4Fkt+wKpI1yq4lZlo=", "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha1$390000$seasalt2$aDapRanzW8aHTz97v2TcfHzWD+I=", "pbkdf2_sha1"),
    ("lètmein", "pbkdf2_sha1$600000$seasalt2$2CLsaL1MZhq6JOG6QOHtVbiopHE=", "pbkdf2_sha1"),
    ("lètmein", "pbkdf2_sha1$1500000$seasalt2$ep4Ou2hnt2mlvMRsIjUln0Z5MYY=", "pbkdf2_sha1"),
    ("lètmein", "md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3", "md5"),
    ("lètmein", "sha1$seasalt$cff36ea83f5706ce9aa7454e63e431fc726b2dc8", "sha1"),
    ("lètmein", "88a434c88cca4e900f7874cd98123f43", "unsalted_md5"),
    ("lètmein", "md5$$88a434c88cca4e900f7874cd98123f43", "unsalted_md5"),
    ("lètmein", "sha1$$6d138ca3ae545631b3abd71a4f076ce759c5700b", "unsalted_sha1"),
    ("lètmei", "crypt$$ab1Hv2Lg7ltQo", "crypt"),
    (
        "secret",
        "argon2$argon2i$m=8,t=1,p=1$c29tZXNhbHQ$gwQOXSNhxiOxPOA0+PY10P9QFO4NAYysnqRt1GSQLE55m+2GYDt9FEjPMHhP2Cuf0nOEXXMocVrsJAtNSsKyfg",
        "argon2",
    ),
    ("secret", "argon2$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q", "argon2"),
    ("secret", "argon2$argon2id$v=19$m=102400,t=2,p=8$Y041dExhNkljRUUy$TMa6A8fPJhCAUXRhJXCXdw", "argon2"),
    (
        "lètmein",
        "scrypt$16384$seasalt$8$1$Qj3+9PPyRjSJIebHnG81TMjsqtaIGxNQG/aEB/NYafTJ7tibgfYz71m0ldQESkXFRkdVCBhhY8mx7rQwite/Pw==",
        "scrypt",
    ),
    (
        "lètmein",
        "scrypt$16384$seasalt$8$5$ECMIUp+LMxMSK8xB/IVyba+KYGTI7FTnet025q/1f/vBAVnnP3hdYqJuRi+mJn6ji6ze3Fbb7JEFPKGpuEf5vw==",
        "scrypt",
    ),
]

# The spec's table (password "correct horse", salt abcdefghijklmnopqrstuv unless noted).
SPEC_VECTORS = [
    ("pbkdf2_sha256", "4.2", "pbkdf2_sha256$600000$abcdefghijklmnopqrstuv$YwuuPhVNfWRMu1PCdmnmSxN0KZ3ZlgOJcLi7hu9+CkI="),
    ("pbkdf2_sha256", "5.2", "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE="),
    ("pbkdf2_sha256", "6.0", "pbkdf2_sha256$1200000$abcdefghijklmnopqrstuv$qpvfi7nfV+GcruFoiHOF6ayd/lqEJ/ciAplQGJMa1zQ="),
    ("pbkdf2_sha256", "6.1", "pbkdf2_sha256$1500000$abcdefghijklmnopqrstuv$pNqHYgQMzZwLzZH8KDx+/7Hu5G0/nkZvE3+OniqKI9o="),
    ("pbkdf2_sha1", "4.2", "pbkdf2_sha1$600000$abcdefghijklmnopqrstuv$PMkDY9UAFowqjRQEMXKpCLr+d1Q="),
    ("pbkdf2_sha1", "5.2", "pbkdf2_sha1$1000000$abcdefghijklmnopqrstuv$gsrJP1Q5MoohV+k8RPhQCnZJ60s="),
    ("argon2", "*", "argon2$argon2id$v=19$m=102400,t=2,p=8$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dg$cbYV8dbAeaxTGgeSUds3eWl/1GYuxCEvQmo1aJcgrhc"),
    ("argon2", "old", "argon2$argon2i$v=19$m=512,t=2,p=2$YWJjZGVmZ2hpamts$uIH13wSY9p0fhnvlvdL5eg"),
    ("bcrypt_sha256", "*", "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuurByPinJWI/V/0c5apkEb2KJQv7f.gZO"),
    ("bcrypt", "*", "bcrypt$$2b$12$abcdefghijklmnopqrstuuFDJRuYeKkCzo3Wy7h8SxhBSHBAHiPK2"),
    ("scrypt", "4.2", "scrypt$16384$abcdefghijklmnopqrstuv$8$1$NSnoIm3vLpDMiLvc+TzkKtXEJGSHphhvkGRpzYQHyvEXGr+784hQA71c+qDUQtSeGdsdq/SfW8IG8hQUkeJTJQ=="),
    ("scrypt", "5.2", "scrypt$16384$abcdefghijklmnopqrstuv$8$5$2CyFzwiSp10903TARkWJsyfC9Q3aeX0RvkHqKxHNeBplPnTz1lYfWZu5pEy7/A6r1KH53voY5f8NgFIZC1gWWA=="),
    ("md5", "*", "md5$abcdefghijklmnopqrstuv$02144cc061e1c896b28fdbca2ef32806"),
    ("sha1", "*", "sha1$abcdefghijklmnopqrstuv$4e47d0814a3787b3773b25c8e8d86ce8aa5d9747"),
    ("unsalted_sha1", "*", "sha1$$2f9e53523b62abc141a2b4d6019d23cba835dbd0"),
    ("unsalted_md5", "*", "3cb4e732631f47e6eb961f34554b7cde"),
    ("unsalted_md5", "*", "md5$$3cb4e732631f47e6eb961f34554b7cde"),
    ("crypt", "*", "crypt$$abhfCpXqd4GrI"),
]


def _vector_id(v):
    return v[1][:48]


@pytest.mark.parametrize("vector", DJANGO_TEST_VECTORS, ids=_vector_id)
def test_django_test_vectors(djauth, vector, request):
    pw, encoded, algorithm = vector
    if algorithm not in ALGORITHMS:
        request.getfixturevalue("md5_preferred")  # only the dummy hash runs: keep it cheap
    if algorithm in ALGORITHMS:
        doc = djauth_check(djauth, pw, encoded)
        assert doc == {"valid": True, "must_update": django_must_update(encoded), "algorithm": algorithm}
        if not algorithm.startswith("pbkdf2"):  # (slow ones: wrong passwords are tested elsewhere)
            assert djauth_check(djauth, pw + "z", encoded)["valid"] is False
    else:
        # Hasher gone from this Django (5.0: crypt; 5.1: sha1/unsalted): nobody can log in.
        assert check_password(pw, encoded) is False
        doc = djauth_check(djauth, pw, encoded)
        assert doc == {"valid": False, "must_update": False, "algorithm": None}


def test_raw_sha1_is_not_unsalted_sha1(djauth, md5_preferred):
    """Django's test: the bare 40-hex SHA1 (without 'sha1$$') is not accepted."""
    raw = "6d138ca3ae545631b3abd71a4f076ce759c5700b"
    assert check_password("lètmein", raw) is False
    assert djauth_check(djauth, "lètmein", raw) == {"valid": False, "must_update": False, "algorithm": None}


@pytest.mark.parametrize("vector", SPEC_VECTORS, ids=_vector_id)
def test_spec_correct_horse_vectors(djauth, vector, request):
    algorithm, version, encoded = vector
    pw = "correct horse"
    if algorithm not in ALGORITHMS:
        request.getfixturevalue("md5_preferred")  # only the dummy hash runs: keep it cheap
        assert check_password(pw, encoded) is False
        assert djauth_check(djauth, pw, encoded) == {"valid": False, "must_update": False, "algorithm": None}
        return
    doc = djauth_check(djauth, pw, encoded)
    assert doc == {"valid": True, "must_update": django_must_update(encoded), "algorithm": algorithm}
    # This version's own row must be reproduced byte for byte from the same salt.
    if algorithm.startswith("pbkdf2"):
        reproduce = version == DJANGO_VERSION
    elif algorithm == "scrypt":
        reproduce = (version == "4.2") == (SCRYPT_PARALLELISM == 1)
    elif algorithm == "unsalted_md5":
        reproduce = not encoded.startswith("md5$$")
    else:
        reproduce = version == "*"
    if reproduce:
        salt = FIXED_SALT[algorithm] if algorithm != "md5" else "abcdefghijklmnopqrstuv"
        args = ["password", "hash", "--hasher", algorithm] + (["--salt", salt] if salt else [])
        assert ok(djauth(*args, stdin=stdin_pw(pw))) == encoded == django_make(pw, salt, algorithm)


# ---------------------------------------------------------------------------------------
# must_update agreement (which hashes Django would rewrite on login)
# ---------------------------------------------------------------------------------------
def _cheap_variants():
    """(label, password, encoded) hashes with non-default parameters, cheap to verify."""
    out = []
    pw = "lètmein ✓"
    p256 = get_hasher("pbkdf2_sha256")
    out.append(("pbkdf2 1000 iterations", pw, p256.encode(pw, "abcdefghijklmnopqrstuv", iterations=1000)))
    out.append(("pbkdf2 weak salt, 1000 it", pw, p256.encode(pw, "iodizedsalt", iterations=1000)))
    out.append(("pbkdf2_sha1 1000", pw, get_hasher("pbkdf2_sha1").encode(pw, "abcdefghijklmnopqrstuv", iterations=1000)))
    a2 = hashers.Argon2PasswordHasher()  # fresh instance: attributes don't leak into get_hasher()
    a2.time_cost, a2.memory_cost, a2.parallelism = 1, 64, 1
    out.append(("argon2 t=1 m=64 p=1", pw, a2.encode(pw, "abcdefghijklmnopqrstuv")))
    out.append(("argon2 old argon2i", "correct horse", SPEC_VECTORS[7][2]))
    out.append(("argon2 hash_len 16", "secret", "argon2$argon2id$v=19$m=102400,t=2,p=8$Y041dExhNkljRUUy$TMa6A8fPJhCAUXRhJXCXdw"))
    import bcrypt

    out.append(("bcrypt_sha256 4 rounds", pw, get_hasher("bcrypt_sha256").encode(pw, bcrypt.gensalt(4))))
    out.append(("bcrypt 4 rounds", pw, get_hasher("bcrypt").encode(pw, bcrypt.gensalt(4))))
    sc = get_hasher("scrypt")
    out.append(("scrypt N=2^10", pw, sc.encode(pw, "abcdefghijklmnopqrstuv", n=2**10)))
    out.append(("scrypt N=2^10 r=4 p=2", pw, sc.encode(pw, "abcdefghijklmnopqrstuv", n=2**10, r=4, p=2)))
    out.append(("md5 weak salt", pw, make_password(pw, "seasalt", "md5")))
    out.append(("md5 strong salt", pw, make_password(pw, "abcdefghijklmnopqrstuv", "md5")))
    if "sha1" in ALGORITHMS:
        out.append(("sha1 weak salt", pw, make_password(pw, "seasalt", "sha1")))
        out.append(("sha1 strong salt", pw, make_password(pw, "abcdefghijklmnopqrstuv", "sha1")))
        out.append(("unsalted_md5", pw, make_password(pw, "", "unsalted_md5")))
    return out


PREFERRED = ["pbkdf2_sha256", "argon2", "bcrypt_sha256", "scrypt", "md5", "bcrypt", "pbkdf2_sha1"]


@pytest.mark.parametrize("preferred", PREFERRED)
def test_must_update_matches_django(djauth, preferred):
    order = [hasher_path(preferred)] + [p for p in settings.PASSWORD_HASHERS if p != hasher_path(preferred)]
    with override_settings(PASSWORD_HASHERS=order):
        for label, pw, encoded in _cheap_variants():
            valid, must_update = django_verify(pw, encoded)
            assert valid, label
            doc = djauth_check(djauth, pw, encoded)
            assert doc == {"valid": True, "must_update": must_update, "algorithm": identify_hasher(encoded).algorithm}, label
        # a wrong password still reports Django's must_update (verify_password's 2nd value)
        label, pw, encoded = _cheap_variants()[0]
        valid, must_update = django_verify("wrong", encoded)
        assert not valid
        assert djauth_check(djauth, "wrong", encoded) == {
            "valid": False,
            "must_update": must_update,
            "algorithm": "pbkdf2_sha256",
        }


def test_must_update_pbkdf2_higher_and_weak_salt(djauth):
    """Spec fact 4: *more* iterations than Django's also rewrite; so does a short salt."""
    it = PBKDF2_ITERATIONS[DJANGO_VERSION]
    p256 = get_hasher("pbkdf2_sha256")
    cases = [
        p256.encode("pw", "abcdefghijklmnopqrstuv", iterations=it + 1),
        p256.encode("pw", "abcdefghijklmnopqrstu", iterations=it),  # 21 chars: 125 bits < 128
    ]
    for encoded in cases:
        assert django_must_update(encoded) is True
        assert djauth_check(djauth, "pw", encoded) == {"valid": True, "must_update": True, "algorithm": "pbkdf2_sha256"}


def test_must_update_argon2_weak_salt(djauth):
    order = [hasher_path("argon2")] + [p for p in settings.PASSWORD_HASHERS if p != hasher_path("argon2")]
    with override_settings(PASSWORD_HASHERS=order):
        weak = make_password("pw", "iodizedsalt", "argon2")
        strong = make_password("pw", "abcdefghijklmnopqrstuv", "argon2")
        for encoded, expected in [(weak, True), (strong, False)]:
            assert django_must_update(encoded) is expected
            assert djauth_check(djauth, "pw", encoded) == {"valid": True, "must_update": expected, "algorithm": "argon2"}


# ---------------------------------------------------------------------------------------
# bcrypt specifics
# ---------------------------------------------------------------------------------------
def test_bcrypt_sha256_long_password_not_truncated(djauth):
    password = "VSK0UYV6FFQVZ0KG88DYN9WADAADZO1CTSIVDJUNZSUML6IBX7LN7ZS3R5JGB3RGZ7VI7G7DJQ9NI8BQFSRPTG6UWTTVESA5ZPUN"
    import bcrypt

    encoded = get_hasher("bcrypt_sha256").encode(password, bcrypt.gensalt(4))
    assert check_password(password, encoded) and not check_password(password[:72], encoded)
    assert djauth_check(djauth, password, encoded)["valid"] is True
    assert djauth_check(djauth, password[:72], encoded)["valid"] is False
    mine = ok(djauth("password", "hash", "--hasher", "bcrypt_sha256", stdin=stdin_pw(password)))
    assert check_password(password, mine) and not check_password(password[:72], mine)


@pytest.mark.parametrize("prefix", ["$2a$", "$2y$"])
def test_bcrypt_other_prefixes(djauth, prefix):
    import bcrypt

    for algorithm in ("bcrypt_sha256", "bcrypt"):
        encoded = get_hasher(algorithm).encode("pässword", bcrypt.gensalt(4)).replace("$2b$", prefix, 1)
        assert check_password("pässword", encoded) is True
        assert djauth_check(djauth, "pässword", encoded)["valid"] is True
        assert djauth_check(djauth, "password", encoded)["valid"] is False


# ---------------------------------------------------------------------------------------
# Unusable, unknown and malformed hashes
# ---------------------------------------------------------------------------------------
def test_unusable_passwords(djauth, md5_preferred):
    for encoded in [make_password(None), make_password(None), "!", "!pbkdf2_sha256$1$a$b"]:
        assert not hashers.is_password_usable(encoded)
        for pw in ("", encoded, "!"):
            assert check_password(pw, encoded) is False
            res = djauth("password", "check", encoded, stdin=stdin_pw(pw))
            assert res.rc == 1 and res.stderr.strip(), res
            assert json.loads(res.stdout) == {"valid": False, "must_update": False, "algorithm": None}


def test_unusable_password_default_hashers(djauth):
    encoded = make_password(None)
    assert check_password("pw", encoded) is False
    res = djauth("password", "check", encoded, stdin="pw\n")
    assert res.rc == 1 and json.loads(res.stdout) == {"valid": False, "must_update": False, "algorithm": None}


@pytest.mark.parametrize(
    "encoded",
    [
        "lolcat$salt$hash",
        "",
        "$",
        "pbkdf2_sha512$1000$salt$hash",
        "plaintext-password",
        # 32 chars without '$': identify_hasher calls it unsalted_md5 even though it isn't hex
        "0123456789abcdef0123456789abcdeg",
        # 37 chars starting md5$$: also unsalted_md5
        "md5$$0123456789abcdef0123456789abcdef",
    ],
)
def test_unknown_or_unidentifiable(djauth, md5_preferred, encoded):
    assert check_password("pw", encoded) is False
    res = djauth("password", "check", encoded, stdin="pw\n")
    assert res.rc == 1, res
    expected_algorithm = django_identify(encoded)
    assert json.loads(res.stdout) == {
        "valid": False,
        "must_update": django_verify("pw", encoded)[1],
        "algorithm": expected_algorithm,
    }
    if expected_algorithm is None:
        assert res.stderr.strip(), "a reason on stderr for an unknown hash"


@pytest.mark.parametrize(
    "encoded",
    [
        "pbkdf2_sha256$notanumber$salt$aGFzaA==",
        "pbkdf2_sha256$1000$salt",
        "pbkdf2_sha256",
        "md5$onlysalt",
        "argon2$argon2id$v=19$m=8,t=1,p=1$c2FsdA",
        "argon2$garbage",
        "bcrypt_sha256$$2b$04$short",
        "scrypt$16384$salt$8$1",
        "scrypt$nan$salt$8$1$aGFzaA==",
    ],
)
def test_malformed_known_algorithm(djauth, encoded):
    """Django raises or returns False; djauth must say invalid (exit 1), not crash."""
    assert django_verify("pw", encoded)[0] is False
    res = djauth("password", "check", encoded, stdin="pw\n")
    assert res.rc == 1, res
    assert json.loads(res.stdout)["valid"] is False


def test_empty_password(djauth):
    for algorithm in ("md5",):  # (the random passwords of the both-ways tests include "")
        encoded = ok(djauth("password", "hash", "--hasher", algorithm, stdin="\n"))
        assert check_password("", encoded) and not check_password(" ", encoded)
        assert djauth_check(djauth, "", encoded)["valid"] is True
        assert djauth_check(djauth, " ", encoded)["valid"] is False

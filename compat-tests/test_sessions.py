"""Session data (db and signed_cookies engines) and the session auth hash."""

import json

import pytest
from django.contrib.auth import HASH_SESSION_KEY, get_user
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends import db as db_backend
from django.contrib.sessions.backends import signed_cookies as cookie_backend
from django.core import signing
from django.test import RequestFactory, override_settings

from djcompat import (
    MemoryBackend,
    canonical,
    django_time,
    make_user,
    ok,
    random_session_dict,
    random_text,
    refused,
)

T0 = 1700000000
COOKIE_SALT = "django.contrib.sessions.backends.signed_cookies"
ENGINES = ["db", "signed_cookies"]


def django_encode(engine, d):
    """Exactly what Django stores: the db row's session_data / the signed cookie value."""
    if engine == "db":
        return db_backend.SessionStore().encode(d)
    s = cookie_backend.SessionStore()
    s.update(d)
    s.save()
    return s.session_key


def django_decode(engine, blob):
    """What Django loads from it ({} when refused)."""
    if engine == "db":
        return db_backend.SessionStore().decode(blob)
    return cookie_backend.SessionStore(session_key=blob).load()


def engine_args(engine, explicit=True):
    return ["--engine", engine] if (explicit or engine != "db") else []


@pytest.mark.parametrize("engine", ENGINES)
def test_django_blob_decoded_by_djauth(djauth, rng, engine):
    for i in range(8):
        d = random_session_dict(rng)
        blob = django_encode(engine, d)
        res = djauth("session", "decode", *engine_args(engine, explicit=i % 2 == 0), blob)
        assert canonical(json.loads(ok(res))) == canonical(d), blob


@pytest.mark.parametrize("engine", ENGINES)
def test_djauth_blob_decoded_by_django(djauth, rng, engine):
    for i in range(8):
        d = random_session_dict(rng)
        stdin = json.dumps(d, ensure_ascii=i % 2 == 0)
        blob = ok(djauth("session", "encode", *engine_args(engine, explicit=i % 2 == 0), stdin=stdin))
        assert canonical(django_decode(engine, blob)) == canonical(d), blob
        # and the other engine's salt does not accept it
        other = "db" if engine == "signed_cookies" else "signed_cookies"
        assert django_decode(other, blob) == {}


def test_default_engine_is_db(djauth):
    d = {"_auth_user_id": "7", "cart": [1, 2]}
    blob = ok(djauth("session", "encode", stdin=json.dumps(d)))
    assert db_backend.SessionStore().decode(blob) == d
    assert json.loads(ok(djauth("session", "decode", db_backend.SessionStore().encode(d)))) == d


def test_login_session_is_compressed_like_djangos(djauth):
    """A real login dict compresses; Django writes it with a leading '.', so must djauth."""
    d = {
        "_auth_user_id": "1",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "0" * 64,
    }
    for engine in ENGINES:
        assert django_encode(engine, d).startswith(".")
        blob = ok(djauth("session", "encode", "--engine", engine, stdin=json.dumps(d)))
        assert blob.startswith("."), blob
        assert django_decode(engine, blob) == d
    # tiny dicts don't compress
    for engine in ENGINES:
        blob = ok(djauth("session", "encode", "--engine", engine, stdin="{}"))
        assert not blob.startswith(".")
        assert django_decode(engine, blob) == {}


def test_spec_examples_decode(djauth):
    """Worked examples from the spec (SECRET_KEY 'spec-secret-key')."""
    env = {"DJAUTH_SECRET_KEY": "spec-secret-key"}
    auth = {
        "_auth_user_id": "1",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "0" * 64,
    }
    cases = [
        ("db", "e30:1r31eq:UdVxwSIU1gt_pi9-glWNSk2EAg3x0PNe3tsFt_tM9gg", {}),
        ("db", "eyJmb28iOiJiYXIifQ:1r31eq:PfGuc16kZZCHTubEiW2hynKhyO3C5CNBiGvoOqvyAUw", {"foo": "bar"}),
        (
            "db",
            ".eJyrVopPLC3JiC8tTi2Kz0xRslIyVNJBFktKTM5OzQNJpGQl5qXn6yXn55UUZSbpgZToQWWL9XzzU1JznKBqUQzISCzOAOo2oBAo1QIAIvYyTQ:1r31eq:P_QtVno7TGgOIXNEdkKGhKa4EoNCQ-FkJlFniZ8lmRk",
            auth,
        ),
        ("signed_cookies", "eyJmb28iOiJiYXIifQ:1r31eq:EimO5MAhxL5_ZYxC2I1gpgDfkJeTAZFH3ooXlY35_XY", {"foo": "bar"}),
    ]
    with override_settings(SECRET_KEY="spec-secret-key"):
        for engine, blob, expected in cases:
            with django_time(T0):
                assert django_decode(engine, blob) == expected
            res = djauth("session", "decode", "--engine", engine, "--now", T0, blob, env=env)
            assert json.loads(ok(res)) == expected
        # byte-identical for the uncompressed ones (json and signature are deterministic)
        for engine, blob, expected in cases:
            if blob.startswith("."):
                continue
            got = ok(djauth("session", "encode", "--engine", engine, "--now", T0, stdin=json.dumps(expected), env=env))
            assert got == blob


@pytest.mark.parametrize("engine", ENGINES)
def test_encode_uncompressed_byte_for_byte(djauth, rng, engine):
    """Small dicts are not compressed by Django, so the whole blob is deterministic."""
    for _ in range(5):
        d = {random_text(rng, 1, 3, ascii_only=True): rng.randint(0, 9)}
        now = T0 + rng.randint(0, 10**7)
        with django_time(now):
            expected = django_encode(engine, d)
        if expected.startswith("."):
            continue
        got = ok(djauth("session", "encode", "--engine", engine, "--now", now, stdin=json.dumps(d)))
        assert got == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_tampered_blobs_refused_by_both(djauth, rng, engine):
    d = random_session_dict(rng)
    d["_auth_user_id"] = "42"
    blob = django_encode(engine, d)
    body, ts, sig = blob.split(":")
    bad = [
        body[:-1] + ("A" if body[-1] != "A" else "B") + f":{ts}:{sig}",
        f"{body}:{ts}:{sig[::-1]}",
        f"{body}:{ts}:",
        f"{body}:{sig}",
        "",
        "garbage",
        "e30",
        signing.dumps(d, salt="django.contrib.sessions.OtherStore", compress=True),  # wrong salt
        signing.dumps(d, key="not-the-secret", salt=COOKIE_SALT if engine != "db" else "django.contrib.sessions.SessionStore"),
    ]
    for b in bad:
        assert django_decode(engine, b) == {}, b
        refused(djauth("session", "decode", "--engine", engine, b))


def test_malformed_json_in_valid_signature(djauth):
    for raw in ["bm90IGpzb24", ".eJzLy89XSMsvylVIBwAcQQSI"]:
        blob = signing.TimestampSigner(salt="django.contrib.sessions.SessionStore").sign(raw)
        assert db_backend.SessionStore().decode(blob) == {}
        refused(djauth("session", "decode", "--engine", "db", blob))


def test_encode_rejects_non_object(djauth):
    for stdin in ["[1, 2]", '"str"', "12", "not json", ""]:
        res = djauth("session", "encode", stdin=stdin)
        assert res.rc != 0, (stdin, res)
        assert res.stdout == ""


def test_db_engine_has_no_max_age(djauth):
    """The db row's expiry lives in expire_date; the signature timestamp is ignored."""
    with django_time(T0):
        blob = db_backend.SessionStore().encode({"a": 1})
    far = T0 + 10 * 365 * 86400
    with django_time(far):
        assert db_backend.SessionStore().decode(blob) == {"a": 1}
    assert json.loads(ok(djauth("session", "decode", "--engine", "db", "--now", far, blob))) == {"a": 1}


@pytest.mark.parametrize("cookie_age", [1209600, 3600])
def test_signed_cookies_max_age_is_session_cookie_age(djauth, rng, cookie_age):
    with override_settings(SESSION_COOKIE_AGE=cookie_age):
        signed_at = T0 + rng.random()
        with django_time(signed_at):
            blob = django_encode("signed_cookies", {"a": "b"})
        for off in [0, cookie_age - 1, cookie_age, cookie_age + 0.5, cookie_age + 1, cookie_age * 3]:
            now = T0 + off
            with django_time(now):
                expected = django_decode("signed_cookies", blob)
            res = djauth("session", "decode", "--engine", "signed_cookies", "--now", repr(now), blob)
            if expected:
                assert json.loads(ok(res)) == expected, off
            else:
                refused(res)
        # djauth-made at a pinned time expires for Django at the same boundary
        blob2 = ok(djauth("session", "encode", "--engine", "signed_cookies", "--now", T0, stdin='{"x": 1}'))
        with django_time(T0 + cookie_age):
            assert django_decode("signed_cookies", blob2) == {"x": 1}
        with django_time(T0 + cookie_age + 1):
            assert django_decode("signed_cookies", blob2) == {}


def test_signed_cookie_made_now_is_fresh(djauth):
    blob = ok(djauth("session", "encode", "--engine", "signed_cookies", stdin='{"x": 1}'))
    with override_settings(SESSION_COOKIE_AGE=120):
        assert django_decode("signed_cookies", blob) == {"x": 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_session_fallback_keys(djauth, rng, engine):
    old = "old-session-key-%d" % rng.randint(0, 10**9)
    d = random_session_dict(rng)
    with override_settings(SECRET_KEY=old):
        blob = django_encode(engine, d)
    refused(djauth("session", "decode", "--engine", engine, blob))
    with override_settings(SECRET_KEY_FALLBACKS=[old]):
        assert canonical(django_decode(engine, blob)) == canonical(d)
        assert canonical(json.loads(ok(djauth("session", "decode", "--engine", engine, blob)))) == canonical(d)
        mine = ok(djauth("session", "encode", "--engine", engine, stdin=json.dumps(d)))
    # re-encoded with the current key
    assert canonical(django_decode(engine, mine)) == canonical(d)


# ---------------------------------------------------------------------------------------
# Session auth hash (_auth_user_hash)
# ---------------------------------------------------------------------------------------
def password_fields(rng):
    return [
        make_password("pw", "abcdefghijklmnopqrstuv", "md5"),
        make_password(random_text(rng, 1, 20), None, "md5"),
        "pbkdf2_sha256$1000000$fixedsaltfixedsaltfixe$HIj1wkng6cpxJZKoK3O+ul1agiRGacCHdyDts6bkcqM=",
        "!" + random_text(rng, 40, 40, ascii_only=True).replace("-", "x"),
        random_text(rng, 1, 60, controls=False).lstrip("-") or "x",
    ]


def test_auth_hash_matches_django(djauth, rng):
    for pw in password_fields(rng):
        expected = make_user(password=pw).get_session_auth_hash()
        assert ok(djauth("session", "auth-hash", pw)) == expected
        assert ok(djauth("session", "verify-auth-hash", expected, pw)) == "current"


def test_auth_hash_spec_example(djauth):
    pw = "pbkdf2_sha256$1000000$fixedsaltfixedsaltfixe$HIj1wkng6cpxJZKoK3O+ul1agiRGacCHdyDts6bkcqM="
    with override_settings(SECRET_KEY="spec-secret-key"):
        expected = make_user(password=pw).get_session_auth_hash()
        assert expected == "d7438fbaa6348a2b38daf7bb31d9a0af87dbc5d44369eaf34e3f4e213dc42c36"
        assert ok(djauth("session", "auth-hash", pw)) == expected


def _django_get_user_outcome(pw_field, stored_hash):
    """Run django.contrib.auth.get_user() on a session carrying ``stored_hash``:
    'current' (kept as is), 'fallback' (accepted, key cycled, hash rewritten) or 'mismatch'
    (flushed, anonymous)."""
    user = make_user(pk=5, password=pw_field)
    MemoryBackend.users = {"5": user}
    session = cookie_backend.SessionStore()
    session["_auth_user_id"] = "5"
    session["_auth_user_backend"] = "djcompat.MemoryBackend"
    if stored_hash is not None:
        session[HASH_SESSION_KEY] = stored_hash
    session.save()
    request = RequestFactory().get("/")
    request.session = cookie_backend.SessionStore(session.session_key)
    before_key = request.session.session_key
    got = get_user(request)
    if not got.is_authenticated:
        assert request.session.is_empty() or not request.session.keys()
        return "mismatch"
    if request.session.session_key == before_key and request.session.get(HASH_SESSION_KEY) == stored_hash:
        return "current"
    assert request.session[HASH_SESSION_KEY] == user.get_session_auth_hash()
    return "fallback"


def test_verify_auth_hash_current_fallback_mismatch(djauth, rng):
    old1 = "fallback-one-%d" % rng.randint(0, 10**9)
    old2 = "fallback-two-%d" % rng.randint(0, 10**9)
    for pw in password_fields(rng)[:3]:
        with override_settings(SECRET_KEY=old2):
            h_old2 = make_user(password=pw).get_session_auth_hash()
        with override_settings(SECRET_KEY="never-a-fallback"):
            h_other = make_user(password=pw).get_session_auth_hash()
        h_now = make_user(password=pw).get_session_auth_hash()
        h_other_pw = make_user(password=pw + "x").get_session_auth_hash()
        with override_settings(SECRET_KEY_FALLBACKS=[old1, old2]):
            cases = [
                (h_now, "current"),
                (h_old2, "fallback"),
                (h_other, "mismatch"),
                (h_other_pw, "mismatch"),
                (h_now.upper(), "mismatch"),
                (h_now[:-1], "mismatch"),
                ("", "mismatch"),
                ("0" * 64, "mismatch"),
            ]
            for stored, expected in cases:
                assert _django_get_user_outcome(pw, stored) == expected, stored
                res = djauth("session", "verify-auth-hash", stored, pw)
                assert res.out == expected, (stored, res)
                assert res.rc == (1 if expected == "mismatch" else 0), res
        # without fallbacks configured the old hash is a mismatch
        assert _django_get_user_outcome(pw, h_old2) == "mismatch"
        res = djauth("session", "verify-auth-hash", h_old2, pw)
        assert (res.rc, res.out) == (1, "mismatch")


def test_missing_hash_flushes(djauth):
    pw = make_password("pw", "abcdefghijklmnopqrstuv", "md5")
    assert _django_get_user_outcome(pw, None) == "mismatch"
    res = djauth("session", "verify-auth-hash", "", pw)
    assert (res.rc, res.out) == (1, "mismatch")


def test_djauth_login_session_accepted_by_django(djauth, rng):
    """A login session written entirely by djauth (hash + blob) is a logged-in user for Django."""
    pw = make_password(random_text(rng, 5, 15), None, "md5")
    h = ok(djauth("session", "auth-hash", pw))
    d = {"cart": [1, 2], "_auth_user_id": "5", "_auth_user_backend": "djcompat.MemoryBackend", "_auth_user_hash": h}
    blob = ok(djauth("session", "encode", "--engine", "signed_cookies", stdin=json.dumps(d)))
    MemoryBackend.users = {"5": make_user(pk=5, password=pw)}
    request = RequestFactory().get("/")
    request.session = cookie_backend.SessionStore(blob)
    user = get_user(request)
    assert user.is_authenticated and user.pk == 5
    assert request.session.session_key == blob  # not cycled: hash verified with SECRET_KEY

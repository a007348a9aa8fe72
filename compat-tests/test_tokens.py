"""Password-reset tokens (PasswordResetTokenGenerator) and uidb64."""

import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.test import override_settings
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_decode, urlsafe_base64_encode

from djcompat import DuckUser, make_user, ok, random_text, token_time, user_json, utc

T0 = 1704196800  # 2024-01-02 12:00:00 UTC


def django_make(user, t):
    with token_time(t):
        return PasswordResetTokenGenerator().make_token(user)


def django_check(user, token, t):
    with token_time(t):
        return PasswordResetTokenGenerator().check_token(user, token)


def djauth_make(djauth, user, t=None, **kw):
    args = ["token", "make"] + (["--now", repr(t)] if t is not None else [])
    return ok(djauth(*args, stdin=user_json(user.pk, user.password, user.last_login, user.email), **kw))


def djauth_check(djauth, user, token, t=None, **kw):
    args = ["token", "check"] + (["--now", repr(t)] if t is not None else []) + [token]
    res = djauth(*args, stdin=user_json(user.pk, user.password, user.last_login, user.email), **kw)
    assert res.rc in (0, 1), res
    return res.rc == 0


def random_user(rng, *, uuid_pk=False):
    last_login = rng.choice(
        [
            None,
            utc(2024, 1, 2, 3, 4, 5, 678901),
            utc(2024, 1, 2, 3, 4, 5),
            datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999999)),
        ]
    )
    email = rng.choice(["", "alice@example.com", random_text(rng, 1, 10, controls=False) + "@exämple.com"])
    password = rng.choice(
        [
            make_password(random_text(rng, 1, 10), None, "md5"),
            "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE=",
            make_password(None),
        ]
    )
    if uuid_pk:
        return DuckUser(str(uuid.UUID(int=rng.getrandbits(128))), password, last_login, email)
    return make_user(pk=rng.choice([1, 2, rng.randint(3, 2**31 - 1)]), password=password, last_login=last_login, email=email)


def interesting_times(rng, tz):
    """Unix times incl. both sides of DST changes and the repeated hour (fold)."""
    times = [T0, T0 + rng.randint(0, 10**8), 978307200 + 86400 * 365 * 20]
    if tz == "America/Chicago":
        # 2024-11-03 01:30 local happens twice: 06:30Z (CDT) and 07:30Z (CST)
        times += [1730615400, 1730619000, 1730613600 - 1, 1730620800 + 1]
        # 2024-03-10 spring forward at 08:00Z
        times += [1710057600 - 1, 1710057600, 1710057600 + 1]
    return times


# ---------------------------------------------------------------------------------------
def test_make_byte_for_byte(djauth, rng, time_zone):
    for t in interesting_times(rng, time_zone):
        for uuid_pk in (False, True):
            user = random_user(rng, uuid_pk=uuid_pk)
            expected = django_make(user, t)
            assert djauth_make(djauth, user, t) == expected, (t, time_zone)


def test_django_token_checked_by_djauth(djauth, rng, time_zone):
    for t in interesting_times(rng, time_zone):
        user = random_user(rng, uuid_pk=rng.random() < 0.3)
        token = django_make(user, t)
        assert djauth_check(djauth, user, token, t + rng.randint(0, 3600))


def test_djauth_token_checked_by_django(djauth, rng, time_zone):
    for t in interesting_times(rng, time_zone):
        user = random_user(rng, uuid_pk=rng.random() < 0.3)
        token = djauth_make(djauth, user, t)
        assert django_check(user, token, t + rng.randint(0, 3600)), (token, t)


def test_real_clock_uses_time_zone(djauth, rng, time_zone):
    """Without --now the timestamp is wall-clock seconds in TIME_ZONE (djauth runs with a
    different machine TZ), exactly what Django's datetime.now() gives."""
    user = random_user(rng)
    token = djauth_make(djauth, user)
    gen = PasswordResetTokenGenerator()
    now_ts = gen._num_seconds(gen._now())  # real clock, process TZ = TIME_ZONE
    ts = base36_to_int(token.split("-")[0])
    assert abs(ts - now_ts) <= 5, (ts, now_ts, time_zone)
    assert gen.check_token(user, token)
    assert djauth_check(djauth, user, gen.make_token(user))


@pytest.mark.parametrize("timeout", [259200, 3600, 0])
def test_expiry_boundary(djauth, rng, time_zone, timeout):
    with override_settings(PASSWORD_RESET_TIMEOUT=timeout):
        starts = [T0 + rng.randint(0, 10**7)]
        if time_zone == "America/Chicago":
            starts += [1730448000, 1710000000]  # windows crossing the Nov/Mar DST changes
        for t in starts:
            user = random_user(rng)
            token = django_make(user, t)
            offsets = {0, timeout - 1, timeout, timeout + 1, timeout + 3599, timeout + 3600, timeout + 3601, -86400}
            offsets |= {timeout - 3601, timeout - 3600, timeout - 3599}
            for off in sorted(offsets):
                expected = django_check(user, token, t + off)
                assert djauth_check(djauth, user, token, t + off) == expected, (t, off, expected)


def test_user_state_changes_invalidate(djauth, rng, time_zone):
    user = make_user(pk=9, password=make_password("a", None, "md5"), last_login=None, email="u@example.com")
    token = djauth_make(djauth, user, T0)
    assert django_check(user, token, T0) and djauth_check(djauth, user, token, T0)
    variants = [
        make_user(pk=10, password=user.password, last_login=None, email=user.email),
        make_user(pk=9, password=make_password("a", None, "md5"), last_login=None, email=user.email),
        make_user(pk=9, password=user.password, last_login=utc(2024, 1, 2, 11, 0, 0), email=user.email),
        make_user(pk=9, password=user.password, last_login=None, email="other@example.com"),
        make_user(pk=9, password=user.password, last_login=None, email=""),
    ]
    for other in variants:
        assert not django_check(other, token, T0)
        assert not djauth_check(djauth, other, token, T0)
    # microseconds of last_login do not matter
    a = make_user(pk=3, password="x", last_login=utc(2024, 5, 6, 7, 8, 9, 1), email="")
    b = make_user(pk=3, password="x", last_login=utc(2024, 5, 6, 7, 8, 9, 999999), email="")
    tok = django_make(a, T0)
    assert django_check(b, tok, T0) and djauth_check(djauth, b, tok, T0)


def test_tampered_tokens(djauth, rng):
    user = random_user(rng)
    token = django_make(user, T0)
    ts, h = token.split("-")
    bad = [
        f"{ts}-{h[:-1]}{'0' if h[-1] != '0' else '1'}",
        f"{ts}-{h.upper()}",
        f"{ts.upper()}-{h}" if ts.upper() != ts else f"0{ts}-{h}",
        f"0{ts}-{h}",  # same number, different text
        f"+{ts}-{h}",
        f"{ts}-{h}-x",
        f"{ts}{h}",
        f"{ts}-",
        f"{'z' * 14}-{h}",  # more than 13 base36 digits
        f"{ts}!-{h}",
        f"{ts}-{h[:-2]}",
        f"{ts}-{h}{h}",
    ]
    for b in bad:
        assert not django_check(user, b, T0), b
        assert not djauth_check(djauth, user, b, T0), b


def test_fallback_secret(djauth, rng, time_zone):
    user = random_user(rng)
    old = "reset-old-key-%d" % rng.randint(0, 10**9)
    with override_settings(SECRET_KEY=old):
        token = django_make(user, T0)
    assert not django_check(user, token, T0)
    assert not djauth_check(djauth, user, token, T0)
    with override_settings(SECRET_KEY_FALLBACKS=["unrelated", old]):
        assert django_check(user, token, T0)
        assert djauth_check(djauth, user, token, T0)
        mine = djauth_make(djauth, user, T0)
    with override_settings(SECRET_KEY_FALLBACKS=[]):
        assert django_check(user, mine, T0)  # made with SECRET_KEY, not the fallback


def test_spec_examples(djauth):
    """tokens.md worked examples (secret 'spec-secret-key', local now 2024-01-02 12:00:00)."""
    u1 = DuckUser(
        "1",
        "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE=",
        utc(2024, 1, 2, 3, 4, 5, 678901),
        "alice@example.com",
    )
    u2 = DuckUser("2", "md5$x$y", None, "")
    for tz in ("UTC", "America/Chicago"):
        t = datetime(2024, 1, 2, 12, 0, 0, tzinfo=ZoneInfo(tz)).timestamp()
        with override_settings(SECRET_KEY="spec-secret-key", TIME_ZONE=tz):
            assert django_make(u1, t) == "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be"
            assert djauth_make(djauth, u1, t) == "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be"
            assert djauth_make(djauth, u2, t) == "c06c00-ff78ab4118cd7be697eb1fc9452bb193"
            assert djauth_check(djauth, u1, "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be", t + 259200)
            assert not djauth_check(djauth, u1, "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be", t + 259201)
        with override_settings(SECRET_KEY="spec-secret-key-2", SECRET_KEY_FALLBACKS=["old-secret-key"], TIME_ZONE=tz):
            assert djauth_check(djauth, u1, "c06c00-b352d412950ed667af2d3608cef977a5", t)


# ---------------------------------------------------------------------------------------
# uidb64
# ---------------------------------------------------------------------------------------
def test_uidb64(djauth, rng):
    pks = [1, 42, 1234567, 2**31 - 1, 2**63 - 1, rng.randint(0, 10**12), uuid.UUID(int=rng.getrandbits(128))]
    pks += ["12345678-1234-5678-1234-567812345678", random_text(rng, 1, 12, controls=False).lstrip("-") or "x"]
    for pk in pks:
        expected = urlsafe_base64_encode(force_bytes(pk))
        got = ok(djauth("token", "uidb64", str(pk)))
        assert got == expected, pk
        assert urlsafe_base64_decode(got).decode() == str(pk)


def test_uidb64_spec_examples(djauth):
    for pk, b64 in [("1", "MQ"), ("42", "NDI"), ("1234567", "MTIzNDU2Nw"), ("12345678-1234-5678-1234-567812345678", "MTIzNDU2NzgtMTIzNC01Njc4LTEyMzQtNTY3ODEyMzQ1Njc4")]:
        assert ok(djauth("token", "uidb64", pk)) == b64 == urlsafe_base64_encode(force_bytes(pk))

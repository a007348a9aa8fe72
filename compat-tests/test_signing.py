"""django.core.signing: Signer, TimestampSigner, dumps/loads, SECRET_KEY_FALLBACKS."""

import base64
import json
import zlib

import pytest
from django.core import signing
from django.test import override_settings

from djcompat import (
    canonical,
    django_time,
    ok,
    random_json_dict,
    random_json_value,
    random_key,
    random_text,
    refused,
)

T0 = 1700000000  # base62 "1r31eq"

ALGORITHMS = [
    None,  # Signer default: sha256
    "sha256",
    "sha1",
    "sha224",
    "sha384",
    "sha512",
    "md5",
    "sha3_256",
    "sha3_512",
    "blake2b",
    "blake2s",
]


def arg_value(rng, **kw):
    """A random value usable as a command-line argument (no NUL, no leading '-')."""
    v = random_text(rng, controls=False, **kw)
    return v.lstrip("-")


def algo_args(algorithm):
    return ["--algorithm", algorithm] if algorithm else []


def salt_args(salt):
    return ["--salt", salt] if salt is not None else []


def values(rng):
    return [
        "hello",
        "",
        "a:b:c",
        "ends with colon:",
        "é😀 non-ASCII ✓",
        arg_value(rng, min_len=1),
        arg_value(rng, min_len=1, max_len=200),
    ]


# ---------------------------------------------------------------------------------------
# Signer
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a or "default")
def test_signer_byte_for_byte_both_ways(djauth, rng, algorithm):
    for value in values(rng):
        for salt in (None, "extra", arg_value(rng, min_len=1, max_len=20)):
            signer = signing.Signer(salt=salt, algorithm=algorithm)
            expected = signer.sign(value)
            got = ok(djauth("signing", "sign", *salt_args(salt), *algo_args(algorithm), value))
            assert got == expected, (value, salt)
            # djauth-made accepted by Django, Django-made accepted by djauth
            assert signer.unsign(got) == value
            back = ok(djauth("signing", "unsign", *salt_args(salt), *algo_args(algorithm), expected))
            assert back == value


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512"])
def test_signer_tampered_refused_by_both(djauth, rng, algorithm):
    value = arg_value(rng, min_len=1)
    good = signing.Signer(salt="s", algorithm=algorithm).sign(value)
    v, sig = good.rsplit(":", 1)
    flipped = "A" if sig[0] != "A" else "B"
    tampered = [
        v + "x:" + sig,  # value changed
        v + ":" + flipped + sig[1:],  # signature changed
        v + ":" + sig[:-1],  # signature truncated
        v + ":" + sig + "A",  # signature extended
        v + ":",  # empty signature
        v.replace(":", "") + sig,  # no separator at all
        v + ":" + sig.swapcase(),
    ]
    for bad in tampered:
        if bad == good:
            continue
        with pytest.raises(signing.BadSignature):
            signing.Signer(salt="s", algorithm=algorithm).unsign(bad)
        refused(djauth("signing", "unsign", "--salt", "s", "--algorithm", algorithm, bad))
    # right signature, wrong salt / wrong algorithm
    with pytest.raises(signing.BadSignature):
        signing.Signer(salt="t", algorithm=algorithm).unsign(good)
    refused(djauth("signing", "unsign", "--salt", "t", "--algorithm", algorithm, good))
    other = "sha384" if algorithm != "sha384" else "sha256"
    refused(djauth("signing", "unsign", "--salt", "s", "--algorithm", other, good))


def test_signature_compared_as_text_not_decoded_bytes(djauth):
    """The last char of a 43-char b64 signature carries 2 padding bits.  Django compares
    the text, so a variant that decodes to the same bytes must still be refused."""
    good = signing.Signer().sign("hello")
    v, sig = good.rsplit(":", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(sig[-1]) ^ 1]  # differs only in the 2 unused low bits
    bad = v + ":" + sig[:-1] + twin
    assert base64.urlsafe_b64decode(sig + "=") == base64.urlsafe_b64decode(sig[:-1] + twin + "=")
    with pytest.raises(signing.BadSignature):
        signing.Signer().unsign(bad)
    refused(djauth("signing", "unsign", bad))


def test_signer_fallback_keys(djauth, rng):
    old = random_key(rng, "old-key-")
    value = arg_value(rng, min_len=1)
    made_with_old = signing.Signer(key=old, salt="fb").sign(value)
    # Without the fallback: refused by both.
    with pytest.raises(signing.BadSignature):
        signing.Signer(salt="fb").unsign(made_with_old)
    refused(djauth("signing", "unsign", "--salt", "fb", made_with_old))
    with override_settings(SECRET_KEY_FALLBACKS=["unrelated-key", old]):
        assert signing.Signer(salt="fb").unsign(made_with_old) == value
        assert ok(djauth("signing", "unsign", "--salt", "fb", made_with_old)) == value
        # New signatures always use SECRET_KEY, never a fallback.
        got = ok(djauth("signing", "sign", "--salt", "fb", value))
        assert signing.Signer(salt="fb", fallback_keys=[]).unsign(got) == value


# ---------------------------------------------------------------------------------------
# TimestampSigner
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", [None, "sha1", "sha512"], ids=lambda a: a or "default")
def test_timestamp_signer_byte_for_byte(djauth, rng, algorithm):
    for value in values(rng):
        now = T0 + rng.randint(-10**8, 10**8) + rng.random()
        salt = rng.choice([None, "ts-salt"])
        with django_time(now):
            expected = signing.TimestampSigner(salt=salt, algorithm=algorithm).sign(value)
        got = ok(
            djauth("signing", "sign", "--timestamp", "--now", repr(now), *salt_args(salt), *algo_args(algorithm), value)
        )
        assert got == expected, (value, now)


def test_timestamp_signer_real_clock(djauth, rng):
    value = arg_value(rng, min_len=1)
    got = ok(djauth("signing", "sign", "--timestamp", value))
    # made "now" by djauth: Django accepts it with a small max_age on its real clock
    assert signing.TimestampSigner().unsign(got, max_age=120) == value
    made = signing.TimestampSigner().sign(value)
    assert ok(djauth("signing", "unsign", "--timestamp", "--max-age", "120", made)) == value


@pytest.mark.parametrize("max_age", [0, 1, 100, 1209600])
def test_timestamp_max_age_strictness(djauth, rng, max_age):
    """Age == max_age is valid, anything above expires (age measured from the integer ts)."""
    signed_at = T0 + rng.random()  # fractional part is dropped by Django's timestamp()
    value = arg_value(rng, min_len=1)
    with django_time(signed_at):
        token = signing.TimestampSigner(salt="age").sign(value)
    offsets = [-3600, -1, 0, max_age - 1, max_age, max_age + 0.25, max_age + 0.999, max_age + 1, 10**7]
    for off in offsets:
        now = T0 + off  # relative to the *integer* timestamp
        with django_time(now):
            try:
                signing.TimestampSigner(salt="age").unsign(token, max_age=max_age)
                django_ok = True
            except signing.SignatureExpired:
                django_ok = False
        res = djauth("signing", "unsign", "--timestamp", "--salt", "age", "--max-age", max_age, "--now", repr(now), token)
        if django_ok:
            assert ok(res) == value, (off, res)
        else:
            refused(res)
        # no max_age: never expires
        res = djauth("signing", "unsign", "--timestamp", "--salt", "age", "--now", repr(now), token)
        assert ok(res) == value


def test_timestamp_signer_tampered(djauth, rng):
    with django_time(T0):
        token = signing.TimestampSigner().sign("payload")
    v, ts, sig = token.split(":")
    bad_tokens = [
        f"{v}:{ts[:-1]}x:{sig}",  # timestamp changed (signature covers it)
        f"{v}x:{ts}:{sig}",
        f"{v}:{sig}",  # timestamp removed
    ]
    for bad in bad_tokens:
        with pytest.raises(signing.BadSignature):
            signing.TimestampSigner().unsign(bad)
        refused(djauth("signing", "unsign", "--timestamp", "--now", T0, bad))
    # A plain Signer signature is not a TimestampSigner signature (different salt).
    plain = signing.Signer().sign("payload:" + ts)
    refused(djauth("signing", "unsign", "--timestamp", "--now", T0, plain))


# ---------------------------------------------------------------------------------------
# dumps / loads
# ---------------------------------------------------------------------------------------
def payloads(rng, *, floats=True):
    out = [
        "hello",
        {"a": 1, "b": [1, 2]},
        {},
        [],
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        {"k": "é"},
        {"emoji": "😀🐍 👩\u200d💻", "nested": {"ж": ["中文", "\u2028", "\x00\x1f\x7f"]}},
        "x" * 50,
        {"_auth_user_id": "1", "_auth_user_backend": "django.contrib.auth.backends.ModelBackend", "_auth_user_hash": "0" * 64},
    ]
    for _ in range(6):
        out.append(random_json_dict(rng, floats=floats))
    out.append(random_json_value(rng, floats=floats))
    return out


def dumps_args(salt=None, compress=False, key=None, now=None):
    a = ["signing", "dumps"]
    if salt is not None:
        a += ["--salt", salt]
    if compress:
        a.append("--compress")
    if key is not None:
        a += ["--key", key]
    if now is not None:
        a += ["--now", repr(now)]
    return a


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_dumps_loads_both_ways(djauth, rng, compress):
    for obj in payloads(rng):
        salt = rng.choice([None, "my.app", "é-salt"])
        # djauth -> Django
        stdin = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
        tok = ok(djauth(*dumps_args(salt=salt, compress=compress), stdin=stdin))
        kw = {"salt": salt} if salt is not None else {}
        assert canonical(signing.loads(tok, **kw)) == canonical(obj), tok
        # Django -> djauth
        tok2 = signing.dumps(obj, compress=compress, **kw)
        res = djauth("signing", "loads", *salt_args(salt), tok2)
        assert canonical(json.loads(ok(res))) == canonical(obj), tok2


def test_dumps_uncompressed_byte_for_byte(djauth, rng):
    for obj in payloads(rng, floats=False):
        now = T0 + rng.randint(0, 10**8)
        with django_time(now):
            expected = signing.dumps(obj, salt="bytes")
        got = ok(djauth(*dumps_args(salt="bytes", now=now), stdin=json.dumps(obj)))
        assert got == expected, obj


def test_dumps_floats_byte_for_byte(djauth, rng):
    """JSON numbers must be written the way Python's json does (repr of floats)."""
    objs = [
        {"f": 0.1},
        {"f": 1.0},
        {"f": -0.0},
        {"f": 1e16},
        {"f": 1e-05},
        {"f": 123456789.125},
        {"f": 5e-324},
        {"f": 1.7976931348623157e308},
        [rng.uniform(-1e9, 1e9) for _ in range(5)],
        [rng.random() * 10 ** rng.randint(-30, 30) for _ in range(5)],
    ]
    for obj in objs:
        with django_time(T0):
            expected = signing.dumps(obj)
        got = ok(djauth(*dumps_args(now=T0), stdin=json.dumps(obj)))
        assert got == expected, obj


def test_float_values_survive_round_trip(djauth, rng):
    """Full-precision floats must come back bit-identical (no 1-ulp parse errors)."""
    floats = [rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300) for _ in range(200)]
    floats += [0.1 + 0.2, 2.2250738585072014e-308, 4.9406564584124654e-324, 9007199254740993.0]
    tok = signing.dumps(floats)
    back = json.loads(ok(djauth("signing", "loads", tok)))
    assert back == floats
    tok = ok(djauth("signing", "dumps", stdin=json.dumps(floats)))
    assert signing.loads(tok) == floats


def test_compression_decision_matches_django(djauth):
    """'.' prefix iff zlib saves >= 2 bytes; clear-cut cases only (zlib output may differ)."""
    compressible = [{"x" * 10: "y" * 300}, "x" * 50, ["a"] * 100]
    incompressible = ["hello", {"a": 1}, 7, {"k": "é"}]
    for obj in compressible:
        assert signing.dumps(obj, compress=True).startswith(".")
        tok = ok(djauth("signing", "dumps", "--compress", stdin=json.dumps(obj)))
        assert tok.startswith("."), tok
        assert signing.loads(tok) == obj
    for obj in incompressible:
        assert not signing.dumps(obj, compress=True).startswith(".")
        tok = ok(djauth("signing", "dumps", "--compress", stdin=json.dumps(obj)))
        assert not tok.startswith("."), tok
    # never compressed without --compress
    tok = ok(djauth("signing", "dumps", stdin=json.dumps("x" * 500)))
    assert not tok.startswith(".")


def test_non_ascii_payload_is_ascii_json_on_the_wire(djauth):
    """Django decodes the JSON as Latin-1: djauth must write \\uXXXX escapes."""
    obj = {"k": "é", "emoji": "😀", "cjk": "中文", "ctl": "\x00\n\u2028"}
    tok = ok(djauth(*dumps_args(now=T0), stdin=json.dumps(obj, ensure_ascii=False)))
    raw = base64.urlsafe_b64decode(tok.split(":")[0] + "==")
    assert raw.isascii(), raw
    assert signing.loads(tok) == obj
    with django_time(T0):
        assert tok == signing.dumps(obj)


def _sign_raw_payload(raw, compress=False):
    """A validly signed dumps() token around arbitrary payload bytes."""
    if compress:
        raw = zlib.compress(raw)
    b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if compress:
        b64 = "." + b64
    return signing.TimestampSigner(salt="django.core.signing").sign(b64)


def test_raw_utf8_payload_decoded_like_django(djauth):
    """A third party that signed raw UTF-8 JSON: Django reads it as Latin-1 (mojibake);
    djauth must read the same value, not a 'corrected' one."""
    for raw, compress in [
        ('{"k":"é"}'.encode("utf-8"), False),
        ('{"k":"😀 ж"}'.encode("utf-8"), True),
        (b'"\xff\xfe"', False),  # not even valid UTF-8
    ]:
        tok = _sign_raw_payload(raw, compress)
        expected = signing.loads(tok)
        assert canonical(json.loads(ok(djauth("signing", "loads", tok)))) == canonical(expected), raw


def test_valid_signature_but_garbage_payload(djauth):
    """Correctly signed but undecodable payloads: Django raises, djauth exits 1 (no crash)."""
    bad = [
        signing.TimestampSigner(salt="django.core.signing").sign(".bm90IHpsaWI"),  # '.' + not zlib
        signing.TimestampSigner(salt="django.core.signing").sign("bm90IGpzb24"),  # 'not json'
        signing.TimestampSigner(salt="django.core.signing").sign("a"),  # bad base64 length
        signing.TimestampSigner(salt="django.core.signing").sign("e30!"),  # invalid b64 char
        _sign_raw_payload(b'{"a":1', False),
    ]
    for tok in bad:
        with pytest.raises(Exception):
            signing.loads(tok)
        res = djauth("signing", "loads", tok)
        refused(res)


def test_dumps_key_option(djauth, rng):
    key = random_key(rng, "explicit-")
    obj = random_json_dict(rng)
    tok = ok(djauth("signing", "dumps", "--key", key, stdin=json.dumps(obj)))
    assert canonical(signing.loads(tok, key=key)) == canonical(obj)
    with pytest.raises(signing.BadSignature):
        signing.loads(tok)
    tok2 = signing.dumps(obj, key=key)
    assert canonical(json.loads(ok(djauth("signing", "loads", "--key", key, tok2)))) == canonical(obj)
    refused(djauth("signing", "loads", tok2))
    # Django's loads(key=K) still tries settings.SECRET_KEY_FALLBACKS after K.
    old = "old-" + key
    tok3 = signing.dumps(obj, key=old)
    with override_settings(SECRET_KEY_FALLBACKS=[old]):
        assert canonical(signing.loads(tok3, key=key)) == canonical(obj)
        assert canonical(json.loads(ok(djauth("signing", "loads", "--key", key, tok3)))) == canonical(obj)


def test_loads_fallback_keys(djauth, rng):
    old = random_key(rng, "rotated-")
    obj = random_json_dict(rng)
    tok = signing.dumps(obj, key=old, compress=True)
    refused(djauth("signing", "loads", tok))
    with override_settings(SECRET_KEY_FALLBACKS=["first-unrelated", old]):
        assert canonical(json.loads(ok(djauth("signing", "loads", tok)))) == canonical(obj)
        mine = ok(djauth("signing", "dumps", stdin=json.dumps(obj)))
    # written with the current SECRET_KEY, not with a fallback
    assert canonical(signing.loads(mine, fallback_keys=[])) == canonical(obj)


def test_loads_max_age(djauth):
    with django_time(T0 + 0.75):
        tok = signing.dumps({"a": 1}, salt="ma")
    for off, max_age in [(0, 0), (10, 10), (10.5, 10), (11, 10), (-100, 5), (1209600, 1209600), (1209601, 1209600)]:
        now = T0 + off
        with django_time(now):
            try:
                signing.loads(tok, salt="ma", max_age=max_age)
                valid = True
            except signing.SignatureExpired:
                valid = False
        res = djauth("signing", "loads", "--salt", "ma", "--max-age", max_age, "--now", repr(now), tok)
        if valid:
            assert json.loads(ok(res)) == {"a": 1}, (off, max_age)
        else:
            refused(res)


def test_loads_tampered(djauth, rng):
    obj = {"user": "x" * 40, "n": rng.randint(0, 10**9)}
    for compress in (False, True):
        tok = signing.dumps(obj, compress=compress)
        body, ts, sig = tok.split(":")
        variants = [
            body[:-1] + ("A" if body[-1] != "A" else "B") + f":{ts}:{sig}",
            (body[1:] if body.startswith(".") else "." + body) + f":{ts}:{sig}",
            f"{body}:{ts}:{sig[:-2]}",
            f"{body}:{ts}",
            tok + "x",
        ]
        for bad in variants:
            with pytest.raises(signing.BadSignature):
                signing.loads(bad)
            refused(djauth("signing", "loads", bad))
        with pytest.raises(signing.BadSignature):
            signing.loads(tok, salt="other")
        refused(djauth("signing", "loads", "--salt", "other", tok))

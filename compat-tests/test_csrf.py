"""CSRF: secrets, masking, token acceptance and Origin/Referer checks vs CsrfViewMiddleware."""

import re
import string

import pytest
from django.http import HttpResponse
from django.middleware import csrf
from django.test import RequestFactory, override_settings

from djcompat import ok

CHARS = string.ascii_letters + string.digits
assert CHARS == csrf.CSRF_ALLOWED_CHARS


def rand_secret(rng, n=32):
    return "".join(rng.choice(CHARS) for _ in range(n))


class RecordingMiddleware(csrf.CsrfViewMiddleware):
    def __init__(self):
        super().__init__(lambda request: HttpResponse())
        self.reasons = []

    def _reject(self, request, reason):
        self.reasons.append(reason)
        return HttpResponse(status=403)


def _run_middleware(request):
    """None if Django accepts the POST, else the reason string CsrfViewMiddleware logs."""
    mw = RecordingMiddleware()
    mw.process_request(request)
    response = mw.process_view(request, lambda r: HttpResponse(), (), {})
    if response is None:
        assert not mw.reasons
        return None
    assert len(mw.reasons) == 1
    return mw.reasons[0]


def django_token_verdict(secret, token, header):
    """Django's verdict on a POST with cookie csrftoken=secret and the token in the form
    field (as a browser submits it: urlencoded UTF-8) or the X-CSRFToken header (WSGI
    hands header bytes to Django as Latin-1 text)."""
    if header:
        request = RequestFactory().post("/", data={}, HTTP_X_CSRFTOKEN=token.encode("utf-8").decode("latin-1"))
    else:
        request = RequestFactory().post("/", data={"csrfmiddlewaretoken": token})
    request.COOKIES["csrftoken"] = secret
    return _run_middleware(request)


def djauth_token_verdict(djauth, secret, token, header):
    args = ["csrf", "check-token", "--secret", secret] + (["--header"] if header else []) + [token]
    res = djauth(*args)
    assert res.rc in (0, 1), res
    if res.rc == 0:
        return None
    return res.out


# ---------------------------------------------------------------------------------------
# secrets and masking
# ---------------------------------------------------------------------------------------
def test_new_secret(djauth):
    seen = set()
    for _ in range(5):
        s = ok(djauth("csrf", "new-secret"))
        assert re.fullmatch(r"[a-zA-Z0-9]{32}", s), s
        csrf._check_token_format(s)
        seen.add(s)
    assert len(seen) == 5


def test_djauth_mask_unmasked_by_django(djauth, rng):
    for _ in range(6):
        secret = rand_secret(rng)
        tokens = {ok(djauth("csrf", "mask", secret)) for _ in range(3)}
        assert len(tokens) == 3, "mask must be fresh each time"
        for tok in tokens:
            assert re.fullmatch(r"[a-zA-Z0-9]{64}", tok), tok
            assert csrf._unmask_cipher_token(tok) == secret
            assert django_token_verdict(secret, tok, header=False) is None
            assert django_token_verdict(secret, tok, header=True) is None


def test_django_mask_unmasked_by_djauth(djauth, rng):
    for _ in range(6):
        secret = rand_secret(rng)
        tok = csrf._mask_cipher_secret(secret)
        assert ok(djauth("csrf", "unmask", tok)) == secret
    # get_token() on a request: the token a template renders
    request = RequestFactory().get("/")
    tok = csrf.get_token(request)
    assert ok(djauth("csrf", "unmask", tok)) == request.META["CSRF_COOKIE"]


def test_spec_mask_example(djauth):
    secret, token = "abcdefghijklmnopqrstuvwxyzABCDEF", "0123456789ABCDEFGHIJKLMNOPQRSTUV02468acegiKMOQSUWY02468acegikmoq"
    assert csrf._unmask_cipher_token(token) == secret
    assert ok(djauth("csrf", "unmask", token)) == secret


# ---------------------------------------------------------------------------------------
# token acceptance (form field / header), reasons identical to Django's
# ---------------------------------------------------------------------------------------
def token_cases(rng, secret):
    other = rand_secret(rng)
    masked = csrf._mask_cipher_secret(secret)
    return [
        ("masked", masked),
        ("raw secret", secret),
        ("masked other", csrf._mask_cipher_secret(other)),
        ("raw other", other),
        ("masked, one char changed", masked[:40] + ("a" if masked[40] != "a" else "b") + masked[41:]),
        ("swapped halves", masked[32:] + masked[:32]),
        ("empty", ""),
        ("31 chars", secret[:31]),
        ("33 chars", secret + "a"),
        ("63 chars", masked[:63]),
        ("65 chars", masked + "a"),
        ("32 with '-'", secret[:31] + "-"),
        ("64 with '_'", "_" + masked[1:]),
        ("32 with space", secret[:16] + " " + secret[17:]),
        ("trailing space", secret + " "),
        ("32 chars incl. é", secret[:31] + "é"),  # 32 chars, 33 UTF-8 bytes
        ("64 chars incl. 😀", masked[:63] + "😀"),
        ("31 chars + é", secret[:30] + "é"),  # 31 chars, 32 UTF-8 bytes
        ("fullwidth digit", secret[:31] + "１"),
    ]


@pytest.mark.parametrize("header", [False, True], ids=["post-field", "x-csrftoken-header"])
def test_check_token_matches_middleware(djauth, rng, header):
    for _ in range(2):
        secret = rand_secret(rng)
        for label, token in token_cases(rng, secret):
            expected = django_token_verdict(secret, token, header)
            got = djauth_token_verdict(djauth, secret, token, header)
            assert got == expected, (label, token, header)


@pytest.mark.parametrize("header", [False, True], ids=["post-field", "x-csrftoken-header"])
def test_check_token_cookie_forms(djauth, rng, header):
    """--secret is the csrftoken cookie value: a pre-4.1 masked (64-char) cookie is unmasked,
    a malformed one gives Django's 'CSRF cookie ...' reasons."""
    secret = rand_secret(rng)
    good = csrf._mask_cipher_secret(secret)
    cookies = [
        csrf._mask_cipher_secret(secret),  # legacy masked cookie
        "abc",
        secret + "x",
        secret[:31] + "-",
        "",
    ]
    for cookie in cookies:
        for token in (good, secret, rand_secret(rng)):
            expected = django_token_verdict(cookie, token, header)
            got = djauth_token_verdict(djauth, cookie, token, header)
            assert got == expected, (cookie, token)


def test_check_token_without_cookie(djauth, rng):
    """No --secret: either a usage error, or Django's verdict for a request without cookie."""
    request = RequestFactory().post("/", data={"csrfmiddlewaretoken": rand_secret(rng)})
    assert _run_middleware(request) == "CSRF cookie not set."
    res = djauth("csrf", "check-token", rand_secret(rng))
    assert res.rc == 2 or (res.rc, res.out) == (1, "CSRF cookie not set."), res


def test_check_token_reason_strings(djauth, rng):
    """Pin a few reasons literally (they are what Django logs and shows)."""
    secret = rand_secret(rng)
    assert djauth_token_verdict(djauth, secret, rand_secret(rng), False) == "CSRF token from POST incorrect."
    assert djauth_token_verdict(djauth, secret, "abc", False) == "CSRF token from POST has incorrect length."
    assert djauth_token_verdict(djauth, secret, "", False) == "CSRF token missing."
    assert djauth_token_verdict(djauth, secret, "abc", True) == "CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."
    assert djauth_token_verdict(djauth, secret, rand_secret(rng), True) == "CSRF token from the 'X-Csrftoken' HTTP header incorrect."


# ---------------------------------------------------------------------------------------
# Origin / Referer (unsafe method, valid token: only the origin checks decide)
# ---------------------------------------------------------------------------------------
TRUSTED = [
    [],
    ["https://trusted.example.com"],
    ["https://*.example.org", "http://localhost:8000", "https://exact.test:8443"],
    ["https://*.EXAMPLE.net", "http://*.example.org"],
]


def django_origin_verdict(host, secure, origin, referer, cookie_domain, port, trusted):
    secret = csrf._get_new_csrf_string()
    extra = {"HTTP_HOST": host}
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    if referer is not None:
        extra["HTTP_REFERER"] = referer
    if port is not None:
        extra["SERVER_PORT"] = port
    request = RequestFactory().post(
        "/", data={"csrfmiddlewaretoken": csrf._mask_cipher_secret(secret)}, secure=secure, **extra
    )
    request.COOKIES["csrftoken"] = secret
    with override_settings(CSRF_TRUSTED_ORIGINS=trusted, CSRF_COOKIE_DOMAIN=cookie_domain):
        return _run_middleware(request)


def djauth_origin_verdict(djauth, host, secure, origin, referer, cookie_domain, port, trusted):
    args = ["csrf", "check-origin", "--host", host]
    if secure:
        args.append("--secure")
    if origin is not None:
        args += ["--origin", origin]
    if referer is not None:
        args += ["--referer", referer]
    if cookie_domain is not None:
        args += ["--cookie-domain", cookie_domain]
    if port is not None:
        args += ["--port", port]
    res = djauth(*args, env={"DJAUTH_CSRF_TRUSTED_ORIGINS": ",".join(trusted)})
    assert res.rc in (0, 1), res
    if res.rc == 0:
        assert res.out == "ok", res
        return None
    return res.out


def origin_cases(rng):
    sub = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 8)))
    cases = []
    # (host, secure, origin, referer, cookie_domain, port)
    for secure in (False, True):
        scheme = "https" if secure else "http"
        other = "http" if secure else "https"
        for host in ("example.com", "example.com:8000", "Example.COM", "[::1]:8000", "127.0.0.1"):
            cases += [
                (host, secure, f"{scheme}://{host}", None, None, None),
                (host, secure, f"{other}://{host}", None, None, None),
                (host, secure, f"{scheme}://{host.lower()}", None, None, None),
                (host, secure, f"{scheme}://{host}/", None, None, None),
            ]
        cases += [
            ("example.com", secure, "https://evil.com", None, None, None),
            ("example.com", secure, "null", None, None, None),
            ("example.com", secure, "", None, None, None),
            ("example.com", secure, "https://trusted.example.com", None, None, None),
            ("example.com", secure, "https://TRUSTED.example.com", None, None, None),
            ("example.com", secure, f"https://{sub}.example.org", None, None, None),
            ("example.com", secure, f"https://{sub.upper()}.example.org", None, None, None),
            ("example.com", secure, "https://example.org", None, None, None),
            ("example.com", secure, "https://evilexample.org", None, None, None),
            ("example.com", secure, f"https://{sub}.example.org:443", None, None, None),
            ("example.com", secure, f"http://{sub}.example.org", None, None, None),
            ("example.com", secure, f"https://{sub}.example.net", None, None, None),
            ("example.com", secure, "http://localhost:8000", None, None, None),
            ("example.com", secure, "http://localhost", None, None, None),
            ("example.com", secure, "https://exact.test:8443", None, None, None),
            ("example.com", secure, "https://exact.test", None, None, None),
            ("example.com", secure, "https://[::1", None, None, None),  # urlsplit ValueError
            # no Origin: the Referer is only checked over HTTPS
            ("example.com", secure, None, None, None, None),
            ("example.com", secure, None, f"{scheme}://example.com/page", None, None),
        ]
    referers = [
        "https://example.com/",
        "https://example.com",
        "https://example.com/a/b?c=d#e",
        "https://example.com:443/",
        "https://EXAMPLE.com/x",
        "HTTPS://example.com/x",
        "http://example.com/",
        "https://evil.com/x",
        "https://evil.com/path?#",
        "https://user:pw@example.com/",
        f"https://{sub}.example.org/x",
        "https://example.org/",
        "https://notexample.org/",
        "https://trusted.example.com/login",
        "https://localhost:8000/",
        "https://exact.test:8443/",
        "https://exact.test/",
        "ftp://example.com/",
        "example.com/page",
        "//example.com/page",
        "https:///path",
        "https://[::1",
        "",
        "not a url",
    ]
    for ref in referers:
        cases.append(("example.com", True, None, ref, None, None))
    # CSRF_COOKIE_DOMAIN: referer may be any subdomain; the server port is appended unless 80/443
    for cookie_domain in (".example.com", "example.com"):
        for port in ("443", "80", "8443"):
            for ref in (
                "https://example.com/",
                f"https://{sub}.example.com/",
                f"https://{sub}.example.com:8443/",
                "https://example.com:8443/",
                "https://evil.com/",
                "https://fooexample.com/",
            ):
                cases.append(("www.example.com", True, None, ref, cookie_domain, port))
    # host includes a port, no cookie domain: Referer must match host:port exactly
    for ref in ("https://example.com:8443/", "https://example.com/"):
        cases.append(("example.com:8443", True, None, ref, None, "8443"))
    return cases


@pytest.mark.parametrize("trusted", TRUSTED, ids=lambda t: ",".join(t) or "no-trusted-origins")
def test_check_origin_matches_middleware(djauth, rng, trusted):
    for host, secure, origin, referer, cookie_domain, port in origin_cases(rng):
        expected = django_origin_verdict(host, secure, origin, referer, cookie_domain, port, trusted)
        got = djauth_origin_verdict(djauth, host, secure, origin, referer, cookie_domain, port, trusted)
        assert got == expected, dict(host=host, secure=secure, origin=origin, referer=referer, cookie_domain=cookie_domain, port=port)


def test_check_origin_reason_strings(djauth):
    no = []
    assert djauth_origin_verdict(djauth, "example.com", True, "https://evil.com", None, None, None, no) == (
        "Origin checking failed - https://evil.com does not match any trusted origins."
    )
    assert djauth_origin_verdict(djauth, "example.com", True, None, None, None, None, no) == "Referer checking failed - no Referer."
    assert djauth_origin_verdict(djauth, "example.com", True, None, "http://example.com/", None, None, no) == (
        "Referer checking failed - Referer is insecure while host is secure."
    )
    assert djauth_origin_verdict(djauth, "example.com", True, None, "not a url", None, None, no) == (
        "Referer checking failed - Referer is malformed."
    )
    assert djauth_origin_verdict(djauth, "example.com", True, None, "https://evil.com/x", None, None, no) == (
        "Referer checking failed - https://evil.com/x does not match any trusted origins."
    )
    assert djauth_origin_verdict(djauth, "example.com", False, None, None, None, None, no) is None
    assert djauth_origin_verdict(djauth, "example.com", True, "https://example.com", None, None, None, no) is None

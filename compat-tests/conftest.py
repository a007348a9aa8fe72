"""Cross-language compatibility suite: real Django (from PyPI) against the djauth CLI.

Django is configured once per test session with ``settings.configure`` (random SECRET_KEY,
USE_TZ=True, the full list of password hashers the installed Django ships).  Every call
to the ``djauth`` binary gets DJAUTH_* environment variables derived from Django's
*current* settings, so ``override_settings`` in a test automatically reaches djauth too.

Environment:
  DJAUTH_BIN              path of the djauth binary (default <repo>/target/debug/djauth)
  DJAUTH_DJANGO_VERSION   4.2 | 5.2 | 6.0 | 6.1; must match the installed Django
                          (derived from django.VERSION when unset)
  COMPAT_SEED             seed for the random inputs (default: random, printed in the header)
"""

import os
import random
import secrets
import string
import sys
import warnings
from pathlib import Path

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# --------------------------------------------------------------------------------------
# Version bookkeeping (runs at import time: settings must exist before tests import
# anything from django.contrib).
# --------------------------------------------------------------------------------------
INSTALLED = "%d.%d" % django.VERSION[:2]
DJANGO_VERSION = os.environ.get("DJAUTH_DJANGO_VERSION") or INSTALLED
if DJANGO_VERSION != INSTALLED:
    raise RuntimeError(
        f"DJAUTH_DJANGO_VERSION={DJANGO_VERSION} but Django {django.get_version()} is installed"
    )

SEED = int(os.environ.get("COMPAT_SEED") or secrets.randbits(32))

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=PendingDeprecationWarning)


def _crypt_available():
    try:
        import crypt  # noqa: F401  (removed in Python 3.13)
    except ImportError:
        return False
    return True


HASHER_CLASS_NAMES = [
    # Django's default list, in Django's order (PBKDF2 first = preferred) ...
    "PBKDF2PasswordHasher",
    "PBKDF2SHA1PasswordHasher",
    "Argon2PasswordHasher",
    "BCryptSHA256PasswordHasher",
    "ScryptPasswordHasher",
    # ... then every other hasher the installed version still ships.
    "BCryptPasswordHasher",
    "MD5PasswordHasher",
    "SHA1PasswordHasher",  # removed in 5.1
    "UnsaltedSHA1PasswordHasher",  # removed in 5.1
    "UnsaltedMD5PasswordHasher",  # removed in 5.1
    "CryptPasswordHasher",  # removed in 5.0; needs Python's crypt module
]


def _all_hasher_paths():
    import django.contrib.auth.hashers as hashers_mod

    paths = []
    for name in HASHER_CLASS_NAMES:
        if not hasattr(hashers_mod, name):
            continue
        if name == "CryptPasswordHasher" and not _crypt_available():
            continue
        paths.append("django.contrib.auth.hashers." + name)
    return paths


def _random_secret_key(rng):
    # Printable ASCII incl. punctuation (no comma: SECRET_KEY_FALLBACKS travels
    # comma-separated) plus one non-ASCII char, so UTF-8 encoding of the key matters.
    alphabet = string.ascii_letters + string.digits + "!#$%&()*+-./:;<=>?@[]^_{|}~"
    return "".join(rng.choice(alphabet) for _ in range(50)) + rng.choice("éß€ж")


_key_rng = random.Random(SEED ^ 0x5EC2E7)
SECRET_KEY = _random_secret_key(_key_rng)

if not settings.configured:
    settings.configure(
        SECRET_KEY=SECRET_KEY,
        SECRET_KEY_FALLBACKS=[],
        USE_TZ=True,
        TIME_ZONE="America/Chicago",  # Django's default; token tests switch via the time_zone fixture
        PASSWORD_HASHERS=_all_hasher_paths(),
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        AUTHENTICATION_BACKENDS=["djcompat.MemoryBackend"],
        ALLOWED_HOSTS=["*"],
        CSRF_TRUSTED_ORIGINS=[],
        SESSION_COOKIE_AGE=1209600,
        PASSWORD_RESET_TIMEOUT=259200,
        MIDDLEWARE=[],
        TEMPLATES=[],
    )
    django.setup()
    # A settings *module* makes Django set the process time zone (Settings.__init__);
    # settings.configure() does not, so do what a real deployment gets.  The
    # time_zone fixture's override_settings keeps it in sync (django.test.signals).
    import time

    os.environ["TZ"] = settings.TIME_ZONE
    time.tzset()

import pytest  # noqa: E402

import djcompat  # noqa: E402


def pytest_report_header(config):
    return [
        f"django {django.get_version()} (DJAUTH_DJANGO_VERSION={DJANGO_VERSION}), python {sys.version.split()[0]}",
        f"djauth binary: {'reference_djauth.py in-process (validating the tests)' if djcompat.INPROCESS else djcompat.DJAUTH_BIN}",
        f"password hashers: {', '.join(p.rsplit('.', 1)[1] for p in settings.PASSWORD_HASHERS)}",
        f"random seed: COMPAT_SEED={SEED}",
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if exitstatus:
        terminalreporter.write_line(
            f"compat: Django {django.get_version()}; rerun with COMPAT_SEED={SEED} for the same random inputs"
        )


def pytest_sessionstart(session):
    if not djcompat.INPROCESS and not djcompat.DJAUTH_BIN.exists():
        raise pytest.UsageError(
            f"djauth binary not found at {djcompat.DJAUTH_BIN} (build it or set DJAUTH_BIN)"
        )


@pytest.fixture
def rng(request):
    """A random.Random seeded from COMPAT_SEED and the test id (reproducible per test)."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


@pytest.fixture
def djauth():
    return djcompat.djauth


@pytest.fixture(params=["America/Chicago", "UTC"])
def time_zone(request):
    """Run the test under each TIME_ZONE (Django also sets the process TZ from it)."""
    from django.test import override_settings

    with override_settings(TIME_ZONE=request.param):
        yield request.param

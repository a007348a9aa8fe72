"""`djauth createsuperuser` / `djauth changepassword` against Django's own management commands.

Each scenario runs twice on equivalent SQLite databases (copies of one `djauth migrate`d
template, with the same pre-existing users): once as `python -m django createsuperuser ...`
with a settings module of its own, once as `djauth createsuperuser ...`.  Interactive runs are
driven in a pseudo-terminal with pexpect through the same answers; what the terminal shows
(prompts, echoed input, messages and their ANSI styling) must be identical, as must the exit
status and the resulting rows (the passwords are checked with Django's check_password, since
salts differ).  Non-interactive runs compare stdout, stderr and the exit status.

Both sides use MD5PasswordHasher first (speed) and the four validators `startproject` writes.
"""

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import django
import pytest
from django.contrib.auth.hashers import check_password, identify_hasher, make_password

from djcompat import DJAUTH_BIN, DJAUTH_PROCESS_TZ, INPROCESS, settings_env

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.skipif(INPROCESS, reason="runs Django's management commands against the binary")

HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
VALIDATORS = [
    "django.contrib.auth.password_validation." + name
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
SETTINGS_MODULE = "djauth_manage_settings"
SETTINGS_SOURCE = f"""\
import os
SECRET_KEY = os.environ["COMPAT_SECRET_KEY"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["COMPAT_DB"]}}}}
PASSWORD_HASHERS = {HASHERS!r}
AUTH_PASSWORD_VALIDATORS = {[{"NAME": v} for v in VALIDATORS]!r}
USE_TZ = True
TIME_ZONE = "UTC"
"""

PW = "correct horse battery staple"
OLD_PW = "an old passphrase 1"
CTRL_C = object()
DJANGO_5 = django.VERSION >= (5, 0)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("manage")
    (d / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE)
    template = d / "template.sqlite3"
    env = {**os.environ, **settings_env(), "DATABASE_URL": f"sqlite:///{template}", "TZ": DJAUTH_PROCESS_TZ}
    proc = subprocess.run([str(DJAUTH_BIN), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc
    return d


class Side:
    """One side of a comparison: Django or djauth, with its own database copy."""

    def __init__(self, name, workdir, users, env):
        self.name = name
        self.db = workdir / f"{name}.sqlite3"
        shutil.copyfile(workdir / "template.sqlite3", self.db)
        with sqlite3.connect(self.db) as con:
            for username, email, encoded in users:
                con.execute(
                    "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name,"
                    " last_name, email, is_staff, is_active, date_joined)"
                    " VALUES (?, NULL, 0, ?, '', '', ?, 0, 1, '2024-01-01 00:00:00')",
                    (encoded, username, email),
                )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJAUTH_", "DJANGO_"))}
        base.update({"LANG": "C.UTF-8", "TERM": "xterm", "TZ": DJAUTH_PROCESS_TZ})
        if name == "django":
            self.argv = [sys.executable, "-m", "django"]
            base.update(
                {
                    "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
                    "PYTHONPATH": str(workdir),
                    "COMPAT_DB": str(self.db),
                    "COMPAT_SECRET_KEY": "manage-test-secret",
                }
            )
        else:
            self.argv = [str(DJAUTH_BIN)]
            base.update(settings_env())
            base.update(
                {
                    "DATABASE_URL": f"sqlite:///{self.db}",
                    "DJAUTH_SECRET_KEY": "manage-test-secret",
                    "DJAUTH_PASSWORD_HASHERS": ",".join(HASHERS),
                    "DJAUTH_AUTH_PASSWORD_VALIDATORS": ",".join(VALIDATORS),
                }
            )
        base.update(env)
        self.env = {k: v for k, v in base.items() if v is not None}

    def rows(self):
        with sqlite3.connect(self.db) as con:
            return con.execute(
                "SELECT username, email, is_staff, is_superuser, is_active, first_name, last_name, password"
                " FROM auth_user ORDER BY id"
            ).fetchall()

    def run_pty(self, args, steps):
        child = pexpect.spawn(
            self.argv[0], self.argv[1:] + args, env=self.env, encoding="utf-8", timeout=60, dimensions=(24, 400)
        )
        log = io.StringIO()
        child.logfile_read = log
        try:
            for prompt, answer in steps:
                child.expect_exact(prompt)
                if answer is CTRL_C:
                    # Python notices a SIGINT that lands between writing the prompt and
                    # blocking in read() only at the next input: let it block first.
                    time.sleep(0.3)
                    child.sendintr()
                else:
                    child.sendline(answer)
            child.expect(pexpect.EOF)
        except pexpect.ExceptionPexpect as e:
            raise AssertionError(f"{self.name}: {e}\n--- transcript so far:\n{log.getvalue()!r}") from None
        child.close()
        return log.getvalue(), child.exitstatus, child.signalstatus

    def run(self, args):
        proc = subprocess.run(
            self.argv + args, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        return proc.stdout, proc.stderr, proc.returncode


def sides(workdir, users=(), env=None):
    """(django, djauth); ``users``: (username, email, password) rows present on both."""
    users = [(u, e, make_password(p, hasher="md5")) for u, e, p in users]
    return Side("django", workdir, users, env or {}), Side("djauth", workdir, users, env or {})


def assert_same_rows(dj, da, passwords):
    """Same rows; ``passwords``: username -> expected password (None: unusable); other rows'
    hashes must be unchanged (identical on both sides, as they were inserted)."""
    dj_rows, da_rows = dj.rows(), da.rows()
    assert [r[:-1] for r in da_rows] == [r[:-1] for r in dj_rows]
    for (username, *_, dj_pw), (_, *_, da_pw) in zip(dj_rows, da_rows):
        if username not in passwords:
            assert da_pw == dj_pw, username
            continue
        expected = passwords[username]
        for side, encoded in (("django", dj_pw), ("djauth", da_pw)):
            if expected is None:
                assert encoded.startswith("!") and len(encoded) == 41, (side, encoded)
            else:
                assert identify_hasher(encoded).algorithm == "md5", (side, encoded)
                assert check_password(expected, encoded), (side, encoded)
    assert set(passwords) <= {r[0] for r in dj_rows}, "expected users missing"


def compare_pty(workdir, args, steps, users=(), env=None, passwords=None, rc=0):
    dj, da = sides(workdir, users, env)
    dj_out, dj_rc, dj_sig = dj.run_pty(args, steps)
    da_out, da_rc, da_sig = da.run_pty(args, steps)
    assert da_out == dj_out, f"\ndjango: {dj_out!r}\ndjauth: {da_out!r}"
    assert (da_rc, da_sig) == (dj_rc, dj_sig) == (rc, None)
    assert_same_rows(dj, da, passwords or {})
    return dj_out


def compare_run(workdir, args, users=(), env=None, passwords=None, rc=0):
    dj, da = sides(workdir, users, env)
    dj_res, da_res = dj.run(args), da.run(args)
    assert da_res == dj_res
    assert dj_res[2] == rc, dj_res
    assert_same_rows(dj, da, passwords or {})
    return dj_res


ALICE = ("alice", "alice@example.com", OLD_PW)

# --------------------------------------------------------------------------------------
# createsuperuser, interactive
# --------------------------------------------------------------------------------------


def test_createsuperuser_happy_path_with_default_username(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser"],
        [
            ("Username (leave blank to use 'johndoe'): ", ""),
            ("Email address: ", "Admin@Example.COM"),
            ("Password: ", PW),
            ("Password (again): ", PW),
        ],
        env={"LOGNAME": "Jöhn Doe"},
        passwords={"johndoe": PW},
    )
    assert "Superuser created successfully." in out
    assert PW not in out


def test_createsuperuser_username_and_email_errors(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser"],
        [
            ("Username: ", ""),  # the default (alice) is taken: no default offered
            ("Username: ", "alice"),
            ("Username: ", "bad name"),
            ("Username: ", "x" * 151),
            ("Username: ", "bob"),
            ("Email address: ", "not-an-email"),
            ("Email address: ", "bob@" + "b" * 64 + ".com"),
            ("Email address: ", ""),
            ("Password: ", PW),
            ("Password (again): ", PW),
        ],
        users=[ALICE],
        env={"LOGNAME": "alice"},
        passwords={"bob": PW},
    )
    for msg in (
        "Error: This field cannot be blank.",
        "Error: That username is already taken.",
        "Error: Enter a valid username.",
        "Error: Ensure this value has at most 150 characters (it has 151).",
        "Error: Enter a valid email address.",
    ):
        assert msg in out


def test_createsuperuser_password_errors_and_bypass_no(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser"],
        [
            ("Username (leave blank to use 'carol'): ", ""),
            ("Email address: ", "carol@example.com"),
            ("Password: ", "one thing"),
            ("Password (again): ", "another thing"),
            ("Password: ", "   "),
            ("Password (again): ", "   "),
            ("Password: ", "1234"),
            ("Password (again): ", "1234"),
            ("Bypass password validation and create user anyway? [y/N]: ", "N"),
            ("Password: ", "carol123"),
            ("Password (again): ", "carol123"),
            ("Bypass password validation and create user anyway? [y/N]: ", ""),
            ("Password: ", PW),
            ("Password (again): ", PW),
        ],
        env={"LOGNAME": "carol"},
        passwords={"carol": PW},
    )
    for msg in (
        "Error: Your passwords didn't match.",
        "Error: Blank passwords aren't allowed.",
        "This password is too short. It must contain at least 8 characters.",
        "This password is entirely numeric.",
        "The password is too similar to the username.",
    ):
        assert msg in out


def test_createsuperuser_bypass_yes(workdir):
    compare_pty(
        workdir,
        ["createsuperuser"],
        [
            ("Username (leave blank to use 'root'): ", "dave"),
            ("Email address: ", ""),
            ("Password: ", "password"),
            ("Password (again): ", "password"),
            ("Bypass password validation and create user anyway? [y/N]: ", "Y"),
        ],
        env={"LOGNAME": "root"},
        passwords={"dave": "password"},
    )


def test_createsuperuser_options_taken_username_then_prompt(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser", "--username", "alice", "--email", "Erin@EXAMPLE.org"],
        [
            ("Username (leave blank to use 'erin'): ", ""),
            ("Password: ", PW),
            ("Password (again): ", PW),
        ],
        users=[ALICE],
        env={"LOGNAME": "erin"},
        passwords={"erin": PW},
    )
    assert "Error: That username is already taken." in out
    assert "Email address" not in out


def test_createsuperuser_invalid_email_option_is_a_command_error(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser", "--email", "bogus"],
        [("Username (leave blank to use 'frank'): ", "")],
        env={"LOGNAME": "frank"},
        rc=1,
    )
    assert "CommandError: Enter a valid email address." in out


def test_createsuperuser_blank_username_option(workdir):
    out = compare_pty(workdir, ["createsuperuser", "--username="], [], env={"LOGNAME": "frank"}, rc=1)
    assert "CommandError: Username cannot be blank." in out


@pytest.mark.parametrize("at", ["username", "password"])
def test_createsuperuser_ctrl_c(workdir, at):
    steps = [("Username (leave blank to use 'gina'): ", CTRL_C)]
    if at == "password":
        steps = [
            ("Username (leave blank to use 'gina'): ", ""),
            ("Email address: ", ""),
            ("Password: ", CTRL_C),
        ]
    out = compare_pty(workdir, ["createsuperuser"], steps, env={"LOGNAME": "gina"}, rc=1)
    assert "Operation cancelled." in out


def test_createsuperuser_styles_errors_with_django_colors(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser", "--username", "alice"],
        [("Username: ", CTRL_C)],
        users=[ALICE],
        env={"LOGNAME": "alice", "DJANGO_COLORS": "light;error=yellow/blue,blink"},
        rc=1,
    )
    assert "\x1b[33;44;5mError: That username is already taken." in out


def test_createsuperuser_no_color(workdir):
    out = compare_pty(
        workdir,
        ["createsuperuser", "--username", "alice", "--no-color"],
        [("Username: ", CTRL_C)],
        users=[ALICE],
        env={"LOGNAME": "alice"},
        rc=1,
    )
    assert "\x1b" not in out


# --------------------------------------------------------------------------------------
# createsuperuser --noinput, and without a terminal
# --------------------------------------------------------------------------------------


def test_createsuperuser_not_a_tty(workdir):
    out, err, _ = compare_run(workdir, ["createsuperuser"])
    assert out.startswith("Superuser creation skipped due to not running in a TTY.")


def test_noinput_with_password(workdir):
    compare_run(
        workdir,
        ["createsuperuser", "--noinput", "--username", "admin", "--email", "Admin@EXAMPLE.com"],
        env={"DJANGO_SUPERUSER_PASSWORD": PW},
        passwords={"admin": PW},
    )


def test_noinput_without_password_is_unusable(workdir):
    compare_run(
        workdir,
        ["createsuperuser", "--no-input", "--username", "admin", "--email", "a@b.co"],
        passwords={"admin": None},
    )


def test_noinput_from_environment(workdir):
    compare_run(
        workdir,
        ["createsuperuser", "--noinput"],
        env={
            "DJANGO_SUPERUSER_USERNAME": "ｆｕｌｌ",  # NFKC → "full"
            "DJANGO_SUPERUSER_EMAIL": " x@Example.ORG",
            "DJANGO_SUPERUSER_PASSWORD": "",
        },
        rc=1,  # " x@..." is not a valid email: field.clean does not strip
    )
    compare_run(
        workdir,
        ["createsuperuser", "--noinput"],
        env={
            "DJANGO_SUPERUSER_USERNAME": "ｆｕｌｌ",
            "DJANGO_SUPERUSER_EMAIL": "x@Example.ORG",
            "DJANGO_SUPERUSER_PASSWORD": "",
        },
        passwords={"full": ""},
    )


@pytest.mark.parametrize(
    "args, env, created",
    [
        ([], {}, None),
        (["--username", "admin"], {}, None),
        (["--username", "alice", "--email", "a@b.co"], {}, None),
        (["--username", "", "--email", "a@b.co"], {}, None),
        (["--username", "bad name", "--email", "a@b.co"], {}, None),
        (["--username", "ok", "--email", "not an email"], {}, None),
        (["--username", "ok", "--email", "x" * 330], {}, None),
        (["--username", "ok", "--email", ""], {"DJANGO_SUPERUSER_EMAIL": "env@example.com"}, "ok"),
        # Django 5.0+: a blank value for a blank=True field; 4.2 demands --email
        (["--username", "ok"], {"DJANGO_SUPERUSER_EMAIL": ""}, "ok" if DJANGO_5 else None),
        (["-v", "0", "--username", "quiet", "--email", "q@example.com"], {}, "quiet"),
    ],
    ids=["no-username", "no-email", "taken", "blank-username", "bad-username", "bad-email",
         "long-email", "email-from-env", "blank-email-env", "verbosity-0"],
)
def test_noinput_outcomes(workdir, args, env, created):
    out, err, rc = compare_run(
        workdir,
        ["createsuperuser", "--noinput", *args],
        users=[ALICE],
        env=env,
        passwords={created: None} if created else {},
        rc=0 if created else 1,
    )
    assert err.startswith("CommandError: ") if rc else err == ""


# Vectors for the username and email validation, each checked through djauth's
# `createsuperuser --noinput` against the messages of Django's own field.clean().
USERNAMES = ["a", "Ünïcödé", "with.dot@plus+dash-under_", "日本語", "e\u0301", "tab\tbed", "trailing\n", "a/b",
             "٣٤", "ǅ", "x" * 150, "é" * 151, "sp ace" * 30, "ﬁ", "\u00b2"]
EMAILS = [
    "a@b.co", "Admin@Example.COM", "first.last+tag@sub.example.org", "user@localhost", "user@LOCALHOST",
    '"quoted string"@example.com', '"quoted\\ string"@example.com', '"esc\\"aped"@example.com', '"bad"quote"@example.com', "a@[127.0.0.1]",
    "a@[::1]", "a@[::ffff:1.2.3.4]", "a@[1::2::3]", "a@[01.2.3.4]", "a@xn--80ak6aa92e.xn--p1ai", "a@bücher.de",
    "\u212aelvin@x.xn--\u212a1", "ſ@x.org", "a@b", "a@b.c", "a@b.c0m", "a@-b.com", "a@b-.com", "a@b..com",
    "a@b.com.", "a..b@c.com", ".a@c.com", "a b@c.com", "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com",
    "a@b." + "c" * 63, "a@b." + "c" * 64, "a@b.xn--" + "c" * 59, "a@b.xn--" + "c" * 60, "@x.org", "x@",
    "a@日本.jp", "a@𝔘.com", "a@b.-co", "a@b.co-", "a@b.x-n", "a@_b.com", "a@b_c.com",
]


def _django_clean(field_name, value):
    from django.contrib.auth.models import User
    from django.core.exceptions import ValidationError

    try:
        User._meta.get_field(field_name).clean(value, None)
    except ValidationError as e:
        return "; ".join(e.messages)
    return None


@pytest.mark.skipif(not DJANGO_5, reason="djauth implements Django 5's EmailValidator (4.2's domain rules and IDNA fallback differ)")
def test_email_validation_matches_django(workdir):
    from django.contrib.auth.models import UserManager

    side = Side("djauth", workdir, [], {})
    for i, email in enumerate(EMAILS):
        out, err, rc = side.run(["createsuperuser", "--noinput", "--username", f"user{i}", "--email", email])
        expected = _django_clean("email", email)
        if expected is None:
            assert (rc, out, err) == (0, "Superuser created successfully.\n", ""), email
            row = [r for r in side.rows() if r[0] == f"user{i}"][0]
            assert row[1] == UserManager.normalize_email(email), email
        else:
            assert (rc, out, err) == (1, "", f"CommandError: {expected}\n"), email


def test_username_validation_matches_django(workdir):
    from django.contrib.auth.models import User

    side = Side("djauth", workdir, [], {})
    for username in USERNAMES:
        out, err, rc = side.run(["createsuperuser", "--noinput", "--username", username, "--email", "u@example.com"])
        expected = _django_clean("username", username)
        if expected is None:
            assert (rc, err) == (0, ""), repr(username)
            assert User.normalize_username(username) in [r[0] for r in side.rows()], repr(username)
        else:
            assert (rc, out, err) == (1, "", f"CommandError: {expected}\n"), repr(username)


# --------------------------------------------------------------------------------------
# changepassword
# --------------------------------------------------------------------------------------
NEW_PW = "a brand new passphrase"


def test_changepassword_success(workdir):
    out = compare_pty(
        workdir,
        ["changepassword", "alice"],
        [("Password: ", NEW_PW), ("Password (again): ", NEW_PW)],
        users=[ALICE],
        passwords={"alice": NEW_PW},
    )
    assert "Changing password for user 'alice'" in out
    assert "Password changed successfully for user 'alice'" in out


def test_changepassword_defaults_to_the_system_user_and_retries(workdir):
    compare_pty(
        workdir,
        ["changepassword"],
        [
            ("Password: ", "one thing"),
            ("Password (again): ", "other thing"),
            ("Password: ", "alice"),
            ("Password (again): ", "alice"),
            ("Password: ", NEW_PW),
            ("Password (again): ", NEW_PW),
        ],
        users=[ALICE],
        env={"LOGNAME": "alice"},
        passwords={"alice": NEW_PW},
    )


def test_changepassword_gives_up_after_three_attempts(workdir):
    out = compare_pty(
        workdir,
        ["changepassword", "alice"],
        [
            ("Password: ", "one thing"),
            ("Password (again): ", "other thing"),
            ("Password: ", "12345678"),
            ("Password (again): ", "12345678"),
            ("Password: ", "password"),
            ("Password (again): ", "password"),
        ],
        users=[ALICE],
        passwords={"alice": OLD_PW},
        rc=1,
    )
    assert "CommandError: Aborting password change for user 'alice' after 3 attempts" in out


def test_changepassword_unknown_user(workdir):
    out = compare_pty(workdir, ["changepassword", "nobody"], [], users=[ALICE], rc=1)
    assert "CommandError: user 'nobody' does not exist" in out
    compare_run(workdir, ["changepassword", "nobody"], users=[ALICE], rc=1)


def test_changepassword_empty_password_aborts(workdir):
    out = compare_pty(
        workdir, ["changepassword", "alice"], [("Password: ", "")], users=[ALICE], passwords={"alice": OLD_PW}, rc=1
    )
    assert "CommandError: aborted" in out

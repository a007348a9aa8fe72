"""djauth serve and Django in a real browser (headless Chromium through Selenium): one SQLite
database, one SECRET_KEY, both served over HTTP on loopback. Cookies are per host, not per
port, so http://127.0.0.1:<djauth> and http://127.0.0.1:<django> share `sessionid` and
`csrftoken` in the browser exactly as two apps behind one domain would.

Django runs `django.core.servers.basehttp.run` (what `runserver` uses) in a subprocess with
LOGIN_REDIRECT_URL = /who/, a page saying whom Django sees, with two logout buttons: a POST
form to djauth's /accounts/logout/ (allowed by djauth's CSRF_TRUSTED_ORIGINS) and one to
Django's own. djauth's LOGIN_REDIRECT_URL is that Django page.

Needs chromium and chromedriver (Debian: `chromium chromium-driver`, installed by
.ci/install-deps; other paths: DJAUTH_CHROMIUM / DJAUTH_CHROMEDRIVER) and the `selenium`
package. Without them the module is skipped, unless CI is set (CI=true): then it fails.

Screenshots of djauth's login, password change and sessions pages go to DJAUTH_SCREENSHOTS
(default: a pytest temporary directory).
"""

import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import pytest

import djcompat
from test_web import DJANGO_SIDE, start_djauth

# djauth's pages in a real browser: the crossing is the same for every Django version.
pytestmark = pytest.mark.one_version


def _executable(env_name, *names):
    path = os.environ.get(env_name)
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _executable("DJAUTH_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _executable("DJAUTH_CHROMEDRIVER", "chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None

MISSING = [what for what, ok in [("chromium (or DJAUTH_CHROMIUM)", CHROMIUM),
                                 ("chromedriver (or DJAUTH_CHROMEDRIVER)", CHROMEDRIVER),
                                 ("the selenium package", selenium)] if not ok]
UNDER_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
if MISSING and not UNDER_CI:
    pytest.skip("browser test needs " + ", ".join(MISSING) +
                " (Debian: apt-get install chromium chromium-driver, or .ci/install-deps)",
                allow_module_level=True)

if selenium is not None:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

DJANGO_ERROR = "Please enter a correct username and password. Note that both fields may be case-sensitive."
MD5 = "django.contrib.auth.hashers.MD5PasswordHasher"

# A Django site on the shared database, served over HTTP until killed.
DJANGO_SERVER = textwrap.dedent(
    """
    import json, sys, django
    from django.conf import settings
    cfg = json.loads(sys.argv[1])
    settings.configure(
        DEBUG=False, SECRET_KEY=cfg["secret"], USE_TZ=True, ALLOWED_HOSTS=["127.0.0.1"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": cfg["db"]}},
        PASSWORD_HASHERS=[cfg["hasher"]],
        LOGIN_REDIRECT_URL="/who/", LOGOUT_REDIRECT_URL="/who/",
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {
                "registration/login.html":
                    '<!doctype html><title>Django log in</title><h1>Django log in</h1>'
                    '<form method="post">{% csrf_token %}{{ form.as_p }}'
                    '<input type="hidden" name="next" value="{{ next }}"><button type="submit">Log in</button></form>',
                "who.html":
                    '<!doctype html><title>Django</title><p>Django sees: <span id="who">{{ who }}</span></p>'
                    '<form id="djauth-logout" method="post" action="{{ djauth }}/accounts/logout/">{% csrf_token %}'
                    '<button type="submit">Log out</button></form>'
                    '<form id="django-logout" method="post" action="/accounts/logout/">{% csrf_token %}'
                    '<button type="submit">Log out on Django</button></form>',
            })]}}],
    )
    django.setup()
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from django.shortcuts import render
    from django.urls import include, path

    def who(request):
        return render(request, "who.html", {"who": request.user.get_username() or "-", "djauth": cfg["djauth"]})

    urlpatterns = [path("who/", who), path("accounts/", include("django.contrib.auth.urls"))]
    run("127.0.0.1", cfg["port"], get_wsgi_application(), threading=True)
    """
)


def wait_for_port(proc, port, what, log):
    deadline = time.time() + 20
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{what} did not start: " + Path(log).read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def stack():
    tmp = tempfile.mkdtemp(prefix="djauth-browser-")
    db = os.path.join(tmp, "db.sqlite3")
    secret = secrets.token_urlsafe(40)
    # Django's port, held (bound, not listening) until Django starts so that djauth, whose
    # LOGIN_REDIRECT_URL names it, cannot be given the same one.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    django_port = reserved.getsockname()[1]
    django_origin = f"http://127.0.0.1:{django_port}"
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite://{db}",
        DJAUTH_SECRET_KEY=secret,
        DJAUTH_ALLOWED_HOSTS="127.0.0.1",
        DJAUTH_PASSWORD_HASHERS=MD5,
        DJAUTH_DJANGO_VERSION=os.environ.get("DJAUTH_DJANGO_VERSION", "5.2"),
        DJAUTH_LOGIN_REDIRECT_URL=f"{django_origin}/who/",
        # Django's page posts its logout button to djauth: a cross-origin (other port) POST.
        DJAUTH_CSRF_TRUSTED_ORIGINS=django_origin,
    )
    subprocess.run([djcompat.DJAUTH_BIN, "migrate"], env=env, check=True, capture_output=True)
    djauth_proc, djauth_port = start_djauth(env)
    djauth_origin = f"http://127.0.0.1:{djauth_port}"
    django_log = os.path.join(tmp, "django.log")
    reserved.close()
    with open(django_log, "wb") as log:
        django_proc = subprocess.Popen(
            [sys.executable, "-c", DJANGO_SERVER,
             json.dumps({"db": db, "secret": secret, "port": django_port, "djauth": djauth_origin, "hasher": MD5})],
            stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(django_proc, django_port, "the Django server", django_log)

    def django(op, **kw):
        """test_web's one-shot Django operations (create_user, login, who, ...) on this database."""
        out = subprocess.run([sys.executable, "-c", DJANGO_SIDE,
                              json.dumps({"op": op, "db": db, "secret": secret, **kw})],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    yield {"djauth": djauth_origin, "django_url": django_origin, "django": django, "django_log": django_log}
    for proc in (django_proc, djauth_proc):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if MISSING:
        pytest.fail("CI is set and the browser test cannot run: missing " + ", ".join(MISSING) +
                    " (.ci/install-deps installs chromium and chromium-driver; requirements-*.txt pin selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    # An explicit chromedriver: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser):
    """The browser with no cookies: every test starts anonymous."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get("about:blank")
    return browser


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    where = os.environ.get("DJAUTH_SCREENSHOTS")
    if where:
        path = Path(where)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


# --- browser helpers ---------------------------------------------------------------------

def submit(d, form=None):
    """Clicks the submit button of `form` (CSS selector; default the page's first form) and
    waits for the next page to load."""
    # A mark on the current window object: gone once another document has loaded. (Waiting
    # for the old <html> element to go stale races with the navigation in Chromium: "Node with
    # given id does not belong to the document" comes back as an unknown error.)
    d.execute_script("window.__djauth_before_submit = true")
    d.find_element(By.CSS_SELECTOR, f"{form or 'form'} button[type=submit]").click()
    WebDriverWait(d, 10, ignored_exceptions=(WebDriverException,)).until(lambda d: d.execute_script(
        "return window.__djauth_before_submit === undefined && document.readyState === 'complete'"))


def fill(d, **fields):
    for name, value in fields.items():
        box = d.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)


def text(d):
    return d.find_element(By.TAG_NAME, "body").text


def heading(d):
    return d.find_element(By.TAG_NAME, "h1").text


def django_sees(d, stack):
    d.get(stack["django_url"] + "/who/")
    return d.find_element(By.ID, "who").text


def djauth_login(d, stack, username, password):
    d.get(stack["djauth"] + "/accounts/login/")
    assert heading(d) == "Log in"
    fill(d, username=username, password=password)
    submit(d)


def djauth_me(d, stack):
    """djauth's /api/v1/me as the browser sees it: (username or None)."""
    d.get(stack["djauth"] + "/api/v1/me")
    body = json.loads(d.find_element(By.TAG_NAME, "body").text)
    return body.get("username")


def session_cookie(d):
    c = d.get_cookie("sessionid")
    return c["value"] if c else None


def check_png(path, min_bytes=8_000, min_width=800, min_height=600):
    """A real screenshot: PNG signature, IHDR dimensions, size, and more than a few distinct
    byte values in the pixel data (a blank page compresses to almost nothing and has ~none)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height, f"{path}: {width}x{height}"
    assert len(data) > min_bytes, f"{path}: only {len(data)} bytes"
    idat, pos = b"", 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    assert len(set(pixels)) > 32, f"{path} looks blank"
    return width, height, len(data)


# --- tests -------------------------------------------------------------------------------

def test_login_on_djauth_lands_on_django_logged_in(page, stack):
    d = page
    stack["django"]("create_user", username="alice", password="pw-alice-1234")
    djauth_login(d, stack, "alice", "pw-alice-1234")
    # LOGIN_REDIRECT_URL: Django's page, which sees the user djauth logged in.
    assert d.current_url == stack["django_url"] + "/who/"
    assert d.find_element(By.ID, "who").text == "alice"
    assert djauth_me(d, stack) == "alice"


def test_wrong_password_shows_djangos_error_then_next_is_followed(page, stack):
    d = page
    stack["django"]("create_user", username="bob", password="pw-bob-1234")
    login = stack["djauth"] + "/accounts/login/?next=/accounts/sessions/"
    d.get(login)
    fill(d, username="bob", password="not-bobs-password")
    submit(d)
    assert d.current_url == login
    assert DJANGO_ERROR in text(d)
    assert d.find_element(By.NAME, "username").get_attribute("value") == "bob", "the username is kept"
    assert d.find_element(By.NAME, "password").get_attribute("value") == "", "the password is not"
    assert session_cookie(d) is None
    # The second attempt, from the page with the error, still goes to `next`.
    fill(d, password="pw-bob-1234")
    submit(d)
    assert d.current_url == stack["djauth"] + "/accounts/sessions/"
    assert "(this session)" in text(d)
    assert django_sees(d, stack) == "bob"


def test_django_login_then_password_change_on_djauth(page, stack):
    d = page
    stack["django"]("create_user", username="carol", password="old-pw-carol-1234")
    d.get(stack["django_url"] + "/accounts/login/")
    assert heading(d) == "Django log in"
    fill(d, username="carol", password="old-pw-carol-1234")
    submit(d)
    assert d.current_url == stack["django_url"] + "/who/"
    assert d.find_element(By.ID, "who").text == "carol"
    key = session_cookie(d)

    # djauth sees Django's login: the form, not a redirect to the login page.
    d.get(stack["djauth"] + "/accounts/password_change/")
    assert d.current_url == stack["djauth"] + "/accounts/password_change/"
    assert heading(d) == "Password change"
    fill(d, old_password="old-pw-carol-1234", new_password1="new-pw-carol-5678",
         new_password2="new-pw-carol-5678")
    submit(d)
    assert d.current_url == stack["djauth"] + "/accounts/password_change/done/"
    assert heading(d) == "Password change successful"
    assert "Your password was changed." in text(d)

    # update_session_auth_hash: a new key carrying the new hash, which Django accepts.
    new_key = session_cookie(d)
    assert new_key and new_key != key
    assert django_sees(d, stack) == "carol"
    assert stack["django"]("check_password", username="carol", password="new-pw-carol-5678") == "True"
    assert stack["django"]("who", sessionid=key) == "-", "the old key is gone"


def test_logout_button_to_djauth_logs_out_both_sides(page, stack):
    d = page
    stack["django"]("create_user", username="dave", password="pw-dave-1234")
    djauth_login(d, stack, "dave", "pw-dave-1234")
    assert d.find_element(By.ID, "who").text == "dave"
    key = session_cookie(d)
    # The button on Django's page posts to djauth (another port: CSRF_TRUSTED_ORIGINS).
    submit(d, "#djauth-logout")
    assert d.current_url == stack["djauth"] + "/accounts/logout/"
    assert heading(d) == "Logged out"
    assert session_cookie(d) is None
    assert django_sees(d, stack) == "-"
    assert djauth_me(d, stack) is None
    d.get(stack["djauth"] + "/accounts/password_change/")
    assert d.current_url == stack["djauth"] + "/accounts/login/?next=/accounts/password_change/"
    assert stack["django"]("session_exists", sessionid=key) == "False"


def test_logout_on_django_is_seen_by_djauth(page, stack):
    d = page
    stack["django"]("create_user", username="erin", password="pw-erin-1234")
    djauth_login(d, stack, "erin", "pw-erin-1234")
    assert d.find_element(By.ID, "who").text == "erin"
    submit(d, "#django-logout")
    assert d.current_url == stack["django_url"] + "/who/"
    assert d.find_element(By.ID, "who").text == "-"
    assert djauth_me(d, stack) is None
    d.get(stack["djauth"] + "/accounts/password_change/")
    assert d.current_url.startswith(stack["djauth"] + "/accounts/login/?next=")


def test_screenshots_and_sessions_page(page, stack, screenshots):
    d = page
    shots = {}
    d.get(stack["djauth"] + "/accounts/login/")
    d.save_screenshot(str(screenshots / "djauth-login.png"))
    shots["login"] = screenshots / "djauth-login.png"

    stack["django"]("create_user", username="frank", password="pw-frank-1234")
    other = stack["django"]("login", username="frank", password="pw-frank-1234")  # another device
    djauth_login(d, stack, "frank", "pw-frank-1234")
    assert d.find_element(By.ID, "who").text == "frank"

    d.get(stack["djauth"] + "/accounts/password_change/")
    assert heading(d) == "Password change"
    d.save_screenshot(str(screenshots / "djauth-password-change.png"))
    shots["password_change"] = screenshots / "djauth-password-change.png"

    d.get(stack["djauth"] + "/accounts/sessions/")
    assert d.current_url == stack["djauth"] + "/accounts/sessions/"
    items = d.find_elements(By.CSS_SELECTOR, "ul.sessions li")
    assert len(items) == 2, text(d)
    assert "(this session)" in items[0].text
    assert "Chrome" in items[0].text, items[0].text
    d.save_screenshot(str(screenshots / "djauth-sessions.png"))
    shots["sessions"] = screenshots / "djauth-sessions.png"

    # End the other device's session with its button.
    submit(d, "ul.sessions li form")
    assert d.current_url == stack["djauth"] + "/accounts/sessions/"
    assert len(d.find_elements(By.CSS_SELECTOR, "ul.sessions li")) == 1
    assert stack["django"]("session_exists", sessionid=other) == "False"
    assert django_sees(d, stack) == "frank", "this session survives"

    for name, path in shots.items():
        width, height, size = check_png(path)
        print(f"screenshot {name}: {path} ({width}x{height}, {size} bytes)")

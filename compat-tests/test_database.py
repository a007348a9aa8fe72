"""djauth and real Django on the same database: SQLite, PostgreSQL and MariaDB.

Every test runs once per backend on a fresh database (PostgreSQL/MariaDB: one throw-away
server each for the whole module, dbservers.py via dbfixtures.py).  Django runs in its own process (django_side.py) with
a settings module of its own pointing at the test's database(s) -- independent of conftest's
in-process settings -- and djauth gets the same settings as DATABASE_URL + DJAUTH_*.

Random inputs come from conftest's ``rng`` (COMPAT_SEED reproduces a run); the generated
permission world is printed, so a failing run shows it.
"""

import json
import random
import time

import pytest

import dbfixtures
from dbfixtures import *  # noqa: F401,F403  (fixtures: pg_server, mariadb_server, backend, django_project)
from dbfixtures import BACKENDS, HASHER, assert_same_schema, hashers, is_djauth_table, run_djauth
from djcompat import INPROCESS, random_password

pytestmark = pytest.mark.skipif(INPROCESS, reason="database commands of the binary; reference_djauth.py has none")

AUTO = "django.db.models.AutoField"
BIG = "django.db.models.BigAutoField"
FAST_HASHERS = hashers("MD5PasswordHasher", "PBKDF2PasswordHasher")


def _version_default_auto_field():
    import django

    return BIG if django.VERSION >= (6, 0) else AUTO


def _perm_args(perms, modules):
    args = []
    for p in perms:
        args += ["--perm", p]
    for m in modules:
        args += ["--module", m]
    return args


def compare_perms(proj, pk, perms, modules, *, label=""):
    """djauth user perms --id PK vs Django's User methods for one user; returns mismatches."""
    args = ["user", "perms", "--id", pk, *_perm_args(perms, modules)]
    res = proj.djauth(*args)
    if res.rc != 0:
        return {"user": label, "pk": pk, "command": proj.describe(args), "failed": str(res)}
    got = res.json
    want = proj.call("perms", pk=pk, perms=perms, modules=modules)
    expected = {
        "user_permissions": want["get_user_permissions"],
        "group_permissions": want["get_group_permissions"],
        "all_permissions": want["all_permissions"],
        "has_perm": want["has_perm"],
        "has_perms": want["has_perms"],
        "has_module_perms": want["has_module_perms"],
    }
    actual = {
        "user_permissions": sorted(got.get("user_permissions", [])),
        "group_permissions": sorted(got.get("group_permissions", [])),
        "all_permissions": sorted(got.get("all_permissions", [])),
        "has_perm": got.get("has_perm"),
        "has_perms": got.get("has_perms"),
        "has_module_perms": got.get("has_module_perms"),
    }
    bad = {}
    for k in expected:
        if expected[k] != actual[k]:
            if isinstance(expected[k], dict):
                bad[k] = {x: (expected[k].get(x), (actual[k] or {}).get(x))
                          for x in set(expected[k]) | set(actual[k] or {})
                          if expected[k].get(x) != (actual[k] or {}).get(x)}
            else:
                bad[k] = {"django": expected[k], "djauth": actual[k]}
    if bad:
        return {"user": label, "pk": pk, "command": proj.describe(args), "mismatch (django, djauth)": bad}
    return None


# ----------------------------------------------------------------------------------------
# 1. Django migrates; users Django made log in through djauth; djauth's rehash works in Django
# ----------------------------------------------------------------------------------------

def test_check_after_djauth_migrate(backend, django_project):
    """Django migrates; `djauth check` names exactly one problem (djauth's own migrations) with
    its fix; after `djauth migrate` it passes."""
    proj = django_project(backend.new_database("dj"), hashers_list=FAST_HASHERS)
    proj.migrate()
    before = proj.djauth("check")
    if before.rc != 0:
        assert before.rc == 1, before
        assert "djauth migrate" in before.stdout, before
        assert before.stdout.count("\n- ") == 0 and before.stdout.startswith("- "), f"more than one problem: {before}"
    res = proj.djauth("migrate")
    assert res.rc == 0, res
    res = proj.djauth("check")
    assert res.rc == 0, f"{proj.describe(['check'])}\n{res}"
    assert "no issues" in res.stdout


def _variants(name):
    """Spellings a case-/accent-insensitive PAD SPACE collation (MariaDB's default
    utf8mb4_general_ci) treats as ``name``, and some it does not."""
    import unicodedata

    stripped = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    out = {name.upper(), name.capitalize(), name + " ", " " + name, name + "\t", stripped,
           name.replace("a", "á").replace("o", "ö"), unicodedata.normalize("NFD", name)}
    out.discard(name)
    return sorted(out)


def test_django_users_authenticate_through_djauth(backend, django_project, rng):
    proj = django_project(backend.new_database("login"), hashers_list=FAST_HASHERS)
    proj.migrate()
    users = {
        "alice": {"password": random_password(rng, 1), "extra": {"email": "alice@example.com"}},
        "jörg.ñandú": {"password": random_password(rng, 1), "extra": {"first_name": "Jörg"}},
        "bob": {"password": random_password(rng, 1), "extra": {"is_active": False}},
        "carol": {"password": None, "extra": {}},  # unusable password
        "dave": {"password": "x", "extra": {}},  # column overwritten below
        "erin": {"password": "x", "extra": {}},
    }
    made = {}
    for name, u in users.items():
        made[name] = proj.call("create_user", username=name, password=u["password"], extra=u["extra"])
    # a hash of a known but unlisted hasher (pbkdf2_sha1), and an empty password column
    unlisted = proj.call("make_password", password="dave-pw", algorithm="pbkdf2_sha1", iterations=1000)
    proj.call("update_user", pk=made["dave"]["pk"], fields={"password": unlisted})
    users["dave"]["password"] = "dave-pw"
    proj.call("update_user", pk=made["erin"]["pk"], fields={"password": ""})
    users["erin"]["password"] = ""

    problems = []

    def attempt(username, password, expect_pk):
        """djauth's verdict must be Django's (``expect_pk``: Django's answer, None = refused)."""
        row_before = proj.call("user", pk=expect_pk) if expect_pk else None
        args = ["user", "authenticate", username]
        res = proj.djauth(*args, stdin=password + "\n")
        if expect_pk is None:
            if res.rc != 1 or not res.stderr.strip():
                problems.append(f"{username!r}: Django refuses, djauth: {res}\n  {proj.describe(args)}")
            return
        if res.rc != 0:
            problems.append(f"{username!r}: Django accepts (pk {expect_pk}), djauth: {res}\n  {proj.describe(args)}")
            return
        if res.json.get("pk") != expect_pk:
            problems.append(f"{username!r}: djauth returned pk {res.json.get('pk')!r}, Django {expect_pk!r}")
        # MD5 is preferred: no rehash; ModelBackend.authenticate does not touch last_login
        row_after = proj.call("user", pk=expect_pk)
        if row_after != row_before:
            problems.append(f"{username!r}: djauth authenticate changed the row: {row_before} -> {row_after}")

    for name, u in users.items():
        django = proj.call("authenticate", username=name, password=u["password"])
        expect = django["pk"] if django else None
        if name in ("alice", "jörg.ñandú"):
            assert expect == made[name]["pk"], f"Django refused its own user {name}"
        else:
            assert expect is None, f"Django accepted {name}"
        attempt(name, u["password"] if u["password"] is not None else "", expect)
        if u["password"]:
            wrong = u["password"] + "x"
            assert proj.call("authenticate", username=name, password=wrong) is None
            attempt(name, wrong, None)
            attempt(name, u["password"].upper() if u["password"].upper() != u["password"] else "", None)
    # unknown users
    for name in ("mallory", ""):
        assert proj.call("authenticate", username=name, password="pw") is None
        attempt(name, "pw", None)
    # the username as the database compares it (MySQL collations are case/accent-insensitive
    # and PAD SPACE): djauth must find exactly the user Django finds
    for name in ("alice", "jörg.ñandú"):
        for v in _variants(name):
            django = proj.call("authenticate", username=v, password=users[name]["password"])
            attempt(v, users[name]["password"], django["pk"] if django else None)
    assert not problems, f"{backend}: " + "\n".join(problems)


STALE = {
    # name: (PASSWORD_HASHERS, how Django makes the stale hash).  Only the first pays for the
    # preferred PBKDF2's full work factor; the others rehash into a cheap preferred MD5.
    "pbkdf2-old-iterations": (hashers("PBKDF2PasswordHasher", "MD5PasswordHasher"),
                              {"algorithm": "pbkdf2_sha256", "iterations": 1000}),
    "pbkdf2-listed-md5-preferred": (hashers("MD5PasswordHasher", "PBKDF2PasswordHasher"),
                                    {"algorithm": "pbkdf2_sha256", "iterations": 1000}),
    "pbkdf2sha1-listed-md5-preferred": (hashers("MD5PasswordHasher", "PBKDF2SHA1PasswordHasher"),
                                        {"algorithm": "pbkdf2_sha1", "iterations": 1000}),
}
PREFERRED_ALGORITHM = {HASHER + "PBKDF2PasswordHasher": "pbkdf2_sha256", HASHER + "MD5PasswordHasher": "md5"}


@pytest.mark.parametrize("stale", list(STALE))
def test_djauth_rehash_is_accepted_by_django(backend, django_project, rng, stale):
    hashers_list, how = STALE[stale]
    proj = django_project(backend.new_database("rehash"), hashers_list=hashers_list)
    proj.migrate()
    pw = random_password(rng, 1, 20)
    pks = {}
    for name, active in (("active", True), ("inactive", False), ("django-side", False)):
        pks[name] = proj.call("create_user", username=name, password="unused", extra={"is_active": active})["pk"]
        proj.call("update_user", pk=pks[name],
                  fields={"password": proj.call("make_password", password=pw, **how)})
    stored = {n: proj.call("user", pk=pk)["password"] for n, pk in pks.items()}

    # wrong password: refused, nothing rewritten (Django only rehashes a correct password)
    res = proj.djauth("user", "authenticate", "active", stdin=pw + "!\n")
    assert res.rc == 1, res
    assert proj.call("user", pk=pks["active"])["password"] == stored["active"]

    res = proj.djauth("user", "authenticate", "active", stdin=pw + "\n")
    assert res.rc == 0, f"{proj.describe(['user', 'authenticate', 'active'])}\n{res}"
    rewritten = proj.call("user", pk=pks["active"])["password"]
    assert rewritten != stored["active"], "djauth did not rewrite a must_update hash"
    assert rewritten.split("$", 1)[0] == PREFERRED_ALGORITHM[hashers_list[0]], rewritten
    assert res.json["password"] == rewritten
    # Django accepts djauth's hash and finds nothing to update (same hasher and work factor)
    django = proj.call("authenticate", username="active", password=pw)
    assert django is not None, f"Django refuses djauth's rewritten hash {rewritten!r}"
    assert django["password"] == rewritten, "Django rehashed djauth's hash again (work factor differs)"
    assert proj.call("check_password", pk=pks["active"], password=pw + "x")["valid"] is False

    # inactive user, correct password: ModelBackend checks (and so rehashes) before is_active
    res = proj.djauth("user", "authenticate", "inactive", stdin=pw + "\n")
    assert res.rc == 1, res
    djauth_rewrote = proj.call("user", pk=pks["inactive"])["password"] != stored["inactive"]
    assert proj.call("authenticate", username="django-side", password=pw) is None
    django_rewrote = proj.call("user", pk=pks["django-side"])["password"] != stored["django-side"]
    assert djauth_rewrote == django_rewrote, (
        f"inactive user with a stale hash: Django rewrote={django_rewrote}, djauth rewrote={djauth_rewrote}")


# ----------------------------------------------------------------------------------------
# 2. Groups and permissions assigned by Django: djauth user perms == Django's answers
# ----------------------------------------------------------------------------------------

EXTRA_PERMS = [
    # app_label, model, codename, name
    ["blog", "post", "add_post", "Can add post"],
    ["blog", "post", "publish_post", "Can publish post"],
    ["blog", "post", "can.archive", "Codename with a dot"],
    ["shop", "order", "refund_order", "Can refund order"],
    ["shop", "order", "view_order", "Can view order"],
    ["authx", "token", "use_token", "App label with 'auth' as prefix"],
    ["Legacy", "thing", "view_thing", "Upper-case app label"],
    ["café", "menu", "edit_menü", "Non-ASCII app label and codename"],
]
MISSING_PERMS = ["blog.delete_post", "nosuchapp.view_x", "auth.add_users", "auth.ADD_USER", "auth", "",
                 "add_user", ".add_user", "auth.add_user.extra", "legacy.view_thing", "authx"]
MODULES = ["auth", "contenttypes", "sessions", "blog", "shop", "authx", "Legacy", "legacy", "café",
           "aut", "nosuchapp", "", "auth.add_user"]


def _random_world(r, all_perms):
    pool = r.sample(all_perms, min(20, len(all_perms)))
    groups = [f"group-{i}" for i in range(4)] + ["Éditeurs"]
    group_perms = {g: r.sample(pool, r.randint(0, 6)) for g in groups}
    users, user_perms, memberships = [], {}, {}
    fixed = [  # corners first, then random flags
        {"is_active": True, "is_superuser": True},
        {"is_active": False, "is_superuser": True},
        {"is_active": False, "is_superuser": False},
        {"is_active": True, "is_superuser": False},
    ]
    for i in range(15):
        flags = fixed[i] if i < len(fixed) else {
            "is_active": r.random() < 0.8, "is_superuser": r.random() < 0.15, "is_staff": r.random() < 0.3}
        name = f"user{i:02d}" if i % 5 else f"üser{i:02d}"
        users.append({"username": name, **flags})
        if i != 3:
            user_perms[name] = r.sample(pool, r.randint(0, 4))
            memberships[name] = r.sample(groups, r.randint(0, 3))
    return {"groups": groups, "users": users, "group_perms": group_perms, "user_perms": user_perms,
            "memberships": memberships}


def test_permissions_match_django(backend, django_project, rng):
    proj = django_project(backend.new_database("perms"), hashers_list=FAST_HASHERS)
    proj.migrate()
    proj.call("create_permissions", perms=EXTRA_PERMS)
    all_perms = proj.call("all_permissions")
    world_seed = rng.randrange(2**32)
    r = random.Random(world_seed)
    world = _random_world(r, all_perms)
    print(f"permission world (seed {world_seed}):\n{json.dumps(world, ensure_ascii=False, indent=1)}")
    pks = proj.call("build_world", **world)

    mismatches = []
    for u in world["users"]:
        pk = pks[u["username"]]
        queried = sorted(set(all_perms) | set(MISSING_PERMS))
        m = compare_perms(proj, pk, queried, MODULES, label=u["username"])
        if m:
            mismatches.append(m)
        # has_perms on a subset the user may well have (all_permissions alone would always be
        # false because of the missing ones)
        mine = proj.call("perms", pk=pk, perms=[], modules=[])["all_permissions"]
        subset = r.sample(mine, min(3, len(mine))) + ([r.choice(all_perms)] if r.random() < 0.5 else [])
        m = compare_perms(proj, pk, subset, [], label=u["username"] + " (subset)")
        if m:
            mismatches.append(m)
    # by USERNAME_FIELD instead of --id
    name = world["users"][4]["username"]
    by_name = proj.djauth("user", "perms", name, "--perm", "auth.add_user")
    by_id = proj.djauth("user", "perms", "--id", pks[name], "--perm", "auth.add_user")
    assert by_name.rc == 0 and by_name.json == by_id.json, (by_name, by_id)
    unknown = proj.djauth("user", "perms", "nobody-here", "--perm", "auth.add_user")
    assert unknown.rc == 1, unknown
    assert not mismatches, f"{backend}: djauth and Django disagree:\n" + json.dumps(mismatches, ensure_ascii=False, indent=1)


# ----------------------------------------------------------------------------------------
# 3. djauth migrates: Django sees its own schema and rows
# ----------------------------------------------------------------------------------------

def _non_djauth(d):
    return {k: v for k, v in d.items() if not is_djauth_table(k)}


_NON_DEFAULT = BIG if _version_default_auto_field() == AUTO else AUTO


@pytest.mark.parametrize("auto_field,source", [
    pytest.param(AUTO, "env", id="AutoField-env"),
    pytest.param(BIG, "env", id="BigAutoField-env"),
    # the same through --config's TOML (only the non-default value tells whether it arrived)
    pytest.param(_NON_DEFAULT, "config-file", id=_NON_DEFAULT.rsplit(".", 1)[1] + "-config-file"),
])
def test_djauth_migrate_equals_django_migrate(backend, django_project, auto_field, source, tmp_path):
    """DEFAULT_AUTO_FIELD reaches djauth as DJAUTH_DEFAULT_AUTO_FIELD (env) or through
    --config's TOML file; the schema must be Django's either way."""
    ours = backend.new_database("djauth")
    ref = backend.new_database("django")
    proj = django_project({"default": ours, "ref": ref}, hashers_list=FAST_HASHERS, auto_field=auto_field)
    env = None
    if source == "config-file":
        cfg = tmp_path / "djauth.toml"
        cfg.write_text(f'DEFAULT_AUTO_FIELD = "{auto_field}"\n')
        env = {"DJAUTH_DEFAULT_AUTO_FIELD": None, "DJAUTH_CONFIG": str(cfg)}
    r = proj.manage("migrate", database="ref")
    assert r["rc"] == 0, r
    res = proj.djauth("migrate", env=env)
    assert res.rc == 0, f"{proj.describe(['migrate'], env)}\n{res}"

    # schema: identical for Django's tables; the only extra tables are djauth's own
    ours_schema, ref_schema = ours.schema(), ref.schema()
    assert_same_schema(ref_schema, ours_schema, str(backend), f"djauth migrate vs Django migrate ({auto_field})")
    extra = sorted(set(ours_schema) - set(ref_schema))
    assert all(is_djauth_table(t) for t in extra), extra
    # rows written by migrate (by natural key: ids are test_djauth_migrate_rows_have_djangos_ids),
    # and where the id counters stand
    ref_rows = proj.call("natural_rows", using="ref")
    ours_rows = proj.call("natural_rows")
    for table in ref_rows:
        assert ours_rows[table] == ref_rows[table], f"{backend}: {table} rows differ:\nDjango: {ref_rows[table]}\ndjauth: {ours_rows[table]}"
    assert _non_djauth(ours.sequences()) == _non_djauth(ref.sequences())
    ours_rows = proj.call("table_rows")

    # Django's migrate has nothing to do, and its post_migrate handlers add no rows
    r = proj.manage("migrate")
    assert r["rc"] == 0 and "No migrations to apply." in r["stdout"] and "Applying" not in r["stdout"], r
    assert proj.call("table_rows") == ours_rows
    r = proj.manage("makemigrations", "auth", "contenttypes", "sessions", check=True, dry_run=True)
    assert r["rc"] == 0, r
    assert_same_schema(ref_schema, ours.schema(), str(backend), "after Django's migrate on djauth's database")

    # Django works on it: new rows get the ids they would get in Django's own database
    new = [["blog", "post", "publish_post", "Can publish post"]]
    assert proj.call("create_permissions", perms=new) == proj.call("create_permissions", perms=new, using="ref")
    alice = proj.call("create_user", username="alice", password="s3cret", extra={"email": "a@example.com"})
    assert alice["pk"] == "1"
    assert proj.call("authenticate", username="alice", password="s3cret")["pk"] == "1"
    proj.call("add_user_permission", pk="1", perm="auth.change_group")
    proj.call("build_world", groups=["editors"], users=[{"username": "bob"}], group_perms={"editors": ["blog.publish_post"]},
              user_perms={"bob": ["sessions.view_session"]}, memberships={"bob": ["editors"]})
    assert proj.call("perms", pk="1", perms=["auth.change_group"], modules=[])["has_perm"] == {"auth.change_group": True}
    res = proj.djauth("user", "authenticate", "alice", stdin="s3cret\n")
    assert res.rc == 0 and res.json["pk"] == "1", res
    for pk in ("1", "2"):
        m = compare_perms(proj, pk, ["auth.change_group", "blog.publish_post", "sessions.view_session"],
                          ["auth", "blog", "sessions"])
        assert m is None, m
    assert proj.call("sql", query="SELECT COUNT(*) FROM auth_user_groups") == [[1]]


def test_djauth_migrate_rows_have_djangos_ids(backend, django_project):
    """The rows of django_content_type, auth_permission and django_migrations, ids included,
    are the ones Django's migrate writes (INSTALLED_APPS in startproject's order)."""
    ours, ref = backend.new_database("djauth"), backend.new_database("django")
    proj = django_project({"default": ours, "ref": ref}, hashers_list=FAST_HASHERS,
                          auto_field=_version_default_auto_field())
    assert proj.manage("migrate", database="ref")["rc"] == 0
    res = proj.djauth("migrate")
    assert res.rc == 0, res
    ref_rows, ours_rows = proj.call("table_rows", using="ref"), proj.call("table_rows")
    bad = [f"{t}:\n  Django: {ref_rows[t]}\n  djauth: {ours_rows[t]}" for t in ref_rows if ours_rows[t] != ref_rows[t]]
    assert not bad, f"{backend}: " + "\n".join(bad)


# ----------------------------------------------------------------------------------------
# 4. djauth migrate is idempotent and leaves a Django-migrated database alone
# ----------------------------------------------------------------------------------------

def _snapshot(proj, db):
    return {
        "schema": db.schema(),
        "rows": proj.call("dump", skip=[]),
        "sequences": db.sequences(),
    }


def _assert_same_snapshot(before, after, backend, what, *, django_only):
    assert_same_schema(before["schema"], after["schema"], backend, what, django_only=django_only)
    b_rows, a_rows = before["rows"], after["rows"]
    b_seq, a_seq = before["sequences"], after["sequences"]
    if django_only:
        b_rows, a_rows = _non_djauth(b_rows), _non_djauth(a_rows)
        b_seq, a_seq = _non_djauth(b_seq), _non_djauth(a_seq)
    for t in sorted(set(b_rows) | set(a_rows)):
        assert a_rows.get(t) == b_rows.get(t), f"{backend}: {what}: rows of {t} changed:\n{b_rows.get(t)}\n{a_rows.get(t)}"
    assert a_seq == b_seq, f"{backend}: {what}: id counters changed"


def test_djauth_migrate_twice_changes_nothing(backend, django_project):
    db = backend.new_database("twice")
    proj = django_project(db, hashers_list=FAST_HASHERS)
    res = proj.djauth("migrate")
    assert res.rc == 0, res
    first = _snapshot(proj, db)
    assert "__diesel_schema_migrations" in first["rows"] or any(is_djauth_table(t) for t in first["schema"])
    res = proj.djauth("migrate")
    assert res.rc == 0, res
    assert "Applied" not in res.stdout and "Created" not in res.stdout, res
    _assert_same_snapshot(first, _snapshot(proj, db), str(backend), "second djauth migrate", django_only=False)
    assert proj.djauth("check").rc == 0


def test_djauth_migrate_leaves_django_tables_alone(backend, django_project, rng):
    db = backend.new_database("djfirst")
    proj = django_project(db, hashers_list=FAST_HASHERS)
    proj.migrate()
    proj.call("create_permissions", perms=EXTRA_PERMS[:3])
    proj.call("build_world", **_random_world(random.Random(rng.randrange(2**32)), proj.call("all_permissions")))
    proj.call("create_sessions", sessions=[{"offset": -3600, "data": {"a": 1}}, {"offset": 3600, "data": {}}])
    before = _snapshot(proj, db)
    res = proj.djauth("migrate")
    assert res.rc == 0, f"{proj.describe(['migrate'])}\n{res}"
    after = _snapshot(proj, db)
    _assert_same_snapshot(before, after, str(backend), "djauth migrate on a Django-migrated database", django_only=True)
    added = sorted(set(after["schema"]) - set(before["schema"]))
    assert added and all(is_djauth_table(t) for t in added), added
    assert set(after["schema"]) >= set(before["schema"])
    r = proj.manage("migrate")
    assert "No migrations to apply." in r["stdout"], r


# ----------------------------------------------------------------------------------------
# 5. Custom user models (Django migrates)
# ----------------------------------------------------------------------------------------

CUSTOM_USERS = {
    # model (dbfixtures.ACCOUNTS_MODELS): [(USERNAME_FIELD value, extra fields)]
    "email_uuid": [("alice@example.com", {}), ("Bob.Smith@example.com", {"first_name": "Bob"}),
                   ("inactive@example.com", {"is_active": False})],
    "bigauto": [("alice", {"email": "alice@example.com"}), ("bob", {"email": "b@example.com"}),
                ("inactive", {"is_active": False})],
    "db_table": [("alice", {"email": "alice@example.com"}), ("bob", {}), ("inactive", {"is_active": False})],
}
MODELS = ["email_uuid", "bigauto", "db_table"]


@pytest.mark.parametrize("model", ["email_uuid", "bigauto"])
def test_custom_user_model_migrate_and_check(backend, django_project, model):
    proj = django_project(backend.new_database(model), hashers_list=FAST_HASHERS, user_model=model)
    proj.migrate()
    res = proj.djauth("migrate")
    assert res.rc == 0, f"{proj.describe(['migrate'])}\n{res}"
    res = proj.djauth("check")
    assert res.rc == 0, f"{proj.describe(['check'])}\n{res}"


def _check_users(proj, users, *, label):
    """djauth user show --id / show / authenticate for Django-made users: [(login, pk, password)]."""
    problems = []
    for login, pk, pw in users:
        args = ["user", "show", "--id", pk]
        res = proj.djauth(*args)
        if res.rc != 0 or res.json.get("pk") != pk:
            problems.append(f"{proj.describe(args)}\n  -> {res} (Django's pk {pk!r})")
        res = proj.djauth("user", "show", login)
        if res.rc != 0 or res.json.get("pk") != pk:
            problems.append(f"user show {login!r} -> {res} (Django's pk {pk!r})")
        args = ["user", "authenticate", login]
        res = proj.djauth(*args, stdin=pw + "\n")
        django = proj.call("authenticate", username=login, password=pw)
        if django is None:
            if res.rc != 1:
                problems.append(f"{proj.describe(args)}: Django refuses, djauth {res}")
        elif res.rc != 0 or res.json.get("pk") != pk:
            problems.append(f"{proj.describe(args)}: Django accepts pk {pk}, djauth {res}")
        res = proj.djauth(*args, stdin=pw + "x\n")
        if res.rc != 1:
            problems.append(f"{proj.describe(args)} with a wrong password: {res}")
    return problems


GROUPS_CODE = """
from django.contrib.auth.models import Group, Permission
from django.contrib.auth import get_user_model
U = get_user_model()
def P(s):
    a, c = s.split('.', 1)
    return Permission.objects.get(content_type__app_label=a, codename=c)
g1 = Group.objects.create(name='staff')
g1.permissions.add(P('accounts.change_user'), P('auth.view_group'), P('sessions.delete_session'))
g2 = Group.objects.create(name='viewers')
g2.permissions.add(P('accounts.view_user'))
a = U.objects.get(pk=args['a']); b = U.objects.get(pk=args['b']); c = U.objects.get(pk=args['c'])
a.groups.add(g1, g2); b.groups.add(g2); c.groups.add(g1)
b.user_permissions.add(P('accounts.add_user'), P('auth.view_group'))
result = None
"""
CUSTOM_PERMS = ["accounts.add_user", "accounts.change_user", "accounts.view_user", "accounts.delete_user",
                "auth.view_group", "auth.view_user", "sessions.delete_session", "nosuch.perm"]
CUSTOM_MODULES = ["accounts", "auth", "sessions", "contenttypes", "nosuch"]


@pytest.mark.parametrize("model", MODELS)
def test_custom_user_model_users_and_permissions(backend, django_project, rng, model):
    proj = django_project(backend.new_database(model), hashers_list=FAST_HASHERS, user_model=model)
    proj.migrate()
    users = []
    for login, extra in CUSTOM_USERS[model]:
        pw = random_password(rng, 1, 20)
        users.append((login, proj.call("create_user", username=login, password=pw, extra=extra)["pk"], pw))
    if model == "email_uuid":
        assert all(len(pk) == 36 and pk.count("-") == 4 for _, pk, _ in users)  # value_to_string
    problems = _check_users(proj, users, label=model)
    if model == "email_uuid":
        # a UUID primary key given without hyphens (Django's to_python accepts it)
        pk = users[0][1]
        res = proj.djauth("user", "show", "--id", pk.replace("-", ""))
        django = proj.call("user", pk=pk.replace("-", ""))
        if (res.rc == 0) != (django is not None) or (res.rc == 0 and res.json["pk"] != pk):
            problems.append(f"user show --id {pk.replace('-', '')}: Django {django and django['pk']}, djauth {res}")
    missing = "00000000-0000-4000-8000-000000000000" if model == "email_uuid" else "999999"
    res = proj.djauth("user", "show", "--id", missing)
    if res.rc != 1:
        problems.append(f"user show --id {missing} (no such user): {res}")

    # permissions through groups and directly, on <table>_groups / <table>_user_permissions
    pks = [pk for _, pk, _ in users]
    proj.call("exec", code=GROUPS_CODE, args={"a": pks[0], "b": pks[1], "c": pks[2]})
    table = dbfixtures.ACCOUNTS_TABLE[model]
    tables = proj.call("tables")
    assert f"{table}_groups" in tables and f"{table}_user_permissions" in tables and "auth_user" not in tables
    for login, pk, _ in users:
        m = compare_perms(proj, pk, CUSTOM_PERMS, CUSTOM_MODULES, label=login)
        if m:
            problems.append(json.dumps(m, ensure_ascii=False))

    # settings that do not match the database: check must name the user-model problem (not
    # only djauth's own pending migrations)
    wrong = [{"DJAUTH_AUTH_USER_MODEL": "auth.User", "DJAUTH_AUTH_USER_TABLE": None,
              "DJAUTH_USERNAME_FIELD": None, "DJAUTH_EMAIL_FIELD": None},
             {"DJAUTH_USERNAME_FIELD": "username" if model == "email_uuid" else "handle"}]
    for env in wrong:
        res = proj.djauth("check", env=env)
        listed = [line for line in res.stdout.splitlines() if line.startswith("- ")]
        if res.rc != 1 or not any("djauth migration" not in p for p in listed):
            problems.append(f"check does not name the user-model problem: {proj.describe(['check'], env)}\n  -> {res}")
    assert not problems, f"{backend}/{model}:\n" + "\n".join(problems)


def test_bigautofield_pk_beyond_32_bits(backend, django_project, rng):
    """BigAutoField primary keys above 2**31 - 1 (on SQLite the column is "integer" either way)."""
    proj = django_project(backend.new_database("bigpk"), hashers_list=FAST_HASHERS, user_model="bigauto")
    proj.migrate()
    users = []
    for login, pk in (("big", 2**40 + 7), ("edge", 2**31), ("small", None)):
        pw = random_password(rng, 1, 20)
        extra = {"id": pk} if pk else {}
        users.append((login, proj.call("create_user", username=login, password=pw, extra=extra)["pk"], pw))
    assert users[0][1] == str(2**40 + 7) and users[1][1] == str(2**31)
    problems = _check_users(proj, users, label="bigauto")
    proj.call("exec", code=GROUPS_CODE, args={"a": users[0][1], "b": users[1][1], "c": users[2][1]})
    for login, pk, _ in users:
        m = compare_perms(proj, pk, CUSTOM_PERMS, CUSTOM_MODULES, label=login)
        if m:
            problems.append(json.dumps(m, ensure_ascii=False))
        res = proj.djauth("user", "perms", login, "--perm", "accounts.view_user")
        if res.rc != 0:
            problems.append(f"user perms {login}: {res}")
    assert not problems, f"{backend}:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------------------
# 6. clearsessions deletes exactly what Django's clearsessions deletes
# ----------------------------------------------------------------------------------------

# seconds from now; both sides of the UTC offsets of America/Chicago (-6/-5 h) and of the
# process TZ djauth runs under (Asia/Kathmandu, +5:45), far past/future, and a minute off
SESSION_OFFSETS = [-40 * 86400, -86400, -6 * 3600 - 300, -6 * 3600 + 300, -5 * 3600 - 300, -5 * 3600 + 300,
                   -(5 * 3600 + 45 * 60) - 300, -(5 * 3600 + 45 * 60) + 300, -90, 90,
                   5 * 3600 - 300, 5 * 3600 + 300, (5 * 3600 + 45 * 60) - 300, (5 * 3600 + 45 * 60) + 300,
                   6 * 3600 - 300, 6 * 3600 + 300, 86400, 40 * 86400]


@pytest.mark.parametrize("use_tz", [True, False], ids=["USE_TZ", "no-USE_TZ"])
def test_clearsessions_matches_django(backend, django_project, use_tz, request):
    if not use_tz and str(backend) in ("sqlite", "mysql"):
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "USE_TZ=False: Django stores naive local time (TIME_ZONE) in expire_date and deletes "
            "expire_date < now() in local time; djauth clearsessions binds the current UTC time, so "
            "with TIME_ZONE=America/Chicago it deletes sessions that expire within the next 5-6 h")))
    ours, theirs = backend.new_database("sess_djauth"), backend.new_database("sess_django")
    proj = django_project({"default": theirs, "copy": ours}, hashers_list=FAST_HASHERS, use_tz=use_tz)
    proj.migrate()
    proj.migrate(database="copy")
    made = proj.call("create_sessions", sessions=[{"offset": o, "data": {"o": o}} for o in SESSION_OFFSETS])
    rows = proj.call("session_rows")
    assert len(rows) == len(SESSION_OFFSETS)
    proj.call("insert_session_rows", rows=rows, using="copy")
    assert proj.call("session_rows", using="copy") == rows

    # signed_cookies engine: Django's clear_expired is a no-op
    res = proj.djauth("clearsessions", alias="copy", env={"DJAUTH_SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies"})
    assert res.rc == 0, res
    assert proj.call("session_rows", using="copy") == rows

    t0 = time.monotonic()
    r = proj.manage("clearsessions")
    assert r["rc"] == 0, r
    args = ["clearsessions"]
    res = proj.djauth(*args, alias="copy")
    assert time.monotonic() - t0 < 30
    assert res.rc == 0, res
    kept_django = sorted(k for k, _, _ in proj.call("session_rows"))
    kept_djauth = sorted(k for k, _, _ in proj.call("session_rows", using="copy"))
    by_key = {k: (o, e) for (k, e), o in zip(made, SESSION_OFFSETS)}
    assert kept_django == sorted(k for k, (o, _) in by_key.items() if o > 0), "Django's own clearsessions"
    if kept_djauth != kept_django:
        wrong = sorted(
            (by_key[k][0], by_key[k][1], "kept by djauth only" if k in kept_djauth else "deleted by djauth only")
            for k in set(kept_djauth) ^ set(kept_django))
        env = proj.describe(args, alias="copy")
        pytest.fail(f"{backend}: djauth clearsessions differs from Django's (offset s, expire_date as Django "
                    f"reads it):\n" + "\n".join(map(str, wrong)) + f"\n{env}", pytrace=False)


# ----------------------------------------------------------------------------------------
# 7. Bad DATABASE_URLs
# ----------------------------------------------------------------------------------------

COMMANDS = (["check"], ["migrate"], ["clearsessions"], ["user", "show", "alice"])
_unreachable_cache = {}


def _unreachable_runs(kind):
    """Every command against a database that cannot be reached: [(url, args, seconds,
    DjauthResult)].  PostgreSQL/MariaDB: a port nobody listens on (stopped server) and one that
    accepts but never answers (hung server); SQLite: a file in a missing directory.  All
    backends' commands run concurrently on the first call (each waits out a timeout)."""
    if not _unreachable_cache:
        _unreachable_cache.update(_run_unreachable())
    return _unreachable_cache[kind]


def _run_unreachable():
    import os
    import socket
    import subprocess
    import tempfile

    from djcompat import DJAUTH_BIN, DJAUTH_PROCESS_TZ, DjauthResult

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    hung_port, stopped = hung.getsockname()[1], dbfixtures.dbservers.free_port()
    tmp = tempfile.mkdtemp(prefix="djauth-unreachable-")
    urls = {
        "postgres": [f"postgres://postgres@127.0.0.1:{p}/postgres" for p in (stopped, hung_port)],
        "mysql": [f"mysql://root@127.0.0.1:{p}/mysql" for p in (stopped, hung_port)],
        "sqlite": [f"sqlite://{tmp}/no/such/dir/db.sqlite3"],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJAUTH_")}
    env.update(TZ=DJAUTH_PROCESS_TZ, DJAUTH_SECRET_KEY="k")
    procs = []
    try:
        for kind, kind_urls in urls.items():
            for url in kind_urls:
                for args in COMMANDS:
                    p = subprocess.Popen([str(DJAUTH_BIN), *args], env=dict(env, DATABASE_URL=url),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    procs.append((kind, url, args, time.monotonic(), p))
        out = {k: [] for k in urls}
        for kind, url, args, t0, p in procs:
            try:
                o, e = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                o, e = p.communicate()
            out[kind].append((url, args, time.monotonic() - t0,
                              DjauthResult(p.returncode, o.decode("utf-8", "replace"), e.decode("utf-8", "replace"))))
    finally:
        hung.close()
    return out


@pytest.mark.parametrize("kind", BACKENDS)
def test_unreachable_database_fails_fast(kind):
    for url, args, took, res in _unreachable_runs(kind):
        what = f"DATABASE_URL={url} djauth {' '.join(args)}"
        assert "panicked at" not in res.stderr, f"{what}: {res}"
        assert res.rc == 1, f"{what}: {res}"
        assert took < 10, f"{what} took {took:.1f} s: {res}"
        text = (res.stdout + res.stderr).lower()
        assert "cannot connect to the database" in text or "unable to open" in text, f"{what}: {res}"


@pytest.mark.parametrize("kind", BACKENDS)
def test_unreachable_database_message_is_one_line(kind):
    bad = []
    for url, args, _took, res in _unreachable_runs(kind):
        msg = res.stderr.rstrip("\n")
        if not msg or "\n" in msg:
            bad.append(f"DATABASE_URL={url} djauth {' '.join(args)}: stderr={res.stderr!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("url", ["redis://127.0.0.1/0", "mongodb://127.0.0.1/db", "sqlite3:///tmp/x.db",
                                 "http://127.0.0.1/", "postgres+psycopg://u@127.0.0.1/db", "/tmp/db.sqlite3"])
def test_unknown_database_scheme_is_a_usage_error(url):
    for args in (["check"], ["migrate"], ["clearsessions"], ["user", "show", "alice"]):
        res = run_djauth(*args, env={"DATABASE_URL": url, "DJAUTH_SECRET_KEY": "k"}, timeout=30)
        assert res.rc == 2, (args, url, res)
        msg = res.stderr.strip()
        assert msg and "\n" not in msg and ("DATABASE_URL" in msg or "scheme" in msg), (args, url, res)

"""The Django side of test_database.py: a real Django project, in its own process.

    python django_side.py PROJECT_DIR           # one JSON command on stdin -> one JSON answer
    python django_side.py PROJECT_DIR --serve   # JSON lines in -> JSON lines out, until EOF

PROJECT_DIR holds the settings module ``djside_settings.py`` (written by dbfixtures.py: its own
DATABASES, AUTH_USER_MODEL, PASSWORD_HASHERS, ...) and any app it installs (``accounts/``).
Django can be configured once per process, and the format tests' conftest.py configures it
with an in-memory SQLite database, so database tests talk to Django through this script.

A command is ``{"op": NAME, ...arguments}``; the answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "...", "traceback": "..."}``.  Anything Django prints goes to stderr:
stdout carries answers only.
"""

import io
import json
import os
import sys
import traceback
from datetime import timedelta


def _setup(project_dir):
    sys.path.insert(0, os.path.abspath(project_dir))
    os.environ["DJANGO_SETTINGS_MODULE"] = "djside_settings"
    try:
        import MySQLdb  # noqa: F401  (mysqlclient, if installed)
    except ImportError:
        try:
            import pymysql

            pymysql.install_as_MySQLdb()
        except ImportError:
            pass
    import warnings

    warnings.filterwarnings("ignore")
    import django

    django.setup()


# ----------------------------------------------------------------------------------------
# operations
# ----------------------------------------------------------------------------------------

def _user_model():
    from django.contrib.auth import get_user_model

    return get_user_model()


def _pk_string(user):
    return user._meta.pk.value_to_string(user)


def _dt(v):
    return None if v is None else v.isoformat()


def _user_dict(user):
    User = type(user)
    fields = {f.name for f in User._meta.concrete_fields}
    out = {"pk": _pk_string(user), "password": user.password, "username": user.get_username()}
    for name in ("email", "first_name", "last_name", "is_active", "is_staff", "is_superuser"):
        if name in fields:
            out[name] = getattr(user, name)
    for name in ("last_login", "date_joined"):
        if name in fields:
            out[name] = _dt(getattr(user, name))
    return out


def _get_user(pk=None, username=None):
    User = _user_model()
    if pk is not None:
        return User._default_manager.get(pk=User._meta.pk.to_python(pk))
    return User._default_manager.get_by_natural_key(username)


def op_call_command(args, kwargs=None):
    """``manage.py <args>``: rc, stdout, stderr (SystemExit and CommandError become rc)."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    out, err = io.StringIO(), io.StringIO()
    rc = 0
    try:
        call_command(*args, stdout=out, stderr=err, **(kwargs or {}))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except CommandError as e:
        rc = getattr(e, "returncode", 1)
        err.write(f"CommandError: {e}\n")
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def op_create_user(username, password=None, extra=None, superuser=False):
    """UserManager.create_user / create_superuser; ``username`` is the USERNAME_FIELD value."""
    User = _user_model()
    fields = dict(extra or {})
    fields[User.USERNAME_FIELD] = username
    mgr = User._default_manager
    if superuser:
        user = mgr.create_superuser(password=password, **fields)
    else:
        user = mgr.create_user(password=password, **fields)
    return _user_dict(user)


def op_user(pk=None, username=None):
    User = _user_model()
    try:
        return _user_dict(_get_user(pk, username))
    except User.DoesNotExist:
        return None


def op_update_user(pk, fields):
    """QuerySet.update (no signals, no save()): set raw column values, e.g. a stored hash."""
    User = _user_model()
    n = User._default_manager.filter(pk=User._meta.pk.to_python(pk)).update(**fields)
    return n


def op_make_password(password, algorithm, salt=None, iterations=None):
    """An encoded hash made by one of Django's hashers, listed in PASSWORD_HASHERS or not."""
    from django.contrib.auth import hashers

    for obj in vars(hashers).values():
        if (isinstance(obj, type) and issubclass(obj, hashers.BasePasswordHasher)
                and getattr(obj, "algorithm", None) == algorithm):
            h = obj()
            break
    else:
        raise ValueError(f"no hasher {algorithm!r} in this Django")
    salt = salt or h.salt()
    if iterations is not None:
        return h.encode(password, salt, iterations)
    return h.encode(password, salt)


def op_authenticate(username, password):
    """django.contrib.auth.authenticate(): the user (with the stored hash after it) or None."""
    from django.contrib.auth import authenticate

    user = authenticate(None, username=username, password=password)
    return None if user is None else _user_dict(_get_user(pk=_pk_string(user)))


def op_check_password(pk, password):
    """user.check_password (which rehashes and saves when must_update)."""
    user = _get_user(pk=pk)
    return {"valid": user.check_password(password), "user": _user_dict(_get_user(pk=pk))}


def op_build_world(groups, users, group_perms, user_perms, memberships):
    """Create groups, users and their permission assignments from a plan.

    groups: [name]; users: [{username, is_active, is_superuser}]; group_perms: {group: [perm]};
    user_perms: {username: [perm]}; memberships: {username: [group]}; perm = "app_label.codename"
    of an existing Permission.  Returns {username: pk}.
    """
    from django.contrib.auth.models import Group, Permission

    def perm_obj(p):
        app, codename = p.split(".", 1)
        return Permission.objects.get(content_type__app_label=app, codename=codename)

    gobjs = {name: Group.objects.create(name=name) for name in groups}
    for g, perms in group_perms.items():
        gobjs[g].permissions.add(*[perm_obj(p) for p in perms])
    User = _user_model()
    pks = {}
    for u in users:
        extra = {k: u[k] for k in ("is_active", "is_superuser", "is_staff") if k in u}
        user = User._default_manager.create_user(**{User.USERNAME_FIELD: u["username"]}, password=u.get("password"), **extra)
        pks[u["username"]] = _pk_string(user)
        if user_perms.get(u["username"]):
            user.user_permissions.add(*[perm_obj(p) for p in user_perms[u["username"]]])
        if memberships.get(u["username"]):
            user.groups.add(*[gobjs[g] for g in memberships[u["username"]]])
    return pks


def op_create_permissions(perms, using="default"):
    """Permission rows (content types created as needed): [[app_label, model, codename, name]].
    Returns [[content_type_id, permission_id]] in input order."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    out = []
    for app, model, codename, name in perms:
        ct, _ = ContentType.objects.db_manager(using).get_or_create(app_label=app, model=model)
        perm, _ = Permission.objects.db_manager(using).get_or_create(
            content_type=ct, codename=codename, defaults={"name": name}
        )
        out.append([ct.pk, perm.pk])
    ContentType.objects.clear_cache()
    return out


def op_all_permissions():
    from django.contrib.auth.models import Permission

    return sorted(
        f"{a}.{c}" for a, c in Permission.objects.values_list("content_type__app_label", "codename")
    )


def op_perms(pk, perms, modules):
    """ModelBackend's answers for one user (fetched fresh: no permission caches)."""
    from django.contrib.auth.backends import ModelBackend

    user = _get_user(pk=pk)
    backend = ModelBackend()
    return {
        "user_permissions": sorted(backend.get_user_permissions(user)),
        "group_permissions": sorted(backend.get_group_permissions(user)),
        "all_permissions": sorted(user.get_all_permissions()),
        "get_user_permissions": sorted(user.get_user_permissions()) if hasattr(user, "get_user_permissions") else None,
        "get_group_permissions": sorted(user.get_group_permissions()),
        "has_perm": {p: user.has_perm(p) for p in perms},
        "has_perms": user.has_perms(perms),
        "has_module_perms": {m: user.has_module_perms(m) for m in modules},
    }


def op_add_user_permission(pk, perm):
    from django.contrib.auth.models import Permission

    app, codename = perm.split(".", 1)
    user = _get_user(pk=pk)
    user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return True


def op_sql(query, params=None, using="default"):
    """Raw SQL through Django's connection; rows as lists (non-JSON values as str)."""
    from django.db import connections

    with connections[using].cursor() as cur:
        cur.execute(query, params or [])
        if cur.description is None:
            return cur.rowcount
        rows = cur.fetchall()

    def conv(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (bytes, memoryview)):
            return bytes(v).hex()
        return str(v)

    return [[conv(v) for v in row] for row in rows]


def op_table_rows(using="default"):
    """The rows migrate writes: content types, permissions, applied migrations (no timestamps)."""
    from django.db import connections

    conn = connections[using]
    q = conn.ops.quote_name
    out = {}
    with conn.cursor() as cur:
        cur.execute(f"SELECT {q('id')}, {q('app_label')}, {q('model')} FROM {q('django_content_type')} ORDER BY {q('id')}")
        out["django_content_type"] = [list(r) for r in cur.fetchall()]
        cur.execute(
            f"SELECT {q('id')}, {q('content_type_id')}, {q('codename')}, {q('name')} FROM {q('auth_permission')} ORDER BY {q('id')}"
        )
        out["auth_permission"] = [list(r) for r in cur.fetchall()]
        cur.execute(f"SELECT {q('id')}, {q('app')}, {q('name')} FROM {q('django_migrations')} ORDER BY {q('id')}")
        out["django_migrations"] = [list(r) for r in cur.fetchall()]
    return out


def op_dump(using="default", skip=("djauth_", "__diesel_schema_migrations")):
    """Every row of every table (except names starting with ``skip``), sorted."""
    from django.db import connections

    conn = connections[using]
    q = conn.ops.quote_name
    out = {}
    with conn.cursor() as cur:
        for table in sorted(conn.introspection.table_names(cur)):
            if table.startswith(tuple(skip)):
                continue
            cur.execute(f"SELECT * FROM {q(table)}")
            cols = [d[0] for d in cur.description]
            rows = sorted([repr(v) for v in row] for row in cur.fetchall())
            out[table] = {"columns": cols, "rows": rows}
    return out


def op_natural_rows(using="default"):
    """table_rows by natural key, ids left out: content types and permissions sorted,
    migrations in the order they were applied."""
    from django.db import connections

    conn = connections[using]
    q = conn.ops.quote_name
    out = {}
    with conn.cursor() as cur:
        cur.execute(f"SELECT {q('app_label')}, {q('model')} FROM {q('django_content_type')}")
        out["django_content_type"] = sorted(list(r) for r in cur.fetchall())
        cur.execute(
            f"SELECT ct.{q('app_label')}, ct.{q('model')}, p.{q('codename')}, p.{q('name')} "
            f"FROM {q('auth_permission')} p JOIN {q('django_content_type')} ct ON ct.{q('id')} = p.{q('content_type_id')}"
        )
        out["auth_permission"] = sorted(list(r) for r in cur.fetchall())
        cur.execute(f"SELECT {q('app')}, {q('name')} FROM {q('django_migrations')} ORDER BY {q('id')}")
        out["django_migrations"] = [list(r) for r in cur.fetchall()]
    return out


def op_tables(using="default"):
    from django.db import connections

    conn = connections[using]
    with conn.cursor() as cur:
        return sorted(conn.introspection.table_names(cur))


def op_create_sessions(sessions):
    """Sessions saved through SessionStore; each {"offset": seconds from now, "data": {...}}.
    Returns [[session_key, expire_date iso]] in input order."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    now = timezone.now()
    out = []
    for s in sessions:
        store = SessionStore()
        for k, v in (s.get("data") or {}).items():
            store[k] = v
        store.set_expiry(now + timedelta(seconds=s["offset"]))
        store.save(must_create=True)
        out.append([store.session_key, str(store.get_expiry_date())])
    return out


def op_session_rows(using="default"):
    from django.contrib.sessions.models import Session

    return sorted(
        [s.session_key, s.session_data, s.expire_date.isoformat()] for s in Session.objects.using(using).all()
    )


def op_insert_session_rows(rows, using="default"):
    """Copy rows as op_session_rows returned them (same key, data and expire_date)."""
    from datetime import datetime

    from django.contrib.sessions.models import Session

    Session.objects.using(using).bulk_create(
        Session(session_key=k, session_data=d, expire_date=datetime.fromisoformat(e)) for k, d, e in rows
    )
    return len(rows)


def op_exec(code, args=None):
    """Escape hatch: run ``code`` with ``args`` in scope; returns its ``result`` variable."""
    ns = {"args": args or {}}
    exec(code, ns)
    return ns.get("result")


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def handle(cmd):
    try:
        cmd = dict(cmd)
        fn = OPS[cmd.pop("op")]
        result = fn(**cmd)
        json.dumps(result)  # fail here, with the traceback, if it does not serialise
        return {"ok": True, "result": result}
    except BaseException as e:  # noqa: BLE001  (report everything to the test)
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # Django's chatter must not mix with the answers
    try:
        _setup(argv[1])
    except BaseException as e:  # noqa: BLE001
        answers.write(json.dumps({"ok": False, "error": f"setup: {type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc()}) + "\n")
        answers.flush()
        return 1
    if "--serve" in argv[2:]:
        answers.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
        answers.flush()
        for line in sys.stdin:
            if not line.strip():
                continue
            answers.write(json.dumps(handle(json.loads(line))) + "\n")
            answers.flush()
        return 0
    answers.write(json.dumps(handle(json.load(sys.stdin))) + "\n")
    answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

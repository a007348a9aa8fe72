"""Receivers: index db sessions at login, forget them at logout, and end all of a user's db
sessions when Django changes their password, deactivates or deletes them."""

from . import index

WATCHED = ("password", "is_active")


def user_id_of(user):
    """What django.contrib.auth.login() stores as the session's _auth_user_id."""
    return user._meta.pk.value_to_string(user)


def record_login(sender, request=None, user=None, **kwargs):
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if not index.db_sessions() or not key or user is None:
        return
    ip = request.META.get("REMOTE_ADDR") or None
    if ip is not None and len(ip) > index.MAX_IP:
        ip = None  # not an address (a proxy list?): unknown rather than cut
    user_agent = request.META.get("HTTP_USER_AGENT", "")[: index.MAX_USER_AGENT] or None
    index.record_login(key, user_id_of(user), ip, user_agent)


def forget_session(sender, request=None, **kwargs):
    key = getattr(getattr(request, "session", None), "session_key", None)
    if index.db_sessions() and key:
        index.forget_session(key)


def remember_state(sender, instance, update_fields=None, using=None, **kwargs):
    """pre_save: the stored password and is_active, when this save may change them."""
    instance.__dict__.pop("_djauth_before", None)
    if instance.pk is None or not index.db_sessions():
        return
    fields = [
        f.attname
        for f in sender._meta.concrete_fields
        if f.name in WATCHED and (update_fields is None or f.name in update_fields)
    ]
    if fields:
        rows = sender._base_manager.using(using).filter(pk=instance.pk).values(*fields)
        instance._djauth_before = rows.first()


def end_sessions_if_changed(sender, instance, created=False, **kwargs):
    """post_save: a new password or a deactivation ends the user's db sessions.  A view that
    keeps its user logged in (update_session_auth_hash) makes a new session afterwards."""
    before = instance.__dict__.pop("_djauth_before", None)
    if created or not before:
        return
    password_changed = "password" in before and before["password"] != instance.password
    deactivated = bool(before.get("is_active")) and not instance.is_active
    if password_changed or deactivated:
        index.end_user_sessions(user_id_of(instance))


def end_sessions_of_deleted(sender, instance, **kwargs):
    if index.db_sessions():
        index.end_user_sessions(user_id_of(instance))

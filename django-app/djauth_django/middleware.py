"""RevokedSessionMiddleware: signed-cookie sessions have no row to delete, so djauth records
per user a second (djauth_user_not_before.not_before) at or before which a cookie signed
for that user is refused.  Place it after AuthenticationMiddleware.  With any other session
engine it does nothing and makes no query."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.core import signing

from . import index

SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


def cookie_timestamp(request):
    """The TimestampSigner second of the request's signed session cookie, or None (another
    engine, no cookie, not a signed value)."""
    if settings.SESSION_ENGINE != SIGNED_COOKIES:
        return None
    cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    parts = cookie.rsplit(":", 2) if cookie else ()  # payload:TIMESTAMP:signature
    if len(parts) != 3:
        return None
    try:
        return signing.b62_decode(parts[1])
    except (ValueError, IndexError):
        return None


def refuse_if_revoked(request, signed_at):
    if not request.user.is_authenticated:
        return
    user_id = request.session.get(SESSION_KEY)
    if user_id is None:
        return
    not_before = index.not_before(str(user_id))
    if not_before is not None and signed_at <= not_before:
        request.session.flush()  # SessionMiddleware then deletes the cookie
        anonymous = AnonymousUser()
        request.user = anonymous
        if hasattr(request, "auser"):  # Django >= 5.0

            async def auser():
                return anonymous

            request.auser = auser


class RevokedSessionMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        signed_at = cookie_timestamp(request)
        if signed_at is not None:
            refuse_if_revoked(request, signed_at)
        return self.get_response(request)

    async def __acall__(self, request):
        signed_at = cookie_timestamp(request)
        if signed_at is not None:
            await sync_to_async(refuse_if_revoked)(request, signed_at)
        return await self.get_response(request)

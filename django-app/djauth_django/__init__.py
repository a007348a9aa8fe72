"""Django side of djauth's user-to-session index (djauth issue 5).

Add ``"djauth_django"`` to INSTALLED_APPS and, for the signed-cookie session engine,
``"djauth_django.middleware.RevokedSessionMiddleware"`` after AuthenticationMiddleware.
The tables are djauth's: ``djauth migrate`` creates them.
"""

__version__ = "0.1.0"

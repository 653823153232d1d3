"""The FastAPI application: routes, dependencies and the error → status table.

Build it with :func:`create_app`; nothing is created at import time.
"""

from api.app import create_app

__all__ = ["create_app"]

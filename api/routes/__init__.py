"""Route modules; each exposes ``router`` and is included by :func:`api.create_app`."""

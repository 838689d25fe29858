"""The server's domain operations; the REST API (``api/``) and the dashboard
(``web/``) both call them. ``errors`` holds what they raise when they refuse
an operation; they import nothing from FastAPI or Starlette, ``api`` or ``web``.
"""

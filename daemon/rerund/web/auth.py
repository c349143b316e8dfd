"""The token rule shared by the routes outside ``api.py``: mutations need the bearer token."""

from __future__ import annotations

import hmac

from aiohttp import web


def refuse_without_token(request: web.Request, token: str | None) -> web.Response | None:
    """An error response unless the request carries the configured bearer token."""
    if token is None:
        return _error(403, "no API token is configured (http.token); mutating endpoints are off")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return _error(401, "send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given[7:].encode(), token.encode()):
        return _error(403, "wrong token")
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)

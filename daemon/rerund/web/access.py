"""Who may do what over HTTP (SPEC §6, §7): the token rules, in one place.

Mutating endpoints need ``http.token``. Reading job details and logs needs
``http.read_token`` or ``http.token`` once either is set; without them reading
stays open. Logs can hold what a step printed about the data, so the shipped
configuration names a token file.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from rerund.settings import Settings


def refuse_reader(request: web.Request, settings: Settings) -> web.Response | None:
    """An error response unless the request may read job details; None when it may."""
    tokens = [token for token in (settings.read_token, settings.api_token) if token]
    if not tokens:
        return None
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return web.json_response(
            {"error": "job details and logs need 'Authorization: Bearer <token>'"}, status=401
        )
    if not any(hmac.compare_digest(given[7:].encode(), token.encode()) for token in tokens):
        return web.json_response({"error": "wrong token"}, status=403)
    return None


def refuse_writer(request: web.Request, token: str | None) -> web.Response | None:
    """An error response unless the request carries the bearer token of mutating endpoints."""
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

"""Who may read job details and logs (SPEC §7): the token holders, once a token is set.

``http.read_token`` guards reading; ``http.token`` (the mutating endpoints'
token) reads too. Without either, reading stays open as before. Logs can hold
what a step printed about the data, so the shipped configuration sets a token.
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

"""Deliveries signed the way the forges sign them, independently of rerund's own ``sign()``.

Tests that checked rerund's verifier only against rerund's signer would pass with
any hash both share; these headers come from :mod:`hmac` and the forges' documented
header layout alone, so a wrong algorithm or encoding in rerund fails them.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid


def hex_hmac_sha256(secret: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret`` (UTF-8)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def forge_headers(
    provider: str, body: bytes, secret: str, *, event: str | None = None
) -> dict[str, str]:
    """The headers ``provider`` sends with ``body``: event, a fresh delivery id, proof of secret.

    GitHub: ``X-Hub-Signature-256: sha256=<hex>``. GitLab: ``X-Gitlab-Token: <secret>``.
    Gitea: ``X-Gitea-Signature: <hex>``. Forgejo: ``X-Forgejo-Signature`` and, as it
    does for compatibility, the Gitea names too.
    """
    delivery = str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    if provider == "github":
        return {
            **headers,
            "X-GitHub-Event": event or "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + hex_hmac_sha256(secret, body),
        }
    if provider == "gitlab":
        return {
            **headers,
            "X-Gitlab-Event": event or "Push Hook",
            "X-Gitlab-Token": secret,
            "X-Gitlab-Event-UUID": delivery,
            "Idempotency-Key": str(uuid.uuid4()),
        }
    if provider not in ("gitea", "forgejo"):
        raise ValueError(f"no such forge: {provider}")
    prefixes = ("Forgejo", "Gitea") if provider == "forgejo" else ("Gitea",)
    for prefix in prefixes:
        headers[f"X-{prefix}-Event"] = event or "push"
        headers[f"X-{prefix}-Delivery"] = delivery
        headers[f"X-{prefix}-Signature"] = hex_hmac_sha256(secret, body)
    return headers

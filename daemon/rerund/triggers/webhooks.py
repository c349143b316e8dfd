"""Push webhooks from GitHub, GitLab, Gitea and Forgejo: verified, then parsed.

Pure functions over a delivery's headers and raw body, with no I/O and no web
framework, so the HTTP handler, the tests and the benchmark's load generator
share one implementation. Call :func:`verify` first and :func:`parse` only when
it passes: nothing in a body is believed before its signature holds.

How each forge authenticates a delivery, and names its event and delivery id:

- GitHub: ``X-Hub-Signature-256: sha256=<hex>``; ``X-GitHub-Event``,
  ``X-GitHub-Delivery``.
- GitLab: ``X-Gitlab-Token`` carries the secret itself, no HMAC; ``X-Gitlab-Event``
  (``Push Hook``, ``Tag Push Hook``, ``System Hook``), ``Idempotency-Key`` (17.4+,
  kept across retries) or else ``X-Gitlab-Event-UUID`` (14.8+).
- Gitea: ``X-Gitea-Signature: <hex>``; ``X-Gitea-Event``, ``X-Gitea-Delivery``.
- Forgejo: ``X-Forgejo-Signature: <hex>``; ``X-Forgejo-Event``, ``X-Forgejo-Delivery``.
  It sends every Gitea header too, so older releases without the ``X-Forgejo-*``
  names are read through those.

``<hex>`` is the lowercase hex HMAC-SHA256 of the raw body keyed with the shared
secret. GitLab's token proves who sent a delivery but not that its body arrived
unaltered; TLS has to cover that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard
from urllib.parse import parse_qs

from rerund.errors import ConfigError, RerundError

Provider = Literal["github", "gitlab", "gitea", "forgejo"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "gitea", "forgejo")

# GitHub caps a delivery at 25 MB. A push body is the ref, two commit ids and, per
# pushed commit, the paths it added, removed and modified: small, except that one
# DataLad save of ten thousand files can alone take about a megabyte. 5 MiB leaves
# room for several of those in one push while bounding what a forged request can
# make the daemon hash and parse. The HTTP layer passes ``[http] max_body_bytes``
# (same default) as ``max_bytes``, so sites that push bigger batches can raise it.
MAX_BODY_BYTES = 5 * 1024 * 1024

_HEADS = "refs/heads/"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


class WebhookError(RerundError):
    """A delivery that is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PushEvent:
    """One ref moved on a forge.

    Test buttons send pushes too: Gitea's and Forgejo's name the default branch with
    ``before == after``, all zeros, so such a push is ``created`` and ``deleted`` at
    once and leaves nothing to rerun.
    """

    provider: Provider
    delivery_id: str | None
    """The forge's id for this delivery, for deduplication; None if it sent none."""
    ref: str
    """The full ref name, e.g. ``refs/heads/main``."""
    before: str
    """The commit the ref pointed at before the push; all zeros when it was created."""
    after: str
    """The commit the ref points at now; all zeros when it was deleted."""
    repository: str
    """The repository as the forge names it (``owner/name``, ``group/sub/project``)."""
    pusher: str | None = None
    """The account the forge authenticated for the push (GitHub ``sender.login`` or
    ``pusher.name``, GitLab ``user_username``, Gitea/Forgejo ``pusher.login``)."""

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...``; None for tags and other refs."""
        return self.ref.removeprefix(_HEADS) if self.ref.startswith(_HEADS) else None

    @property
    def created(self) -> bool:
        return _is_null(self.before)

    @property
    def deleted(self) -> bool:
        return _is_null(self.after)


@dataclass(frozen=True)
class Ping:
    """A forge checking that the endpoint answers (GitHub's ``ping``)."""

    provider: Provider
    delivery_id: str | None


@dataclass(frozen=True)
class Ignored:
    """A verified delivery about something other than a push: acknowledged, not acted on."""

    provider: Provider
    delivery_id: str | None
    event: str


@dataclass(frozen=True)
class _Forge:
    auth_headers: tuple[str, ...]
    """Checked in order; the first one present and non-empty is the one that must hold."""
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    push_events: frozenset[str]
    ping_events: frozenset[str]
    repository_field: tuple[str, str]


_GITEA = _Forge(
    auth_headers=("X-Gitea-Signature",),
    event_headers=("X-Gitea-Event",),
    delivery_headers=("X-Gitea-Delivery",),
    push_events=frozenset({"push"}),
    ping_events=frozenset(),
    repository_field=("repository", "full_name"),
)

_FORGES: dict[str, _Forge] = {
    "github": _Forge(
        auth_headers=("X-Hub-Signature-256",),
        event_headers=("X-GitHub-Event",),
        delivery_headers=("X-GitHub-Delivery",),
        push_events=frozenset({"push"}),
        ping_events=frozenset({"ping"}),
        repository_field=("repository", "full_name"),
    ),
    "gitlab": _Forge(
        auth_headers=("X-Gitlab-Token",),
        event_headers=("X-Gitlab-Event",),
        # Idempotency-Key (GitLab 17.4+) stays the same when a delivery is retried;
        # X-Gitlab-Event-UUID (14.8+) is what older instances send.
        delivery_headers=("Idempotency-Key", "X-Gitlab-Event-UUID"),
        push_events=frozenset({"Push Hook", "Tag Push Hook", "System Hook"}),
        ping_events=frozenset(),
        repository_field=("project", "path_with_namespace"),
    ),
    "gitea": _GITEA,
    "forgejo": _Forge(
        auth_headers=("X-Forgejo-Signature", *_GITEA.auth_headers),
        event_headers=("X-Forgejo-Event", *_GITEA.event_headers),
        delivery_headers=("X-Forgejo-Delivery", *_GITEA.delivery_headers),
        push_events=_GITEA.push_events,
        ping_events=_GITEA.ping_events,
        repository_field=_GITEA.repository_field,
    ),
}

# What GitLab's object_kind says for each push-like X-Gitlab-Event.
_GITLAB_KINDS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}


def is_provider(name: str) -> TypeGuard[Provider]:
    """Whether ``name`` (e.g. from a URL path) is a provider this module knows."""
    return name in _FORGES


def verify(
    provider: Provider,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    max_bytes: int = MAX_BODY_BYTES,
) -> None:
    """Raise :class:`WebhookError` unless the delivery carries proof of ``secret``.

    401 when the signature or token header is missing or empty, 403 when it is
    wrong, 413 when the body is over ``max_bytes``. Comparisons take constant time.
    An empty ``secret`` would let anyone sign, so it is a :class:`ConfigError`.
    """
    forge = _forge(provider)
    _check_size(body, max_bytes)
    if not secret:
        raise ConfigError(f"the {provider} webhook secret is empty, which would accept anyone")
    found = _first(_lowered(headers), forge.auth_headers)
    if found is None:
        raise WebhookError(
            f"{forge.auth_headers[0]} header is missing or empty"
            " (is a secret set on the forge's webhook?)",
            401,
        )
    name, given = found
    if provider == "gitlab":
        if not hmac.compare_digest(_utf8(given), _utf8(secret)):
            raise WebhookError(f"{name} does not match the configured token", 403)
        return
    if provider == "github":
        if not given.startswith("sha256="):
            raise WebhookError(f"{name} must read 'sha256=<hex digest>'", 403)
        given = given.removeprefix("sha256=")
    if not hmac.compare_digest(_utf8(given.lower()), _utf8(_digest(secret, body))):
        raise WebhookError(
            f"{name} does not match the body (wrong secret, or the body was altered)", 403
        )


def parse(
    provider: Provider,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_bytes: int = MAX_BODY_BYTES,
) -> PushEvent | Ping | Ignored:
    """What a verified delivery says; :class:`WebhookError` (400, 413) if it is broken."""
    forge = _forge(provider)
    _check_size(body, max_bytes)
    lowered = _lowered(headers)
    delivery = _first(lowered, forge.delivery_headers)
    delivery_id = delivery[1] if delivery else None
    found = _first(lowered, forge.event_headers)
    if found is None:
        raise WebhookError(f"{forge.event_headers[0]} header is missing or empty", 400)
    event = found[1]
    if event in forge.ping_events:
        return Ping(provider, delivery_id)
    if event not in forge.push_events:
        return Ignored(provider, delivery_id, event)
    payload = _payload(body, lowered)
    if provider == "gitlab":
        kind = payload.get("object_kind")
        if event == "System Hook":
            # An instance-wide system hook: pushes in every project, among other events.
            if kind not in ("push", "tag_push"):
                detail = kind if isinstance(kind, str) else payload.get("event_name")
                named = f"{event}: {detail}" if isinstance(detail, str) else event
                return Ignored(provider, delivery_id, named)
        elif kind is not None and kind != _GITLAB_KINDS[event]:
            raise WebhookError(
                f"field 'object_kind' is {_shorten(kind)} but X-Gitlab-Event is {event!r}", 400
            )
    ref = _ref(payload)
    before = _object_id(payload, "before")
    after = _object_id(payload, "after")
    if len(before) != len(after):
        raise WebhookError("fields 'before' and 'after' are commit ids of different lengths", 400)
    return PushEvent(
        provider=provider,
        delivery_id=delivery_id,
        ref=ref,
        before=before,
        after=after,
        repository=_string(payload, *forge.repository_field),
        pusher=_pusher(provider, payload),
    )


def sign(
    provider: Provider, body: bytes, secret: str, *, event: str | None = None
) -> dict[str, str]:
    """The headers the forge would send with ``body``: event, fresh delivery id, signature.

    ``event`` defaults to the forge's push event (``push``, or ``Push Hook`` on GitLab).
    For tests and for the benchmark's load generator.
    """
    _forge(provider)
    json_type = {"Content-Type": "application/json"}
    if provider == "github":
        return {
            **json_type,
            "X-GitHub-Event": event or "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={_digest(secret, body)}",
        }
    if provider == "gitlab":
        return {
            **json_type,
            "X-Gitlab-Event": event or "Push Hook",
            "X-Gitlab-Token": secret,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Idempotency-Key": str(uuid.uuid4()),
        }
    # Gitea and Forgejo sign once and send the result under every name they
    # answer to, GitHub's included (services/webhook/shared/payloader.go).
    name, delivery, digest = event or "push", str(uuid.uuid4()), _digest(secret, body)
    prefixes = ("Forgejo", "Gitea", "Gogs") if provider == "forgejo" else ("Gitea", "Gogs")
    headers = dict(json_type)
    for prefix in prefixes:
        headers[f"X-{prefix}-Delivery"] = delivery
        headers[f"X-{prefix}-Event"] = name
        headers[f"X-{prefix}-Event-Type"] = name
        headers[f"X-{prefix}-Signature"] = digest
    headers["X-Hub-Signature-256"] = f"sha256={digest}"
    headers["X-GitHub-Delivery"] = delivery
    headers["X-GitHub-Event"] = name
    headers["X-GitHub-Event-Type"] = name
    return headers


def _forge(provider: str) -> _Forge:
    try:
        return _FORGES[provider]
    except KeyError:
        raise ValueError(f"unknown webhook provider {provider!r}") from None


def _check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise WebhookError(f"body is {len(body)} bytes, over the limit of {max_bytes}", 413)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names folded to lower case (HTTP names are case-insensitive)."""
    return {name.lower(): value.strip() for name, value in headers.items()}


def _first(lowered: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` with a non-empty value, as ``(name, value)``."""
    for name in names:
        if value := lowered.get(name.lower()):
            return name, value
    return None


def _utf8(text: str) -> bytes:
    # surrogatepass: header values decoded with surrogateescape still compare as bytes.
    return text.encode("utf-8", "surrogatepass")


def _digest(secret: str, body: bytes) -> str:
    return hmac.new(_utf8(secret), body, hashlib.sha256).hexdigest()


def _payload(body: bytes, lowered: Mapping[str, str]) -> dict[str, object]:
    """The body as a JSON object, from ``application/json`` or a form's ``payload`` field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookError(f"body is not UTF-8 (byte {exc.start})", 400) from None
    media_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (_JSON, _FORM):  # forges send one of these; nothing else is read
        raise WebhookError(f"content type must be {_JSON} or {_FORM}, not {media_type!r}", 415)
    if media_type == _FORM:
        # GitHub's and Gitea's other content type: payload=<url-encoded JSON>.
        try:
            fields = parse_qs(text, strict_parsing=True, errors="strict", max_num_fields=100)
        except (ValueError, UnicodeDecodeError):
            raise WebhookError("form body is not valid url-encoding", 400) from None
        values = fields.get("payload", [])
        if len(values) != 1:
            raise WebhookError("form body must carry exactly one 'payload' field", 400)
        text = values[0]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookError(f"body is not valid JSON: {exc}", 400) from None
    except ValueError:  # an integer past sys.get_int_max_str_digits()
        raise WebhookError("body holds a number too long to read", 400) from None
    except RecursionError:
        raise WebhookError("body is nested too deeply to read", 400) from None
    if not isinstance(value, dict):
        raise WebhookError(f"body is {_json_type(value)} in JSON, not an object", 400)
    return value


def _string(payload: Mapping[str, object], *path: str) -> str:
    """The non-empty string at ``path``; a 400 naming the field otherwise."""
    node: object = payload
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            parent = ".".join(path[:depth])
            raise WebhookError(f"field '{parent}' is {_json_type(node)}, not an object", 400)
        if key not in node:
            raise WebhookError(f"field '{'.'.join(path[: depth + 1])}' is missing", 400)
        node = node[key]
    if not isinstance(node, str) or not node:
        got = "an empty string" if node == "" else _json_type(node)
        raise WebhookError(f"field '{'.'.join(path)}' must be a non-empty string, not {got}", 400)
    return node


_PUSHER_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "github": (("sender", "login"), ("pusher", "name")),
    "gitlab": (("user_username",),),
    "gitea": (("pusher", "login"), ("pusher", "username")),
    "forgejo": (("pusher", "login"), ("pusher", "username")),
}


def _pusher(provider: str, payload: Mapping[str, object]) -> str | None:
    """Who pushed, by the forge's account name; None when the payload does not say."""
    for path in _PUSHER_FIELDS[provider]:
        node: object = payload
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
    return None


def _object_id(payload: Mapping[str, object], field: str) -> str:
    value = _string(payload, field).lower()
    if not _OBJECT_ID.fullmatch(value):
        raise WebhookError(
            f"field '{field}' must be a commit id of 40 hex digits (64 in SHA-256"
            f" repositories), not {_shorten(value)}",
            400,
        )
    return value


def _ref(payload: Mapping[str, object]) -> str:
    ref = _string(payload, "ref")
    problem = ref_problem(ref)
    if problem:
        raise WebhookError(f"field 'ref' is not a full ref name ({problem}): {_shorten(ref)}", 400)
    return ref


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not a name ``git check-ref-format`` accepts under ``refs/``."""
    if not ref.startswith("refs/") or ref == "refs/":
        return "must start with 'refs/'"
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char in " ~^:?*[\\" for char in ref):
        return "holds a space, control or special character"
    if ".." in ref or "@{" in ref:
        return "holds '..' or '@{'"
    if ref.endswith((".", "/")):
        return "ends with '.' or '/'"
    for part in ref.split("/"):
        if not part or part.startswith(".") or part.endswith(".lock"):
            return "has an empty part, or one starting with '.' or ending with '.lock'"
    return None


def _is_null(object_id: str) -> bool:
    return not object_id.strip("0")


def _json_type(value: object) -> str:
    """What a decoded JSON value is, in JSON's words and with its article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _shorten(value: object, limit: int = 80) -> str:
    """``repr`` of an untrusted value, cut short so it cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

"""Verifying and parsing push webhooks from GitHub, GitLab, Gitea and Forgejo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_signing import forge_headers, hex_hmac_sha256
from rerund.errors import ConfigError
from rerund.triggers.webhooks import (
    MAX_BODY_BYTES,
    PROVIDERS,
    Ignored,
    Ping,
    Provider,
    PushEvent,
    WebhookError,
    is_provider,
    parse,
    sign,
    verify,
)

# When a property fails, Hypothesis imports libcst to write a patch, and libcst
# trips a DeprecationWarning in mypy_extensions that would mask the failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRET = "It's a Secret to Everybody"  # noqa: S105 (a test secret)
ZEROS = "0" * 40
OLD = "95790bf891e76fee5e1747ab589903a6a1f80f22"
NEW = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
HMAC_PROVIDERS: tuple[Provider, ...] = ("github", "gitea", "forgejo")
MISSING: Any = object()
"""Passed as a field's value to leave the field out of a body."""
SIGNATURE_HEADER = {
    "github": "X-Hub-Signature-256",
    "gitlab": "X-Gitlab-Token",
    "gitea": "X-Gitea-Signature",
    "forgejo": "X-Forgejo-Signature",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def gitlab_push(**changes: Any) -> dict[str, Any]:
    """A push body shaped like the example in GitLab's webhook events documentation."""
    body: dict[str, Any] = {
        "object_kind": "push",
        "event_name": "push",
        "before": OLD,
        "after": NEW,
        "ref": "refs/heads/master",
        "ref_protected": True,
        "checkout_sha": NEW,
        "user_id": 4,
        "user_name": "John Smith",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Diaspora",
            "web_url": "http://example.com/mike/diaspora",
            "namespace": "Mike",
            "path_with_namespace": "mike/diaspora",
            "default_branch": "master",
        },
        "commits": [
            {
                "id": NEW,
                "message": "fixed readme",
                "timestamp": "2012-01-03T23:36:29+02:00",
                "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
                "added": ["CHANGELOG"],
                "modified": ["app/controller/application.rb"],
                "removed": [],
            }
        ],
        "total_commits_count": 1,
        "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"},
    }
    return _apply(body, changes)


def _apply(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    body.update(changes)
    return {key: value for key, value in body.items() if value is not MISSING}


def push_body(provider: Provider, **changes: Any) -> bytes:
    """A minimal push body for ``provider`` with ``changes`` applied."""
    if provider == "gitlab":
        return json.dumps(gitlab_push(**changes)).encode()
    body = {
        "ref": "refs/heads/main",
        "before": OLD,
        "after": NEW,
        "repository": {"full_name": "lab/data"},
    }
    return json.dumps(_apply(body, changes)).encode()


def receive(provider: Provider, body: bytes, **sign_options: Any) -> PushEvent:
    """Sign a push as the forge would, then verify and parse it as the daemon does."""
    return receive_with(provider, body, forge_headers(provider, body, SECRET, **sign_options))


def receive_with(provider: Provider, body: bytes, headers: dict[str, str]) -> PushEvent:
    """Verify and parse a delivery that must turn out to be a push."""
    verify(provider, headers, body, SECRET)
    event = parse(provider, headers, body)
    assert isinstance(event, PushEvent)
    return event


def refusal(provider: Provider, headers: dict[str, str], body: bytes) -> WebhookError:
    """The error that verifying, then parsing, a delivery ends in."""
    with pytest.raises(WebhookError) as info:
        verify(provider, headers, body, SECRET)
        parse(provider, headers, body)
    return info.value


# -- real payloads ------------------------------------------------------------


def test_github_new_branch_fixture_parses() -> None:
    """GitHub's example push creating a branch parses, with created set and before all zeros."""
    body = fixture("github-push-new-branch.json")
    headers = forge_headers("github", body, SECRET)

    event = receive_with("github", body, headers)

    expected = PushEvent(
        provider="github",
        delivery_id=headers["X-GitHub-Delivery"],
        ref="refs/heads/master",
        before=ZEROS,
        after="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        repository="Codertocat/Hello-World",
        pusher="Codertocat",
    )
    assert expected == event
    assert (True, False, "master") == (event.created, event.deleted, event.branch)


def test_github_unix_timestamps_do_not_disturb_parsing() -> None:
    """GitHub's push bodies carry repository.created_at/pushed_at as Unix integers."""
    body = fixture("github-push-new-branch.json")
    repository = json.loads(body)["repository"]
    assert (int, int) == (type(repository["created_at"]), type(repository["pushed_at"]))

    event = receive("github", body)

    assert "Codertocat/Hello-World" == event.repository


def test_gitea_fixture_parses() -> None:
    """Gitea's older push shape (compare_url, no head_commit) parses."""
    body = fixture("gitea-push.json")
    headers = forge_headers("gitea", body, SECRET)

    event = receive_with("gitea", body, headers)

    expected = PushEvent(
        provider="gitea",
        delivery_id=headers["X-Gitea-Delivery"],
        ref="refs/heads/master",
        before="9836a96a253cce25d17988fcf41b8c4205cf779f",
        after="4522cbcefc20728a5b72b3a86af35e608622c514",
        repository="gogits/hello-world",
        pusher="unknwon",
    )
    assert expected == event
    assert (False, False) == (event.created, event.deleted)


def test_forgejo_reads_the_gitea_shape() -> None:
    """Forgejo sends Gitea's body under its own header names and is read the same way."""
    body = fixture("gitea-push.json")
    headers = forge_headers("forgejo", body, SECRET)

    event = receive_with("forgejo", body, headers)

    expected = ("forgejo", headers["X-Forgejo-Delivery"], "gogits/hello-world")
    assert expected == (event.provider, event.delivery_id, event.repository)


# -- GitLab -------------------------------------------------------------------


def test_gitlab_push_parses() -> None:
    """A GitLab push body names the project by path_with_namespace; Idempotency-Key is its id."""
    body = push_body("gitlab")
    headers = forge_headers("gitlab", body, SECRET)

    event = receive_with("gitlab", body, headers)

    expected = PushEvent(
        provider="gitlab",
        delivery_id=headers["Idempotency-Key"],
        ref="refs/heads/master",
        before=OLD,
        after=NEW,
        repository="mike/diaspora",
    )
    assert expected == event


def test_gitlab_delivery_id_falls_back_to_event_uuid() -> None:
    """Before GitLab 17.4 there is no Idempotency-Key, so X-Gitlab-Event-UUID identifies it."""
    body = push_body("gitlab")
    headers = forge_headers("gitlab", body, SECRET)
    del headers["Idempotency-Key"]

    event = receive_with("gitlab", body, headers)

    assert headers["X-Gitlab-Event-UUID"] == event.delivery_id


def test_gitlab_created_branch_has_zero_before() -> None:
    """GitLab marks a new branch with forty zeros in before."""
    event = receive("gitlab", push_body("gitlab", before=ZEROS))

    assert (True, False) == (event.created, event.deleted)


def test_gitlab_tag_push_has_no_branch() -> None:
    """A GitLab Tag Push Hook is a push of a tag: parsed, with no branch."""
    body = push_body("gitlab", object_kind="tag_push", ref="refs/tags/v1.0.0", before=ZEROS)

    event = receive("gitlab", body, event="Tag Push Hook")

    assert ("refs/tags/v1.0.0", None) == (event.ref, event.branch)


def test_gitlab_system_hook_push_parses() -> None:
    """An instance-wide system hook's push is a push like a project hook's."""
    event = receive("gitlab", push_body("gitlab"), event="System Hook")

    assert ("mike/diaspora", "master") == (event.repository, event.branch)


def test_gitlab_system_hook_other_events_are_ignored() -> None:
    """A system hook about something other than a push is acknowledged and ignored."""
    body = json.dumps({"event_name": "project_create", "path_with_namespace": "a/b"}).encode()
    headers = forge_headers("gitlab", body, SECRET, event="System Hook")

    verify("gitlab", headers, body, SECRET)

    expected = Ignored("gitlab", headers["Idempotency-Key"], "System Hook: project_create")
    assert expected == parse("gitlab", headers, body)


def test_gitlab_object_kind_must_match_event_header() -> None:
    """A Push Hook whose body says it is something else is refused as malformed."""
    body = push_body("gitlab", object_kind="merge_request")

    error = refusal("gitlab", forge_headers("gitlab", body, SECRET), body)

    assert 400 == error.status
    assert "object_kind" in str(error)


def test_gitlab_token_does_not_cover_the_body() -> None:
    """GitLab's plain token authenticates the sender only: an altered body still verifies."""
    body = push_body("gitlab")
    headers = forge_headers("gitlab", body, SECRET)

    verify("gitlab", headers, body.replace(b"master", b"other!"), SECRET)


# -- the forges' published test vectors ---------------------------------------

# GitHub's "Validating webhook deliveries" page: this secret and payload give this header.
GITHUB_VECTOR = (
    "It's a Secret to Everybody",
    b"Hello, World!",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
)
# Gitea and Forgejo publish no vector of their own; their header is the bare hex
# HMAC-SHA256 (Gitea's services/webhook/deliver.go), so GitHub's digest and RFC 4231's
# test case 2 for HMAC-SHA256 pin it.
HEX_VECTORS = [
    (GITHUB_VECTOR[0], GITHUB_VECTOR[1], GITHUB_VECTOR[2].removeprefix("sha256=")),
    (
        "Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
]


def test_the_tests_signer_reproduces_the_published_vectors() -> None:
    """The tests' own signer (hmac, not rerund) gives the published digests."""
    assert [digest for *_, digest in HEX_VECTORS] == [
        hex_hmac_sha256(secret, body) for secret, body, _ in HEX_VECTORS
    ]


def test_github_published_vector_verifies_and_is_what_sign_writes() -> None:
    """GitHub's documented X-Hub-Signature-256 passes verify(); sign() writes that very value."""
    secret, body, header = GITHUB_VECTOR

    verify("github", {"X-Hub-Signature-256": header}, body, secret)

    assert header == sign("github", body, secret)["X-Hub-Signature-256"]
    with pytest.raises(WebhookError):
        verify("github", {"X-Hub-Signature-256": header}, body + b"\n", secret)


@pytest.mark.parametrize("provider", ["gitea", "forgejo"])
@pytest.mark.parametrize(("secret", "body", "digest"), HEX_VECTORS)
def test_gitea_and_forgejo_verify_the_published_digests(
    provider: Provider, secret: str, body: bytes, digest: str
) -> None:
    """The published HMAC-SHA256 digests, as bare hex, pass verify(); sign() writes them."""
    header = SIGNATURE_HEADER[provider]

    verify(provider, {header: digest}, body, secret)

    assert digest == sign(provider, body, secret)[header]


def test_gitlab_token_is_the_secret_verbatim() -> None:
    """GitLab sends the configured secret itself as X-Gitlab-Token; anything else is 403."""
    secret, body, _ = GITHUB_VECTOR

    verify("gitlab", {"X-Gitlab-Token": secret}, body, secret)

    assert secret == sign("gitlab", body, secret)["X-Gitlab-Token"]
    with pytest.raises(WebhookError) as info:
        verify("gitlab", {"X-Gitlab-Token": secret.upper()}, body, secret)
    assert 403 == info.value.status


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sign_matches_an_independent_signer(provider: Provider) -> None:
    """rerund's sign() (used by the benchmark) agrees with the tests' hmac-based signer."""
    body = push_body(provider)
    header = SIGNATURE_HEADER[provider]

    assert forge_headers(provider, body, SECRET)[header] == sign(provider, body, SECRET)[header]


# -- signatures ---------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_delivery_verifies(provider: Provider) -> None:
    """What forge_headers() produces passes verify() for every provider."""
    body = push_body(provider)

    verify(provider, forge_headers(provider, body, SECRET), body, SECRET)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_secret_is_forbidden(provider: Provider) -> None:
    """A delivery signed with another secret is answered 403."""
    body = push_body(provider)

    error = refusal(provider, forge_headers(provider, body, "not the secret"), body)

    assert 403 == error.status


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_signature_is_unauthorized(provider: Provider) -> None:
    """A delivery without its signature or token header is answered 401."""
    body = push_body(provider)
    headers = {
        name: value
        for name, value in forge_headers(provider, body, SECRET).items()
        if "signature" not in name.lower() and "token" not in name.lower()
    }

    error = refusal(provider, headers, body)

    assert 401 == error.status
    assert SIGNATURE_HEADER[provider] in str(error)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_signature_is_unauthorized(provider: Provider) -> None:
    """An empty signature header (Gitea sends one when no secret is set) counts as missing."""
    body = push_body(provider)
    headers = forge_headers(provider, body, SECRET)
    for name in list(headers):
        if "signature" in name.lower() or "token" in name.lower():
            headers[name] = ""

    assert 401 == refusal(provider, headers, body).status


@pytest.mark.parametrize("provider", HMAC_PROVIDERS)
def test_tampered_body_is_forbidden(provider: Provider) -> None:
    """Changing the body after signing makes the HMAC signature fail with 403."""
    body = push_body(provider)
    headers = forge_headers(provider, body, SECRET)

    error = refusal(provider, headers, body.replace(b"refs/heads/main", b"refs/heads/evil"))

    assert 403 == error.status


def test_github_signature_needs_its_prefix() -> None:
    """GitHub's header must read sha256=<hex>; the bare digest is refused."""
    body = push_body("github")
    headers = forge_headers("github", body, SECRET)
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")

    error = refusal("github", headers, body)

    assert 403 == error.status
    assert "sha256=" in str(error)


def test_gitea_signature_is_bare_hex() -> None:
    """Gitea's X-Gitea-Signature is the bare hex digest; a sha256= prefix does not match."""
    body = push_body("gitea")
    headers = forge_headers("gitea", body, SECRET)
    assert 64 == len(headers["X-Gitea-Signature"])
    headers["X-Gitea-Signature"] = "sha256=" + headers["X-Gitea-Signature"]

    assert 403 == refusal("gitea", headers, body).status


def test_forgejo_falls_back_to_the_gitea_signature() -> None:
    """A Forgejo delivery without X-Forgejo-* headers verifies through the Gitea ones."""
    body = push_body("forgejo")
    headers = {
        name: value
        for name, value in forge_headers("forgejo", body, SECRET).items()
        if not name.startswith("X-Forgejo-")
    }

    event = receive_with("forgejo", body, headers)

    assert headers["X-Gitea-Delivery"] == event.delivery_id


def test_bad_forgejo_signature_is_not_rescued_by_gitea_one() -> None:
    """When X-Forgejo-Signature is present it is the one that must hold."""
    body = push_body("forgejo")
    headers = forge_headers("forgejo", body, SECRET)
    headers["X-Forgejo-Signature"] = "0" * 64

    assert 403 == refusal("forgejo", headers, body).status


@pytest.mark.parametrize("fold", [str.lower, str.upper])
def test_header_names_are_case_insensitive(fold: Any) -> None:
    """Headers are found whatever the case of their names."""
    body = push_body("github")
    headers = {fold(name): value for name, value in forge_headers("github", body, SECRET).items()}

    event = receive_with("github", body, headers)

    assert headers[fold("X-GitHub-Delivery")] == event.delivery_id


def test_empty_secret_is_a_configuration_error() -> None:
    """An empty secret would let anyone sign, so verify() refuses to use it."""
    body = push_body("github")

    with pytest.raises(ConfigError):
        verify("github", forge_headers("github", body, ""), body, "")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_oversized_body_is_refused(provider: Provider) -> None:
    """A body over the limit is answered 413 before any hashing or parsing."""
    body = push_body(provider)
    headers = forge_headers(provider, body, SECRET)

    with pytest.raises(WebhookError) as verifying:
        verify(provider, headers, body, SECRET, max_bytes=len(body) - 1)
    with pytest.raises(WebhookError) as parsing:
        parse(provider, headers, b" " * (MAX_BODY_BYTES + 1))

    assert (413, 413) == (verifying.value.status, parsing.value.status)


# -- events -------------------------------------------------------------------


def test_github_ping() -> None:
    """GitHub's ping is answered as a ping, carrying its delivery id."""
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    headers = forge_headers("github", body, SECRET, event="ping")

    verify("github", headers, body, SECRET)

    assert Ping("github", headers["X-GitHub-Delivery"]) == parse("github", headers, body)


@pytest.mark.parametrize(
    ("provider", "event", "delivery_header"),
    [
        ("github", "issues", "X-GitHub-Delivery"),
        ("gitlab", "Merge Request Hook", "Idempotency-Key"),
        ("gitea", "pull_request", "X-Gitea-Delivery"),
        ("forgejo", "delete", "X-Forgejo-Delivery"),
    ],
)
def test_other_events_are_ignored(provider: Provider, event: str, delivery_header: str) -> None:
    """Verified deliveries about anything but a push are acknowledged and not acted on."""
    body = b'{"action": "opened"}'
    headers = forge_headers(provider, body, SECRET, event=event)

    verify(provider, headers, body, SECRET)

    assert Ignored(provider, headers[delivery_header], event) == parse(provider, headers, body)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_event_header_is_malformed(provider: Provider) -> None:
    """A delivery that does not say which event it is gets a 400."""
    body = push_body(provider)
    headers = {
        name: value
        for name, value in forge_headers(provider, body, SECRET).items()
        if not name.lower().endswith(("-event", "-event-type"))
    }

    error = refusal(provider, headers, body)

    assert 400 == error.status
    assert "Event" in str(error)


def test_tag_push_has_no_branch() -> None:
    """A push to a tag parses, and its branch is None."""
    event = receive("github", push_body("github", ref="refs/tags/v1.0"))

    assert ("refs/tags/v1.0", None) == (event.ref, event.branch)


def test_deleted_branch() -> None:
    """A push whose after is all zeros is a deletion."""
    event = receive("gitea", push_body("gitea", after=ZEROS))

    assert (False, True, "main") == (event.created, event.deleted, event.branch)


def test_gitea_test_delivery_is_a_null_push() -> None:
    """Gitea's test button sends before == after == zeros; it parses as created and deleted."""
    event = receive("gitea", push_body("gitea", before=ZEROS, after=ZEROS))

    assert (True, True) == (event.created, event.deleted)


def test_sha256_repositories_are_accepted() -> None:
    """Commit ids of 64 hex digits (SHA-256 repositories) parse like SHA-1 ones."""
    before, after = "ab" * 32, "0" * 64

    event = receive("forgejo", push_body("forgejo", before=before, after=after))

    assert (before, after, True) == (event.before, event.after, event.deleted)


def test_uppercase_commit_ids_are_normalised() -> None:
    """Commit ids are handed on in git's lowercase spelling."""
    event = receive("github", push_body("github", after=NEW.upper()))

    assert NEW == event.after


def test_form_encoded_github_delivery_parses() -> None:
    """GitHub's form content type (payload=<url-encoded JSON>) parses like JSON."""
    body = urlencode({"payload": push_body("github").decode()}).encode()
    headers = forge_headers("github", body, SECRET)
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    event = receive_with("github", body, headers)

    assert ("refs/heads/main", "lab/data") == (event.ref, event.repository)


# -- malformed bodies ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "body is an array in JSON, not an object"),
        (b'"refs/heads/main"', "body is a string in JSON, not an object"),
        (b"null", "body is null in JSON, not an object"),
        (b'{"ref": "refs/heads/\xff"}', "not UTF-8"),
        ('{"ref": "x"}'.encode("utf-16"), "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "number too long"),
    ],
)
def test_broken_bodies_are_malformed(body: bytes, complaint: str) -> None:
    """Bodies that are not a UTF-8 JSON object get a 400 saying what is wrong."""
    error = refusal("github", forge_headers("github", body, SECRET), body)

    assert 400 == error.status
    assert complaint in str(error)


@pytest.mark.parametrize(
    ("provider", "changes", "field"),
    [
        ("github", {"ref": MISSING}, "'ref' is missing"),
        ("github", {"ref": 7}, "'ref' must be a non-empty string, not a number"),
        ("github", {"ref": ""}, "'ref'"),
        ("gitea", {"before": ["abc"]}, "'before'"),
        ("gitea", {"after": "abc123"}, "'after'"),
        ("forgejo", {"after": "g" * 40}, "'after'"),
        ("github", {"after": "a" * 41}, "'after'"),
        ("github", {"before": "a" * 64}, "'before' and 'after'"),
        ("github", {"repository": {"name": "data"}}, "'repository.full_name'"),
        ("gitea", {"repository": "lab/data"}, "'repository' is a string, not an object"),
        ("github", {"repository": MISSING}, "'repository' is missing"),
        ("gitlab", {"project": {"name": "Diaspora"}}, "'project.path_with_namespace'"),
    ],
)
def test_bad_fields_are_malformed(provider: Provider, changes: dict[str, Any], field: str) -> None:
    """Missing or ill-typed ref, commit ids or repository get a 400 naming the field."""
    body = push_body(provider, **changes)

    error = refusal(provider, forge_headers(provider, body, SECRET), body)

    assert 400 == error.status
    assert field in str(error)


@pytest.mark.parametrize(
    "ref",
    ["main", "heads/main", "refs/", "refs/heads/a..b", "refs/heads/a b", "refs/heads/x.lock",
     "refs/heads/", "refs/heads//x", "refs/heads/.hidden", "refs/heads/a@{1}", "refs/heads/a\nb"],
)  # fmt: skip
def test_refs_must_be_full_valid_names(ref: str) -> None:
    """A ref that git would not accept under refs/ is refused with 400."""
    body = push_body("github", ref=ref)

    error = refusal("github", forge_headers("github", body, SECRET), body)

    assert 400 == error.status
    assert "'ref'" in str(error)


# -- helpers ------------------------------------------------------------------


def test_sign_gives_fresh_delivery_ids() -> None:
    """Each signed delivery gets its own id, so the daemon's deduplication sees two pushes."""
    body = push_body("github")

    first, second = (receive("github", body) for _ in range(2))

    assert first.delivery_id != second.delivery_id


def test_provider_names() -> None:
    """is_provider() accepts exactly the four forges; other names are a ValueError."""
    assert [True] * 4 + [False] == [is_provider(name) for name in (*PROVIDERS, "bitbucket")]
    with pytest.raises(ValueError, match="bitbucket"):
        parse("bitbucket", {}, b"{}")  # type: ignore[arg-type]


@given(
    provider=st.sampled_from(HMAC_PROVIDERS),
    body=st.binary(min_size=1, max_size=512),
    secret=st.text(min_size=1, max_size=64),
    data=st.data(),
)
def test_signatures_reject_any_changed_byte(
    provider: Provider, body: bytes, secret: str, data: st.DataObject
) -> None:
    """A signed body verifies, and changing any one byte of it is refused with 403."""
    headers = forge_headers(provider, body, secret)
    verify(provider, headers, body, secret)
    position = data.draw(st.integers(0, len(body) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="flip")
    altered = bytearray(body)
    altered[position] ^= flip

    with pytest.raises(WebhookError) as info:
        verify(provider, headers, bytes(altered), secret)

    assert 403 == info.value.status

"""The [security] keys: defaults, per-repository overrides, and refusals naming the key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from rerund.errors import ConfigError
from rerund.settings import load
from rerund.web.access import refuse_reader

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rerund.toml"


def test_the_shipped_settings_trust_nobody_and_guard_reading(tmp_path: Path) -> None:
    """config/rerund.toml trusts nobody, sandboxes, ships no token; its token file guards reads."""
    shipped = SHIPPED.read_text(encoding="utf-8")
    settings = load(SHIPPED)
    assert settings.security.trust is None
    assert "bwrap" == settings.sandbox
    assert settings.api_token is None  # issue 6: no usable token ships in the repository
    # Issue 9: the token the shipped file tells the operator to generate also guards reading.
    token = secrets.token_urlsafe(24)
    (tmp_path / "api-token").write_text(token + "\n")
    named = '# token_file = "/etc/rerund/api-token"'
    assert named in shipped
    (tmp_path / "rerund.toml").write_text(shipped.replace(named, 'token_file = "api-token"'))
    guarded = load(tmp_path / "rerund.toml")
    assert token == guarded.api_token
    anonymous = make_mocked_request("GET", "/api/jobs/1")
    refused = refuse_reader(anonymous, guarded)
    assert refused is not None
    assert 401 == refused.status
    bearer = make_mocked_request("GET", "/api/jobs/1", headers={"Authorization": f"Bearer {token}"})
    assert refuse_reader(bearer, guarded) is None


def test_security_defaults_apply_to_every_repository_and_can_be_overridden(
    tmp_path: Path,
) -> None:
    """[security] is the default of each [[repos]] and of repos_dir; a repository may override."""
    (tmp_path / "srv" / "found.git" / "objects").mkdir(parents=True)
    (tmp_path / "srv" / "found.git" / "refs").mkdir()
    (tmp_path / "srv" / "found.git" / "HEAD").write_text("ref: refs/heads/main\n")
    path = tmp_path / "rerund.toml"
    path.write_text(
        "repos_dir = 'srv'\n[security]\ntrust = 'signed'\nallowed_signers_file = 'signers'\n"
        "memory_mb = 1024\n[[repos]]\nname = 'lab'\nremote = '/x.git'\ntrust = 'pushers'\n"
        "trusted_pushers = ['alice']\nnetwork = true\n"
    )
    settings = load(path)
    lab, found = settings.repo("lab"), settings.repo("found")
    assert lab is not None
    assert found is not None
    assert ("pushers", ("alice",), True, 1024) == (
        lab.security.trust,
        lab.security.trusted_pushers,
        lab.security.network,
        lab.security.memory_mb,
    )
    assert "signed" == found.security.trust
    assert tmp_path / "signers" == found.security.allowed_signers_file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[security]\ntrust = 'everyone'", "security.trust must be 'signed', 'pushers' or 'any'"),
        ("[security]\ntrust = 'signed'", "security.trust = 'signed' needs allowed_signers_file"),
        ("[security]\ntrust = 'pushers'", "needs trusted_pushers"),
        ("[security]\nsandbox = 'docker'", "security.sandbox must be 'bwrap' or 'none'"),
        ("[security]\ntrusted_pushers = 'alice'", "trusted_pushers must be an array"),
        ("[security]\nmax_processes = 0", "security.max_processes must be an integer"),
        ("[[repos]]\nname = 'a'\nremote = '/x.git'\nsandbox = 'none'",
         "unknown setting repos[0].sandbox"),
        ("[security]\ncolour = 1", "unknown setting security.colour"),
    ],
)  # fmt: skip
def test_bad_security_settings_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each invalid security value stops loading with a message naming the key."""
    path = tmp_path / "rerund.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(path)

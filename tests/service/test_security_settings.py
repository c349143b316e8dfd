"""The [security] keys: defaults, per-repository overrides, and refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerund.errors import ConfigError
from rerund.settings import load

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rerund.toml"


def test_the_shipped_settings_trust_nobody_and_guard_reading() -> None:
    """config/rerund.toml sets no trust (nothing runs), a sandbox, and a token that reads."""
    settings = load(SHIPPED)
    assert settings.security.trust is None
    assert "bwrap" == settings.sandbox
    assert settings.api_token


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

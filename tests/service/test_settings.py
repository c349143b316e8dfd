"""Settings: the shipped file loads, bad values are refused naming the key, repos_dir serves all."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerund.errors import ConfigError
from rerund.settings import load

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rerund.toml"


def test_shipped_settings_load_with_their_documented_defaults() -> None:
    """config/rerund.toml is valid and says what the embedded defaults are."""
    settings = load(SHIPPED)
    assert ("127.0.0.1", 8080, 2, 3600.0) == (
        settings.listen_host,
        settings.listen_port,
        settings.max_concurrent_steps,
        settings.step_timeout_s,
    )
    assert SHIPPED.parent.parent / "var" == settings.state_dir


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state_dir = 3", "state_dir must be a string"),
        ("colour = 'blue'", "unknown setting colour"),
        ("[http]\nlisten = 'everywhere'", "http.listen must look like '127.0.0.1:8080'"),
        ("[limits]\nmax_concurrent_steps = 0", "limits.max_concurrent_steps must be an integer"),
        ("[limits]\nstep_timeout_s = -1", "limits.step_timeout_s must be a positive number"),
        ("[[repos]]\nremote = '/x.git'", "repos[0].name is required"),
        ("[[repos]]\nname = 'a b'\nremote = '/x.git'", "repos[0].name 'a b' may hold only"),
        ("[[repos]]\nname = 'a'\nremote = '/x.git'\nwatch = 'yes'", "repos[0].watch must be"),
        ("[[repos]]\nname = 'a'\nremote = '/x.git'\n[[repos]]\nname = 'a'\nremote = '/y.git'",
         "the name 'a' is used twice"),
        ("[[repos]]\nname = 'a'\nremote = '/x.git'\ngithub_secret = 's'\ngithub_secret_file = 'f'",
         "github_secret and github_secret_file are both set"),
        ("[[repos]]\nname = 'a'\nremote = '/x.git'\ngitlab_token_file = 'missing'",
         "repos[0].gitlab_token_file: cannot read missing"),
        ("[http", "is not valid TOML"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Each invalid value stops loading with a message that names the key."""
    path = tmp_path / "rerund.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load(path)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("change-me", "http.token is a placeholder"),
        ("please-CHANGE_ME-before-use", "http.token is a placeholder"),
        ("your-token-goes-here-now", "http.token is a placeholder"),
        ("short-but-real", "http.token must be at least 16 characters long"),
    ],
)
def test_guessable_api_tokens_are_refused(tmp_path: Path, token: str, message: str) -> None:
    """A placeholder token, or one under 16 characters, stops the daemon from starting."""
    path = tmp_path / "rerund.toml"
    path.write_text(f"[http]\ntoken = '{token}'\n")
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_shipped_settings_carry_no_token(tmp_path: Path) -> None:
    """The shipped file has no active token (one in a repository is public); a real one loads."""
    assert None is load(SHIPPED).api_token
    (tmp_path / "token").write_text("Zq3n8vYt2LkWc0pRx7Hs\n")
    path = tmp_path / "rerund.toml"
    path.write_text("[http]\ntoken_file = 'token'\n")
    assert "Zq3n8vYt2LkWc0pRx7Hs" == load(path).api_token


def test_secret_files_and_relative_paths_resolve_beside_the_settings(tmp_path: Path) -> None:
    """*_file secrets are read (stripped); relative paths are relative to the settings file."""
    (tmp_path / "gh").write_text("from-a-file\n")
    path = tmp_path / "rerund.toml"
    path.write_text("[[repos]]\nname = 'lab'\nremote = 'srv/lab.git'\ngithub_secret_file = 'gh'\n")

    repo = load(path).repos[0]

    assert ("from-a-file", str(tmp_path / "srv" / "lab.git")) == (
        repo.secrets["github_secret"],
        repo.remote,
    )


def test_repos_dir_serves_every_bare_repository_below_it(tmp_path: Path) -> None:
    """Bare repositories under repos_dir are served by their path, listed ones kept first."""
    for name in ("a.git", "group/b.git"):
        bare = tmp_path / "srv" / name
        (bare / "objects").mkdir(parents=True)
        (bare / "refs").mkdir()
        (bare / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "srv" / "notes").mkdir()
    path = tmp_path / "rerund.toml"
    path.write_text("repos_dir = 'srv'\n[[repos]]\nname = 'a'\nremote = '/elsewhere/a.git'\n")

    repos = load(path).all_repos()

    assert [("a", "/elsewhere/a.git"), ("group/b", str(tmp_path / "srv" / "group" / "b.git"))] == [
        (repo.name, repo.remote) for repo in repos
    ]


def test_subdataset_sources_and_follow_subdatasets_are_read(tmp_path: Path) -> None:
    """[subdataset_sources] paths resolve beside the file; follow_subdatasets defaults to true."""
    path = tmp_path / "rerund.toml"
    path.write_text(
        "[subdataset_sources]\n'abc-id' = 'srv/raw.git'\n'https://x.org/raw' = '/m/raw.git'\n"
        "[[repos]]\nname = 'a'\nremote = '/srv/a.git'\n"
        "[[repos]]\nname = 'b'\nremote = '/srv/b.git'\nfollow_subdatasets = false\n"
    )

    settings = load(path)

    assert {"abc-id": str(tmp_path / "srv/raw.git"), "https://x.org/raw": "/m/raw.git"} == dict(
        settings.subdataset_sources
    )
    assert [True, False] == [repo.follow_subdatasets for repo in settings.repos]


def test_a_subdataset_source_must_be_a_path(tmp_path: Path) -> None:
    """A source that is not a string is refused, naming the key."""
    path = tmp_path / "rerund.toml"
    path.write_text("[subdataset_sources]\n'abc-id' = 3\n")

    with pytest.raises(ConfigError, match=r"subdataset_sources\.abc-id must be a path"):
        load(path)

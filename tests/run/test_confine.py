"""The resolver behind confinement follows links as the kernel does (issue 8, items 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerund.errors import RecordError
from rerund.run.confine import Confinement, SymlinkLoopError, resolve

KEY = "MD5E-s5--0123456789abcdef0123456789abcdef.txt"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A work tree with a .git, a real directory, and links inside and outside."""
    root = tmp_path / "ds"
    (root / ".git" / "annex" / "objects" / "Ab" / "Cd" / KEY).mkdir(parents=True)
    (root / ".git" / "annex" / "objects" / "Ab" / "Cd" / KEY / KEY).write_text("data\n")
    (root / "real").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "inside").symlink_to("real")
    (root / "outside").symlink_to(tmp_path / "elsewhere")
    (root / "up").symlink_to("..")
    (root / "gitlink").symlink_to(".git")
    return root


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("real/new", True),
        ("inside/new", True),
        ("up/ds/real", True),
        ("missing/../real", True),
        ("outside/new", False),
        ("up/elsewhere", False),
        ("../ds/../x", False),
        ("/etc/passwd", False),
        ("gitlink/config", False),
        (".git/annex", False),
        ("w" * 300 + "/x", True),
    ],
)
def test_paths_are_inside_only_where_the_kernel_would_land_inside(
    tree: Path, path: str, inside: bool
) -> None:
    """Each component's link is followed; ".." applies to where the links led."""
    assert inside == Confinement(tree, "c" * 40).inside(path)


def test_a_link_as_the_last_component_can_stay_unfollowed(tree: Path) -> None:
    """Removing ``outside`` only removes the link: with leaf=False it is inside."""
    confine = Confinement(tree, "c" * 40)
    assert confine.inside("outside", leaf=False)
    assert not confine.inside("outside")
    assert not confine.inside("outside/x", leaf=False)


def test_a_refusal_names_the_path_and_the_commit(tree: Path) -> None:
    """The error says which path of which record leads where."""
    with pytest.raises(RecordError, match=r"'outside/new'.*elsewhere/new") as caught:
        Confinement(tree, "c" * 40).check("outside/new", "an output")
    assert "c" * 12 in str(caught.value)


def test_a_symlink_loop_is_refused(tree: Path) -> None:
    """A loop is neither inside nor followed forever."""
    (tree / "a").symlink_to("b")
    (tree / "b").symlink_to("a")
    with pytest.raises(SymlinkLoopError):
        resolve(tree, "a/x")
    assert not Confinement(tree, "c" * 40).inside("a/x")


def test_only_real_annex_links_into_our_objects_are_annexed(tree: Path) -> None:
    """A well-formed key inside .git/annex/objects is annexed; look-alikes are not."""
    confine = Confinement(tree, "c" * 40)
    real = tree / "real" / "data.txt"
    real.symlink_to(f"../.git/annex/objects/Ab/Cd/{KEY}/{KEY}")
    absent = tree / "absent.txt"
    absent.symlink_to(f".git/annex/objects/Xy/Zw/{KEY}/{KEY}")
    fake = tree / "fake"
    fake.symlink_to("x/annex/objects/../../../../secret")
    foreign = tree / "foreign"
    foreign.symlink_to(f"../other/.git/annex/objects/Ab/Cd/{KEY}/{KEY}")
    pointer = tree / "pointer"
    pointer.write_text(f"/annex/objects/{KEY}\n")
    not_pointer = tree / "not-pointer"
    not_pointer.write_text("/annex/objects/../../etc/passwd\n")

    assert confine.is_annexed(real)
    assert confine.annex_object(real) == (tree / ".git/annex/objects/Ab/Cd" / KEY / KEY)
    assert confine.is_annexed(absent)
    assert confine.is_annexed(pointer)
    assert not confine.is_annexed(fake)
    assert not confine.is_annexed(foreign)
    assert not confine.is_annexed(not_pointer)

"""Which tracked files git records as unlocked annex pointers."""

from __future__ import annotations

from rerund.core.gitrepo import GitRepo

_POINTER = b"/annex/objects/"
_MAX_POINTER = 1024  # git-annex's pointer files are one short line


def unlocked_pointers(repo: GitRepo, paths: list[str]) -> list[str]:
    """The ``paths`` whose index entry is an annex pointer file (an unlocked annexed file).

    Their work-tree content, once fetched, differs from the pointer when git compares
    without the annex filter; staged that way they would enter git as plain content.
    """
    if not paths:
        return []
    listed = repo.run("ls-files", "--stage", "-z", "--", *paths).decode("utf-8")
    blobs: dict[str, str] = {}
    for entry in listed.split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            mode, blob, _ = meta.split()
            if mode == "100644":
                blobs[path] = blob
    if not blobs:
        return []
    checked = repo.run("cat-file", "--batch-check", stdin="\n".join(blobs.values()).encode())
    small = {
        line.split()[0]
        for line in checked.decode().splitlines()
        if len(line.split()) == 3 and int(line.split()[2]) <= _MAX_POINTER
    }
    found: list[str] = []
    for path, blob in blobs.items():
        if blob in small and repo.run("cat-file", "blob", blob).startswith(_POINTER):
            found.append(path)
    return found

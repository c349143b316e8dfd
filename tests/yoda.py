"""A YODA lab: raw data in its own dataset, installed as a subdataset of an analysis.

Built once per session with the real ``datalad`` and copied for every test:

* ``raw`` (text2git): ``survey.csv``, ``sub-01/anat.nii.gz``, ``sub-02/anat.nii.gz``,
  ``notes.txt``, an annexed binary ``scan.bin``, and a subdataset ``deep`` holding ``x.csv``;
* ``ana``: ``raw`` cloned at ``inputs/raw`` (``deep`` installed by the run that reads it), and
  four records: ``clean`` (``inputs/raw/survey.csv``), ``anat`` (the glob
  ``inputs/raw/sub-*/anat.nii.gz``), ``scan`` (the annexed file) and ``deep``
  (``inputs/raw/deep/x.csv``, two levels down).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import Dataset, datalad, git


@dataclass(frozen=True)
class Lab:
    root: Path

    @property
    def raw(self) -> Dataset:
        return Dataset(self.root / "raw")

    @property
    def ana(self) -> Dataset:
        return Dataset(self.root / "ana")

    def fix_raw(self, message: str, files: dict[str, str | bytes]) -> str:
        """Change files in ``raw`` (nested ones too) and save it recursively; its new HEAD."""
        for relpath, content in files.items():
            target = self.raw.path / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        datalad("save", "-r", "-m", message, cwd=self.raw.path)
        return self.raw.head()

    def update(self) -> str:
        """What a lab member does: ``datalad update -d . -r --how merge``; the new gitlink."""
        datalad("update", "-d", ".", "-r", "--how", "merge", cwd=self.ana.path)
        return self.gitlink()

    def gitlink(self, rev: str = "HEAD") -> str:
        return git("rev-parse", f"{rev}:inputs/raw", cwd=self.ana.path)


def build_lab(root: Path) -> Lab:
    """Build the lab under ``root`` (see the module docstring); about 20 s."""
    lab = Lab(root)
    datalad("create", "-c", "text2git", str(lab.raw.path))
    datalad("create", "-c", "text2git", "-d", str(lab.raw.path), str(lab.raw.path / "deep"))
    lab.fix_raw(
        "raw data",
        {
            "survey.csv": "id,score\n2,5\n1,3\n",
            "sub-01/anat.nii.gz": "anat 1\n",
            "sub-02/anat.nii.gz": "anat 2\n",
            "notes.txt": "collected in May\n",
            "scan.bin": b"\x00\x01scan\xff",
            "deep/x.csv": "x\n1\n",
        },
    )
    datalad("create", "-c", "text2git", str(lab.ana.path))
    ana = lab.ana
    datalad("clone", "-d", ".", str(lab.raw.path), "inputs/raw", cwd=ana.path)
    steps = [
        ("clean", "inputs/raw/survey.csv", "clean.csv", "sort {inputs} > {outputs}"),
        ("anat", "inputs/raw/sub-*/anat.nii.gz", "anat.txt", "cat {inputs} > {outputs}"),
        ("scan", "inputs/raw/scan.bin", "scan.txt", "wc -c < {inputs} > {outputs}"),
        ("deep", "inputs/raw/deep/x.csv", "deep.txt", "cp {inputs} {outputs}"),
    ]
    for summary, inputs, outputs, cmd in steps:
        ana.run_step(summary, inputs, outputs, cmd)
    return lab

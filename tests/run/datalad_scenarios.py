"""DataLad's own rerun tests, rebuilt as dataset histories for the side-by-side replay.

Each scenario names the DataLad 1.7.1 test it comes from (``datalad/local/tests/
test_rerun.py``, ``test_rerun_merges.py``, ``datalad/core/local/tests/test_run.py``).
``build`` is a bash script run in a fresh DataLad dataset (``$B`` is its
branch); ``datalad`` and ``rerund`` are the arguments after ``datalad rerun``
and ``rerund rerun`` that ask for the same thing. Parts of DataLad's tests
that need options rerund does not have (``--onto``, ``--branch``,
``--explicit``, ``--assume-ready``, ``-m``) are left out; the merge-shape
tests keep their ``--since=`` replay.

``difference`` names a documented choice (README, docs/datalad-compat.md):
the two tools must then disagree, and only in that way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    """The DataLad test the history comes from."""
    build: str
    datalad: tuple[str, ...]
    rerund: tuple[str, ...]
    text2git: bool = False
    annex: bool = True
    """False: a plain git dataset (``datalad create --no-annex``)."""
    exit: int = 0
    """DataLad's exit status: both tools failing alike for another reason proves nothing."""
    cwd: str = "."
    difference: str | None = None
    ignore_tree: str | None = None
    """Why the work tree is not compared (a failed step)."""

    @property
    def kind(self) -> str:
        if not self.annex:
            return "no-annex"
        return "text2git" if self.text2git else "annexed"


# Reusable build pieces.
_LEFT_RIGHT = """
git checkout -q -b side
datalad run 'echo foo >foo'
git checkout -q $B
datalad run 'echo bar >bar'
git merge -q -m 'Merge side' side
"""

_SIDE_NONRUN = """
git checkout -q $B~ -b side
echo blah > nonrun-file
datalad save -m nonrun
git checkout -q $B
git merge -q -m 'Merge side' side
"""

# A record made by another dataset (a superdataset's record copied into a subdataset).
_FOREIGN = """
git commit -q --allow-empty -F - <<'EOF'
[DATALAD RUNCMD] theirs

=== Do not change lines below ===
{"chain": [], "cmd": "echo no > foreign", "dsid": "another-dataset", "exit": 0,
 "extra_inputs": [], "inputs": [], "outputs": [], "pwd": "."}
^^^ Do not change lines above ^^^
EOF
"""

_ORPHAN_SQUASHED = """
git checkout -q --orphan side
datalad save -m squashed
"""

SINCE_ALL = ("--since=",)

SCENARIOS: tuple[Scenario, ...] = (
    # --- datalad/local/tests/test_rerun.py -------------------------------------------
    Scenario(
        "rerun-reads-own-output",
        "test_rerun",
        """
mkdir sub && touch sub/sequence && datalad save -m seq
datalad run 'echo x$(cat sub/sequence) > sub/sequence'
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "rerun-since-rev",
        "test_rerun",
        """
mkdir sub && touch sub/sequence && datalad save -m seq
datalad run 'echo x$(cat sub/sequence) > sub/sequence'
datalad rerun
datalad rerun
""",
        ("--since=HEAD~2",),
        ("--since=HEAD~2",),
        text2git=True,
    ),
    Scenario(
        "rerun-since-empty",
        "test_rerun",
        """
mkdir sub && touch sub/sequence && datalad save -m seq
datalad run 'echo x$(cat sub/sequence) > sub/sequence'
datalad rerun
""",
        SINCE_ALL,
        SINCE_ALL,
        text2git=True,
    ),
    Scenario(
        "rerun-of-a-rerun-extends-chain",
        "test_rerun_chain",
        """
datalad run 'echo x$(cat -- seq 2>/dev/null) > seq'
datalad rerun
datalad rerun
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "since-head-selects-nothing",
        "test_rerun (empty range)",
        "datalad run 'echo a > a'",
        ("--since=HEAD",),
        ("--since=HEAD",),
        exit=1,
    ),
    Scenario(
        "since-empty-without-records",
        "test_rerun_onto (no run commits)",
        "echo a > a && datalad save -m plain",
        SINCE_ALL,
        SINCE_ALL,
        exit=1,
    ),
    Scenario(
        "root-record-rerun",
        "test_rerun_just_one_commit",
        """
git checkout -q --orphan orph && git reset -q --hard
datalad run 'echo static-content > static'
""",
        (),
        ("HEAD",),
        exit=1,
    ),
    Scenario(
        "root-record-since",
        "test_rerun_just_one_commit",
        """
git checkout -q --orphan orph && git reset -q --hard
datalad run 'echo static-content > static'
""",
        SINCE_ALL,
        SINCE_ALL,
        exit=1,
    ),
    Scenario(
        "root-record-script",
        "test_rerun_just_one_commit",
        """
git checkout -q --orphan orph && git reset -q --hard
datalad run 'echo static-content > static'
""",
        ("--since=", "--script", "-"),
        ("--since=", "--script", "-"),
        exit=1,
    ),
    Scenario(
        "recorded-failure-repeats",
        "test_run_failure",
        """
datalad run 'echo 3 > out; exit 3' || true
datalad save -F .git/COMMIT_EDITMSG
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "command-now-fails-with-its-status",
        "test_run_failure",
        """
echo 0 > code && echo data > data && datalad save -m inputs
datalad run -i data -o out 'cat data > out; exit $(cat code)'
echo 2 > code && echo more >> data && datalad save -m 'code 2'
""",
        ("HEAD~1",),
        ("HEAD~1",),
        text2git=True,
        ignore_tree="a failed step's tree: DataLad leaves outputs staged, rerund its own way",
        exit=2,
    ),
    Scenario(
        "range-stops-at-a-failure",
        "test_rerun_on_cmd_failure",
        """
git tag base
echo 0 > code && datalad save -m code
datalad run 'echo a >> a'
datalad run 'echo b >> b; exit $(cat code)'
datalad run 'echo c >> c'
echo 4 > code && datalad save -m 'code 4'
""",
        ("--since=base",),
        ("--since=base",),
        text2git=True,
        exit=4,
        ignore_tree="a failed step's tree: DataLad leaves outputs staged, rerund its own way",
    ),
    Scenario(
        "foreign-record-skipped-in-range",
        "test_rerun_range_with_foreign_run_commit",
        _FOREIGN
        + """datalad run 'echo x >> ours'
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "foreign-record-alone-fails",
        "test_rerun_range_with_foreign_run_commit",
        _FOREIGN,
        (),
        ("HEAD",),
        exit=1,
    ),
    Scenario(
        "foreign-records-only-since",
        "test_rerun_range_with_foreign_run_commit",
        _FOREIGN,
        SINCE_ALL,
        SINCE_ALL,
        exit=1,
    ),
    Scenario(
        "records-only-in-subdataset",
        "test_rerun (records in a subdataset, --since= in the superdataset)",
        """
datalad create -d . sub
(cd sub && datalad run 'echo x >> in-sub')
datalad save -m 'sub moved'
""",
        SINCE_ALL,
        SINCE_ALL,
        exit=1,
    ),
    Scenario(
        "unavailable-input-fails-first",
        "test_rerun_unavailable_input",
        """
echo input > input && datalad save -m input
datalad run -i input -o out 'cat input > out; echo x >> marker'
git annex drop -q --force input
""",
        (),
        ("HEAD",),
        exit=1,
    ),
    Scenario(
        "octopus-record-ignored",
        "test_rerun_invalid_merge_run_commit",
        """
datalad run 'echo a >> a'
git checkout -q -b b1 $B~ && echo 1 > f1 && datalad save -m b1
git checkout -q -b b2 $B~ && echo 2 > f2 && datalad save -m b2
git checkout -q $B
git merge -q b1 b2 -m "$(cat <<'EOF'
[DATALAD RUNCMD] octopus

=== Do not change lines below ===
{"chain": [], "cmd": "echo o > octo", "exit": 0, "extra_inputs": [], "inputs": [],
 "outputs": [], "pwd": "."}
^^^ Do not change lines above ^^^
EOF
)"
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "missing-input-fails",
        "test_rerun_outofdate_tree",
        """
echo input > input && datalad save -m input
datalad run -i input -o out 'cat input > out'
git rm -q input && datalad save -m 'no input'
""",
        ("HEAD~1",),
        ("HEAD~1",),
        exit=1,
    ),
    Scenario(
        "implicit-input-removed",
        "test_rerun_outofdate_tree",
        """
printf 'abc\\ndef' > foo && datalad save --to-git -m foo
datalad run 'grep def foo > out'
datalad remove -q foo 2>/dev/null || (git rm -q foo && datalad save -m 'no foo')
""",
        ("HEAD~1",),
        ("HEAD~1",),
        exit=2,
        ignore_tree="a failed step's tree: DataLad leaves outputs staged, rerund its own way",
    ),
    Scenario(
        "ambiguous-revision-and-file",
        "test_rerun_ambiguous_revision_file",
        "datalad run 'echo ambig > ambig' && git tag ambig",
        ("--since=", "ambig"),
        ("ambig",),
    ),
    Scenario(
        "plain-git-dataset",
        "test_run_inputs_no_annex_repo",
        "echo a > a && datalad save -m a && datalad run -i '*' 'cd .> dummy; echo x >> log'",
        (),
        ("HEAD",),
        annex=False,
    ),
    Scenario(
        "record-from-subdirectory",
        "test_rerun_subdir",
        """
mkdir -p subdir && touch subdir/.keep && datalad save -m subdir
(cd subdir && datalad run 'echo x >> in-subdir; pwd >> in-subdir')
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "rerun-called-from-subdirectory",
        "test_rerun_subdir",
        """
mkdir -p subdir && touch subdir/.keep && datalad save -m subdir
(cd subdir && datalad run 'echo {pwd} {dspath} >> where')
""",
        (),
        ("HEAD",),
        text2git=True,
        cwd="subdir",
    ),
    Scenario(
        "tmpdir-placeholder",
        "test_placeholders",
        "datalad run 'test -d {tmpdir} && echo ok >> tmp-ok'",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "script-of-last-record",
        "test_rerun_script",
        """
datalad run 'echo a >foo'
datalad -c datalad.run.record-sidecar=true run -m BAR 'touch bar'
""",
        ("--script", "-"),
        ("--script", "-", "HEAD"),
    ),
    Scenario(
        "script-of-whole-history",
        "test_rerun_script",
        """
datalad run 'echo a >foo'
datalad -c datalad.run.record-sidecar=true run -m BAR 'touch bar'
datalad run 'echo {pwd} >> where'
""",
        ("--since=", "--script", "-"),
        ("--since=", "--script", "-"),
    ),
    Scenario(
        "script-past-a-foreign-record",
        "test_rerun_script, test_rerun_range_with_foreign_run_commit",
        "datalad run 'echo a >> a'\n" + _FOREIGN + "datalad run 'echo b >> b'\n",
        ("--since=", "--script", "-"),
        ("--since=", "--script", "-"),
        text2git=True,
        difference=(
            "DataLad's script stops at the first record of another dataset (leaving out every"
            " later step); rerund's script has every step a rerun would run"
        ),
    ),
    Scenario(
        "dropped-output-regenerated",
        "test_run_inputs_outputs",
        """
echo input > input && datalad save -m input
datalad run -i input -o out 'cat input input > out'
git annex drop -q --force out
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "glob-inputs-reglobbed",
        "test_placeholders",
        """
echo a > a.in && echo b > b.in && datalad save -m ins
datalad run -i '*.in' -o out 'echo {inputs} > {outputs}; cat {inputs} >> {outputs}'
echo c > c.in && datalad save -m 'another in'
""",
        ("HEAD~1",),
        ("HEAD~1",),
        text2git=True,
    ),
    Scenario(
        "regular-commits-before-first-record",
        "test_rerun_skip_regular_commits_before_first_runcmd",
        """
git tag initial
echo content1 > file1.txt && echo content2 > file2.txt && datalad save -m 'before run'
datalad run 'echo "run output" >> run_output.txt'
echo content3 > file3.txt && datalad save -m 'after run'
""",
        ("--since=initial",),
        ("--since=initial",),
    ),
    Scenario(
        "run-merge-rerun-alone",
        "test_rerun_merge_runs",
        """
datalad run 'echo a >> a'
datalad run 'echo x >> foo && git add foo && git commit -q -m inner'
""",
        (),
        ("HEAD",),
        difference=(
            "DataLad rebuilds a single run-merge record on its own first parent and moves the"
            " branch there; rerund stacks the new run-merge on HEAD"
        ),
    ),
    Scenario(
        "run-merges-in-range",
        "test_rerun_merge_runs",
        """
git tag base
datalad run 'echo a >> normal_file'
datalad run 'echo x >> inner2 && git add inner2 && git commit -q -m inner2'
datalad run 'echo y >> left && git add left && git commit -q -m inner3 && echo z >> extra'
echo manual > manual && datalad save -m 'manual save'
datalad run -o normal_file 'echo b >> normal_file'
""",
        ("--since=base",),
        ("--since=base",),
    ),
    Scenario(
        "run-merge-range-starting-inside",
        "test_rerun_merge_runs",
        """
datalad run 'echo a >> a'
git tag base
datalad run 'echo x >> foo && git add foo && git commit -q -m inner'
datalad run 'echo b >> b'
""",
        ("--since=base",),
        ("--since=base",),
    ),
    # --- datalad/core/local/tests/test_run.py ------------------------------------------
    Scenario(
        "sidecar-record-annexed",
        "test_sidecar",
        """
git config datalad.run.record-sidecar true
datalad run 'echo x >> side'
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "sidecar-record-text2git",
        "test_sidecar",
        """
git config datalad.run.record-sidecar true
datalad run 'echo x >> side'
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "sidecar-identical-rerun",
        "test_sidecar, test_placeholders (identical rerun)",
        """
git config datalad.run.record-sidecar true
datalad run 'echo static > s'
""",
        (),
        ("HEAD",),
        text2git=True,
        difference=(
            "an identical rerun makes no commit in rerund; DataLad commits the new sidecar file"
            " alone"
        ),
    ),
    Scenario(
        "sidecar-record-rerun-inline",
        "test_sidecar",
        "datalad -c datalad.run.record-sidecar=true run 'echo x >> side'",
        (),
        ("HEAD",),
    ),
    Scenario(
        "output-directory",
        "test_run_inputs_outputs",
        "datalad run -o outdir 'mkdir -p outdir && echo x >> outdir/a && echo y >> outdir/b'",
        (),
        ("HEAD",),
    ),
    Scenario(
        "unicode-command-and-message",
        "test_py2_unicode_command",
        "datalad run -m 'grüße, 你好' 'echo ü >> ü.txt'",
        (),
        ("HEAD",),
    ),
    Scenario(
        "message-with-body",
        "test_rerun_script (message lines)",
        """datalad run -m "$(printf 'subject line\n\nbody: why it runs')" 'echo x >> m'""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "message-with-body-script",
        "test_rerun_script (message lines)",
        """datalad run -m "$(printf 'subject line\n\nbody: why it runs')" 'echo x >> m'""",
        ("--script", "-"),
        ("--script", "-", "HEAD"),
        text2git=True,
    ),
    Scenario(
        "plain-output-a-script-appends-to",
        "test_rerun (automatic outputs)",
        """
mkdir code && echo 'echo x >> log.txt' > code/step.sh && datalad save -m code
datalad run 'sh code/step.sh'
""",
        (),
        ("HEAD",),
        text2git=True,
        difference=(
            "rerund removes plain-git outputs the command does not name before it runs (SPEC"
            " §3), DataLad leaves them, so an appending script sees its old output"
        ),
    ),
    Scenario(
        "binary-output-annexed-in-text2git",
        "test_run_inputs_outputs (annex.largefiles)",
        "datalad run -o bin.dat \"printf '\\\\000\\\\001' >> bin.dat\"",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "unlocked-annexed-output",
        "test_run_inputs_outputs (annex.addunlocked)",
        """
git config annex.addunlocked true
datalad run -o out 'echo x >> out'
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "output-unlocked-by-hand",
        "test_run_inputs_outputs (git annex unlock)",
        """
datalad run -o out 'echo x >> out'
git annex unlock out && git commit -q -m 'unlock out'
""",
        ("HEAD~1",),
        ("HEAD~1",),
    ),
    Scenario(
        "extra-record-field",
        "test_inject",
        """
git commit -q --allow-empty -F - <<'EOF'
[DATALAD RUNCMD] injected

=== Do not change lines below ===
{"chain": [], "cmd": "echo x >> injected", "exit": 0, "extra_inputs": [], "inputs": [],
 "outputs": ["injected"], "pwd": ".", "mytool": {"version": 1}}
^^^ Do not change lines above ^^^
EOF
""",
        (),
        ("HEAD",),
        difference="rerund keeps a record's unknown fields; DataLad drops them",
    ),
    Scenario(
        "inputs-with-spaces",
        "test_inputs_quotes_needed",
        """
echo 1 > 'a b.txt' && echo 2 > c.txt && datalad save -m ins
datalad run -i '*.txt' -o out "printf '%s|' {inputs} > {outputs}; cat {inputs} >> {outputs}"
echo 3 > c.txt && datalad save -m 'change c'
""",
        ("HEAD~1",),
        ("HEAD~1",),
        text2git=True,
    ),
    Scenario(
        "unexpanded-placeholders",
        "test_run_unexpanded_placeholders",
        """
datalad run -o 'foo*' -o bar 'echo {outputs} {outputs[1]} >> bar'
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "io-spec-reuse",
        "test_io_substitution",
        """
echo a > a.t && echo b > b.t && datalad save -m ts
datalad run -i '{outputs}' -o '*.t' "sed -i 's/$/!/' {outputs}"
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    Scenario(
        "dropped-output-keeps-directory",
        "test_run_remove_keeps_leading_directory",
        """
mkdir d && echo in > input && datalad save -m input
datalad run -i input -o d/foo 'cat input > d/foo; echo again >> d/foo'
git annex drop -q --force d/foo
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "expanded-outputs",
        "test_run_reglob_outputs",
        """
datalad run --expand outputs -o '*.txt' 'echo x >> a.txt'
""",
        (),
        ("HEAD",),
    ),
    Scenario(
        "custom-substitution",
        "test_substitution_config",
        """
git config datalad.run.substitutions.license gpl3
datalad run 'echo {license} >> lic'
""",
        (),
        ("HEAD",),
        text2git=True,
    ),
    # --- datalad/local/tests/test_rerun_merges.py (the --since= replays) ----------------
    Scenario(
        "merge-fastforwardable",
        "test_rerun_fastforwardable",
        """
git checkout -q -b side
datalad run 'echo foo >foo'
git checkout -q $B
git merge -q --no-ff -m 'Merge side' side
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-fastforwardable-mutator",
        "test_rerun_fastforwardable_mutator",
        """
git checkout -q -b side
datalad run 'echo foo >>foo'
git checkout -q $B
git merge -q --no-ff -m 'Merge side' side
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-left-right-runs", "test_rerun_left_right_runs", _LEFT_RIGHT, SINCE_ALL, SINCE_ALL
    ),
    Scenario(
        "merge-run-left-mutator-right",
        "test_rerun_run_left_mutator_right",
        """
git checkout -q -b side
datalad run 'echo ichange >>ichange'
git checkout -q $B
datalad run 'echo idont >idont'
git merge -q -m 'Merge side' side
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-nonrun-left-run-right",
        "test_rerun_nonrun_left_run_right",
        """
echo blah > nonrun-file && datalad save -m nonrun
git checkout -q $B~ -b side
datalad run 'echo foo >foo'
git checkout -q $B
git merge -q -m 'Merge side' side
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-run-left-nonrun-right",
        "test_rerun_run_left_nonrun_right",
        "datalad run 'echo foo >foo'\n" + _SIDE_NONRUN,
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-mutator-left-nonrun-right",
        "test_rerun_mutator_left_nonrun_right",
        "datalad run 'echo foo >>foo'\n" + _SIDE_NONRUN,
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-mutator-stem-nonrun-merges",
        "test_rerun_mutator_stem_nonrun_merges",
        """
datalad run 'echo foo >>foo'
echo blah > nonrun-file0 && datalad save -m nonrun0
git checkout -q $B~ -b side
echo 'more blah' > nonrun-file1 && datalad save -m nonrun1
git checkout -q $B
git merge -q -m 'Merge side' side
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-exclude-side",
        "test_rerun_exclude_side",
        _LEFT_RIGHT,
        ("HEAD", "--since=side"),
        ("--since=side",),
    ),
    Scenario(
        "merge-unrelated-run-left-nonrun-right",
        "test_rerun_unrelated_run_left_nonrun_right",
        "datalad run 'echo foo >foo'\n"
        + _ORPHAN_SQUASHED
        + "git checkout -q $B\n"
        + "git merge -q -m 'Merge side' --allow-unrelated-histories side\n",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-unrelated-mutator-left-nonrun-right",
        "test_rerun_unrelated_mutator_left_nonrun_right",
        "datalad run 'echo foo >>foo'\n"
        + _ORPHAN_SQUASHED
        + "git checkout -q $B\n"
        + "git merge -q -m 'Merge side' --allow-unrelated-histories side\n",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-unrelated-nonrun-left-run-right",
        "test_rerun_unrelated_nonrun_left_run_right",
        _ORPHAN_SQUASHED
        + "datalad run 'echo foo >foo'\n"
        + "git checkout -q $B\n"
        + "git merge -q -m 'Merge side' --allow-unrelated-histories side\n",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-unrelated-nonrun-left-mutator-right",
        "test_rerun_unrelated_nonrun_left_mutator_right",
        _ORPHAN_SQUASHED
        + "datalad run 'echo foo >>foo'\n"
        + "git checkout -q $B\n"
        + "git merge -q -m 'Merge side' --allow-unrelated-histories side\n",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-multifork",
        "test_rerun_multifork",
        """
git checkout -q -b side
datalad run 'echo foo >foo'
git checkout -q -b side-nonrun side
echo 'blah 0' > nonrun-file0 && datalad save -m nonrun0
git checkout -q side
echo 'blah 1' > nonrun-file1 && datalad save -m nonrun1
datalad run 'echo bar >bar'
git checkout -q -b side-side side~1
echo 'blah 2' > nonrun-file2 && datalad save -m nonrun2
datalad run 'echo onside0 >onside0'
git checkout -q side
git merge -q --no-edit side-side
datalad run 'echo after-side-side >after-side-side'
git checkout -q $B
git merge -q --no-ff --no-edit side
git merge -q --no-edit side-nonrun
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
    Scenario(
        "merge-octopus",
        "test_rerun_octopus",
        """
datalad run 'echo foo >>foo'
echo non-run > non-run && datalad save -m non-run
git checkout -q -b topic-1 $B~
datalad run 'echo bar >bar'
git checkout -q -b topic-2 $B~
datalad run 'echo baz >baz'
git checkout -q $B
git merge -q -m 'Merge octopus' topic-1 topic-2
""",
        SINCE_ALL,
        SINCE_ALL,
    ),
)

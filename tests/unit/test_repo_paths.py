"""Every path the repository names still exists, and the harness stays apart from the product.

The harness lives in dev/ (dev/lab, dev/bench, dev/scripts, dev/playbooks) and the lab's own tests in
tests/lab/; a file that still says `lab/labctl.py`, `scripts/test.sh` or `playbooks/lab_nightly.yml` after
a move fails here, with the file, the line and the path that does not resolve. Checked, in every tracked
text file (changelogs/ excepted: fragments are history):

- paths from the top of the checkout under dev/, lab/, bench/, scripts/, playbooks/ and tests/, plain or after
  a variable holding the root (`{{ agbotkit_lab.root }}/`, `$ROOT/`, `$(CURDIR)/`, `$PWD/`)
  (`*` globs must match something; `<name>`/`{a,b}` placeholders check the folder before them);
- Python joins from the checkout's root (`ROOT / "dev" / "lab"`) and `Path(__file__).parents[N]`, which must
  be the checkout's root where it is used as one (`ROOT = ...`, `... / ".lab"`);
- `cd "$(dirname "$0")/.."` in shell scripts: it must land on the checkout's root;
- `../` paths in YAML and Markdown files, resolved from the file's folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED_TOPS = ("dev", "lab", "bench", "scripts", "playbooks", "tests")
TEXT_SUFFIXES = {".py", ".sh", ".yml", ".yaml", ".md", ".cfg", ".ini", ".toml", ".txt", ".j2", ".tf", ".rst"}
TEXT_NAMES = {"Makefile", ".ansible-lint", ".yamllint", ".gitignore", "run"}
SKIP_PREFIXES = ("changelogs/",)
# made-up names that tests and docs use on purpose (a playbook that is not there)
EXAMPLES = {"playbooks/new_runbook.yml", "playbooks/gone.yml", "playbooks/x.yml"}

# a path from the top of the checkout: not preceded by a character that would make it a part of another path
TOP_PATH = re.compile(r"(?<![\w.$/~{}@:=-])((?:" + "|".join(CHECKED_TOPS) + r")/[\w.*/<>{},-]*)")
# ROOT / "a" / "b/c" (also root / and REPO /)
ROOT_JOIN = re.compile(r"\b(?:ROOT|REPO|root)((?:\s*/\s*[\"'][^\"'\n]+[\"'])+)")
JOIN_PART = re.compile(r"[\"']([^\"'\n]+)[\"']")
FILE_PARENTS = re.compile(r"(\w+)?\s*=?\s*Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]"
                          r"((?:\s*/\s*[\"'][^\"'\n]+[\"'])*)")
SH_CD_ROOT = re.compile(r"cd \"\$\(dirname \"\$0\"\)((?:/\.\.)*)\"")
# a path after a variable that holds the checkout's root: {{ agbotkit_lab.root }}/x, $ROOT/x, $(CURDIR)/x, $PWD/x
ROOT_VAR_PATH = re.compile(r"(?:\{\{\s*agbotkit_lab\.root\s*\}\}|\$ROOT|\$\{ROOT\}|\$\(CURDIR\)|\$PWD)"
                           r"/([\w.*/<>{},-]*[\w*])")
REL_PATH = re.compile(r"(?<![\w/'~.}-])((?:\.\./)+[\w][\w./-]*)")


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [p for p in out.stdout.decode().split("\0") if p]


TRACKED = _tracked()
TRACKED_SET = set(TRACKED)
TRACKED_DIRS = {str(Path(p).parents[i]) for p in TRACKED for i in range(len(Path(p).parents) - 1)}


def _exists(rel: str) -> bool:
    rel = rel.rstrip("/")
    return rel in TRACKED_SET or rel in TRACKED_DIRS or (ROOT / rel).exists()


def _text_files() -> list[str]:
    me = str(Path(__file__).resolve().relative_to(ROOT))
    files = []
    for p in TRACKED:
        if p == me or p.startswith(SKIP_PREFIXES):
            continue
        if Path(p).suffix in TEXT_SUFFIXES or Path(p).name in TEXT_NAMES:
            files.append(p)
    return files


def _resolves_top(token: str) -> bool:
    token = token.rstrip(".,:;")
    if token in EXAMPLES or re.fullmatch(r"[A-Z_]+", Path(token).stem or "x"):  # playbooks/NAME.yml: a placeholder
        return True
    cut = min((i for i in (token.find(c) for c in "<{") if i >= 0), default=-1)
    if cut >= 0:  # a placeholder: the folder before it must exist
        return _exists(token[: token.rfind("/", 0, cut) + 1] or token.split("/")[0])
    if "*" in token:
        return any(ROOT.glob(token.rstrip("/")))
    return _exists(token)


def find_broken(files: list[str]) -> list[str]:
    broken: list[str] = []
    for rel in files:
        path = ROOT / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        is_py, is_sh = rel.endswith(".py"), rel.endswith(".sh") or path.name in ("Makefile", "run")
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{lineno}"
            for m in TOP_PATH.finditer(line):
                if not _resolves_top(m.group(1)):
                    broken.append(f"{where}: {m.group(1)}")
            for m in ROOT_VAR_PATH.finditer(line):
                if m.group(1).split("/")[0] in CHECKED_TOPS and not _resolves_top(m.group(1)):
                    broken.append(f"{where}: {m.group(0)}")
            if is_py:
                for m in ROOT_JOIN.finditer(line):
                    joined = "/".join(JOIN_PART.findall(m.group(1)))
                    if joined.split("/")[0] in CHECKED_TOPS and not _resolves_top(joined):
                        broken.append(f"{where}: ROOT / {joined}")
                for m in FILE_PARENTS.finditer(line):
                    var, n, parts = m.group(1), int(m.group(2)), JOIN_PART.findall(m.group(3))
                    base = path.parents[n]
                    if (var in ("ROOT", "REPO", "root") and not parts) or (parts and parts[0].startswith(".")):
                        if base != ROOT:
                            broken.append(f"{where}: Path(__file__).parents[{n}] is {base}, not the checkout's root")
                    elif parts and not base.joinpath(*parts).exists():
                        broken.append(f"{where}: Path(__file__).parents[{n}] / {'/'.join(parts)}")
            if is_sh:
                for m in SH_CD_ROOT.finditer(line):
                    landing = (path.parent / m.group(1).lstrip("/")).resolve()
                    if m.group(1) and landing != ROOT:
                        broken.append(f"{where}: cd $(dirname $0){m.group(1)} lands on {landing}, not the root")
            if rel.endswith((".yml", ".yaml", ".md")):
                for m in REL_PATH.finditer(line):
                    target = (path.parent / m.group(1).rstrip(".,:;)")).resolve()
                    try:
                        top = target.relative_to(ROOT).parts[0]
                    except (ValueError, IndexError):
                        continue
                    if top in CHECKED_TOPS and not target.exists():
                        broken.append(f"{where}: {m.group(1)} ({target.relative_to(ROOT)})")
    return broken


def test_every_named_path_exists():
    broken = find_broken(_text_files())
    assert not broken, "paths that do not resolve (moved? see docs/architecture.md):\n" + "\n".join(broken)


def test_the_checker_finds_a_broken_path(tmp_path, monkeypatch):
    """The check can fail: a made-up file naming paths that do not exist is reported, line by line."""
    fake = ROOT / "tests" / "unit" / "_paths_probe.md"
    fake.write_text("run lab/labctl.py up\nsee playbooks/no_such_playbook.yml\nok: playbooks/\n"
                    "and ../../dev/no_such_dir/x.py\ncmd: {{ agbotkit_lab.root }}/dev/no_such.sh\n")
    try:
        broken = find_broken([str(fake.relative_to(ROOT))])
    finally:
        fake.unlink()
    assert any("lab/labctl.py" in b for b in broken) or _exists("lab/labctl.py")
    assert any("playbooks/no_such_playbook.yml" in b for b in broken)
    assert any("dev/no_such_dir/x.py" in b for b in broken)
    assert any("agbotkit_lab.root }}/dev/no_such.sh" in b for b in broken)
    assert not any(b.endswith(": playbooks/") for b in broken)


LAB_TEST = re.compile(r"^tests/(unit|integration)/(test_lab_\w*|test_k8s_emulator)\.py$")


def test_harness_stays_apart_from_the_product():
    """The lab's own tests live in tests/lab/, lab-only playbooks in dev/playbooks/ (not shipped)."""
    misplaced = [p for p in TRACKED if LAB_TEST.match(p)]
    misplaced += [p for p in TRACKED if re.match(r"^playbooks/[^/]+\.ya?ml$", p)
                  and ("lab" in Path(p).stem.split("_") or re.search(r"dr_environment\s*==\s*'lab'",
                                                                     (ROOT / p).read_text(encoding="utf-8")))]
    misplaced += [p for p in TRACKED if p.split("/")[0] in ("lab", "bench", "scripts")]
    assert not misplaced, ("harness files outside dev/ and tests/lab/ (lab tests -> tests/lab/{unit,integration}, "
                           "lab-only playbooks -> dev/playbooks, lab/bench/scripts -> dev/):\n" + "\n".join(misplaced))


TEST_HOMES = ("tests/unit", "tests/integration", "tests/lab/unit", "tests/lab/integration")


def test_every_test_file_is_in_a_folder_a_lane_runs():
    """dev/scripts/test.sh runs tests/unit and tests/lab/unit in the static lane, and every
    tests/integration/test_*.py and tests/lab/integration/test_*.py in a lab lane: a test file elsewhere never runs."""
    lanes = (ROOT / "dev/scripts/test.sh").read_text(encoding="utf-8")
    assert "tests/unit tests/lab/unit" in lanes
    assert "tests/integration/test_*.py tests/lab/integration/test_*.py" in lanes
    stray = [p for p in TRACKED
             if re.fullmatch(r"test_\w+\.py", Path(p).name) and str(Path(p).parent) not in TEST_HOMES]
    assert not stray, "test files outside " + ", ".join(TEST_HOMES) + ":\n" + "\n".join(stray)

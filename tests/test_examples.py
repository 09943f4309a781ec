"""The examples run as documented, write their pictures where asked, and leave the tree clean."""

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


# Text sources people edit (possibly while the tests run); the examples write pictures.
EDITED_BY_HAND = {".py", ".md", ".rst", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".json"}


def tree_state():
    """(mtime, size) of every file git tracks or would add, text sources left out.

    None outside a git checkout.
    """
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    state = {}
    for name in filter(None, listed):
        path = ROOT / name
        if path.suffix in EDITED_BY_HAND:
            continue
        state[name] = (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None
    return state


@pytest.fixture
def run_example(tmp_path, monkeypatch):
    """Run an example as ``python examples/<script> <args>`` from an empty working folder.

    Asserts afterwards that nothing in the git tree changed and that nothing was written
    to the working folder but what the arguments asked for.
    """
    pytest.importorskip("matplotlib")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = tree_state()

    def run(script, *args):
        monkeypatch.setattr(sys, "argv", [script, *args])
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        return cwd

    yield run
    import matplotlib.pyplot as plt

    plt.close("all")
    before, after = before or {}, tree_state() or {}
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert not changed, f"the example changed files in the repository: {changed}"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_uncertainty_writes_png_to_the_working_folder(run_example, capsys):
    cwd = run_example("plot_uncertainty.py")  # no --out: the current folder
    assert [p.name for p in cwd.iterdir()] == ["uncertainty.png"]
    assert (cwd / "uncertainty.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    # the band is wider far from the data than on it
    stats = [float(t.rstrip(";")) for t in printed.split() if t.rstrip(";").replace(".", "").isdigit()]
    on_data, far = stats[-3], stats[-1]
    assert far > 3 * on_data


def test_examples_say_what_they_show():
    for script in EXAMPLES.glob("*.py"):
        doc = script.read_text().split('"""')[1]
        assert len(doc.strip()) > 80, script.name


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "script, picture, reduced",
    [
        # reduced sizes: the tests check that the scripts run and write, not their numbers
        ("oob_vs_cv.py", "oob_vs_cv.png", ["--splits", "2"]),
        ("mothernets_pareto.py", "mothernets_pareto.png", ["--seeds", "1", "--max-iter", "15"]),
        ("hyperparameter_ensemble.py", "hyperparameter_ensemble.png",
         ["--members", "6", "--max-iter", "10"]),
    ],
)
def test_plotting_examples_write_to_out(script, picture, reduced, run_example, tmp_path, capsys):
    out = tmp_path / "pictures"
    cwd = run_example(script, "--out", str(out), *reduced)
    assert (out / picture).stat().st_size > 10_000
    assert list(cwd.iterdir()) == []
    assert f"saved {out / picture}" in capsys.readouterr().out


def test_readme_pictures_have_one_command():
    """Every picture the README shows is written by benchmarks/make_readme_figures.py."""
    figures = runpy.run_path(str(ROOT / "benchmarks" / "make_readme_figures.py"))["FIGURES"]
    shown = set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (ROOT / "README.md").read_text()))
    written = {picture for picture, _ in figures.values()}
    assert shown <= written, f"README pictures no command writes: {sorted(shown - written)}"
    for picture, command in figures.values():
        assert (ROOT / command[0]).is_file(), command
        if command[0].startswith("examples/"):  # examples write to --out, the picture's folder
            assert command[1:] == ["--out", str(Path(picture).parent)], command

"""The examples run as documented, write their pictures where asked, and leave the tree clean."""

import json
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
    assert sorted(p.name for p in cwd.iterdir()) == ["uncertainty.json", "uncertainty.png"]
    assert (cwd / "uncertainty.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    # the band is wider far from the data than on it
    stats = [float(t.rstrip(";")) for t in printed.split() if t.rstrip(";").replace(".", "").isdigit()]
    on_data, far = stats[-3], stats[-1]
    assert far > 3 * on_data
    # the JSON holds what was printed (the documentation's figure check reads it)
    figures = json.loads((cwd / "uncertainty.json").read_text())
    assert f"{figures['std_data']:.3f}" == f"{on_data:.3f}"
    assert f"{figures['std_beyond']:.3f}" == f"{far:.3f}"


def test_examples_say_what_they_show():
    for script in EXAMPLES.glob("*.py"):
        doc = script.read_text().split('"""')[1]
        assert len(doc.strip()) > 80, script.name


def printed_number(printed, before):
    """The number printed right after the text ``before``."""
    return re.search(re.escape(before) + r"\s*([-+]?\d+(?:\.\d+)?)", printed).group(1)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "script, picture, reduced, printed_as",
    [
        # reduced sizes: the tests check that the scripts run and write, not their numbers;
        # printed_as: (text printed before a figure, its key in the JSON, its format)
        ("oob_vs_cv.py", "oob_vs_cv.png", ["--splits", "2"],
         ("split 0 (train_test_split's random_state=0): OOB", "split0/oob_r2", ".3f")),
        ("mothernets_pareto.py", "mothernets_pareto.png", ["--seeds", "1", "--max-iter", "15"],
         ("independent (random init)", "methods/independent (random init)/test_error/mean",
          ".4f")),
        ("hyperparameter_ensemble.py", "hyperparameter_ensemble.png",
         ["--members", "6", "--max-iter", "10"],
         ("validation MSE (standardised targets): selected", "selection_score", ".4f")),
    ],
)
def test_plotting_examples_write_to_out(script, picture, reduced, printed_as, run_example,
                                        tmp_path, capsys):
    out = tmp_path / "pictures"
    cwd = run_example(script, "--out", str(out), *reduced)
    assert (out / picture).stat().st_size > 10_000
    assert list(cwd.iterdir()) == []
    printed = capsys.readouterr().out
    assert f"saved {out / picture}" in printed
    figures_file = out / (Path(picture).stem + ".json")
    assert f"saved {figures_file}" in printed
    figures = json.loads(figures_file.read_text())
    before, key, spec = printed_as
    value = figures
    for part in key.split("/"):
        value = value[part]
    assert format(value, spec) == printed_number(printed, before)


def test_every_example_writes_its_printed_figures():
    """Each example takes --out and writes a JSON of its figures there (check_docs reads them)."""
    for script in sorted(EXAMPLES.glob("*.py")):
        text = script.read_text()
        assert '"--out"' in text, f"{script.name} takes no --out"
        assert ".json" in text and "json.dumps" in text, f"{script.name} writes no JSON figures"


def test_readme_pictures_have_one_command():
    """Every picture the README shows is written by benchmarks/make_readme_figures.py, or
    (the results table's picture) by benchmarks/check_docs.py --write with its table."""
    figures = runpy.run_path(str(ROOT / "benchmarks" / "make_readme_figures.py"))["FIGURES"]
    check_docs = runpy.run_path(str(ROOT / "benchmarks" / "check_docs.py"))
    shown = set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (ROOT / "README.md").read_text()))
    written = {picture for picture, _ in figures.values()} | {check_docs["PEERS_PICTURE"]}
    assert shown <= written, f"README pictures no command writes: {sorted(shown - written)}"
    for picture, command in figures.values():
        assert (ROOT / command[0]).is_file(), command
        if command[0].startswith("examples/"):  # examples write to --out, the picture's folder
            assert command[1:] == ["--out", str(Path(picture).parent)], command

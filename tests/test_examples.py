"""The examples run as documented and write what they promise."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_uncertainty_writes_png(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "band.png"
    monkeypatch.setattr(sys, "argv", ["plot_uncertainty.py", str(out)])
    runpy.run_path(str(EXAMPLES / "plot_uncertainty.py"), run_name="__main__")
    assert out.stat().st_size > 10_000
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
@pytest.mark.parametrize("script", ["oob_vs_cv.py", "mothernets_pareto.py"])
def test_plotting_examples_run(script, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.png"
    monkeypatch.setattr(sys, "argv", [script, str(out)])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert out.stat().st_size > 10_000
    assert "saved" in capsys.readouterr().out

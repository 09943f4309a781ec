"""benchmarks/check_docs.py: every figure the README and docs/ quote equals its source."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import check_docs  # noqa: E402

BUILT = ("_build", "generated", "auto_examples", "_gallery_src", "sg_execution_times.rst")


@pytest.fixture
def repo(tmp_path):
    """A copy of what the check reads: the texts, the registry and every source."""
    copy = tmp_path / "repo"
    (copy / "benchmarks" / "results").mkdir(parents=True)
    (copy / "examples" / "images").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copy(ROOT / check_docs.REGISTRY, copy / check_docs.REGISTRY)
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns(*BUILT))
    for pattern in ("benchmarks/results/*.json", "examples/images/*.json"):
        for path in ROOT.glob(pattern):
            shutil.copy(path, copy / path.relative_to(ROOT))
    return copy


def run(root, capsys, *args):
    code = check_docs.main(["--root", str(root), *args])
    return code, capsys.readouterr().out


def line_number(path, needle):
    lines = path.read_text(encoding="utf-8").split("\n")
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_repository_figures_equal_their_sources():
    problems = check_docs.check(ROOT)
    assert not problems, "\n".join(map(str, problems))


def registry_entry(source_suffix):
    registry = json.loads((ROOT / check_docs.REGISTRY).read_text(encoding="utf-8"))
    return next(e for e in registry["figures"] if e["source"].endswith(source_suffix)
                and not e["keys"][0].startswith("="))


def test_drifted_prose_figure_fails_with_line_and_both_values(repo, capsys):
    entry = registry_entry("hyperparameter_ensemble.json")
    source = json.loads((repo / entry["source"]).read_text())
    key, spec = entry["keys"][-1], entry["format"][-1]
    true = check_docs.fmt(check_docs.lookup(source, key), spec)
    doc = repo / entry["file"]
    text = doc.read_text(encoding="utf-8")
    match = check_docs.template_regex(entry["text"]).search(text)
    start, end = match.span(len(entry["keys"]))
    assert text[start:end] == true
    drifted = "0.1234" if true != "0.1234" else "0.4321"
    doc.write_text(text[:start] + drifted + text[end:], encoding="utf-8")
    line = text.count("\n", 0, start) + 1

    code, out = run(repo, capsys)
    assert code == 1
    assert (f"{entry['file']}:{line}: the text says {drifted}, {entry['source']} {key} gives {true}"
            in out)


def test_drifted_source_fails_too(repo, capsys):
    entry = registry_entry("oob_vs_cv.json")
    path = repo / entry["source"]
    source = json.loads(path.read_text())
    source["n_train"] += 1
    path.write_text(json.dumps(source))
    code, out = run(repo, capsys)
    assert code == 1
    assert f"the text says {source['n_train'] - 1}, {entry['source']} n_train gives " \
           f"{source['n_train']}" in out


def test_drifted_generated_table_fails_and_write_regenerates_it(repo, capsys):
    readme = repo / "README.md"
    text = readme.read_text(encoding="utf-8")
    row = next(line for line in text.split("\n") if line.startswith("| CatBoost |"))
    cells = row.split(" | ")
    true = cells[1]
    cells[1] = "9.99"
    readme.write_text(text.replace(row, " | ".join(cells)), encoding="utf-8")
    line = line_number(readme, "| CatBoost |")

    code, out = run(repo, capsys)
    assert code == 1
    assert f"README.md:{line}: generated block 'quality-peers'" in out
    assert f"'9.99' where benchmarks/results/quality.json gives '{true}'" in out

    code, out = run(repo, capsys, "--write")
    assert "rewrote the generated blocks of README.md" in out
    assert readme.read_text(encoding="utf-8") == text
    assert run(repo, capsys)[0] == 0


def test_changed_results_file_shows_in_the_generated_table(repo, capsys):
    path = repo / "benchmarks/results/cold_start.json"
    data = json.loads(path.read_text())
    data["summary_median"]["cold"]["compile_s"] = 7.25
    path.write_text(json.dumps(data))
    code, out = run(repo, capsys)
    assert code == 1
    assert "generated block 'cold-start'" in out and "gives '7.2 s'" in out


def test_unregistered_number_in_a_results_table_is_flagged(repo, capsys):
    readme = repo / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\n| case | seconds |\n|---|--:|\n"
                      "| new measurement | 3.14 |\n", encoding="utf-8")
    guide = repo / "docs/user_guide/reliability.rst"
    guide.write_text(guide.read_text(encoding="utf-8") + "\n.. list-table::\n   :header-rows: 1\n\n"
                     "   * - case\n     - ratio\n     - setting\n   * - one\n     - 2.72x\n"
                     "     - `n_jobs=42` (code)\n", encoding="utf-8")
    code, out = run(repo, capsys)
    assert code == 1
    line = line_number(readme, "| new measurement | 3.14 |")
    assert f"README.md:{line}: unregistered figure 3.14 in a results table" in out
    line = line_number(guide, "- 2.72x")
    assert f"docs/user_guide/reliability.rst:{line - 1}: unregistered figure 2.72" in out
    assert "figure 42" not in out


def test_registry_text_that_no_longer_occurs_is_reported(repo, capsys):
    registry = json.loads((repo / check_docs.REGISTRY).read_text(encoding="utf-8"))
    registry["figures"].append({"file": "README.md", "text": "a sentence with {} that is gone",
                                "source": "benchmarks/results/cold_start.json",
                                "keys": ["summary_median/cold/compile_s"], "format": ".1f"})
    (repo / check_docs.REGISTRY).write_text(json.dumps(registry), encoding="utf-8")
    code, out = run(repo, capsys)
    assert code == 1
    assert "a sentence with {} that is gone" in out and "does not occur" in out


def test_expressions_and_formats():
    data = {"a": [{"x": 0.5}, {"x": 2.0}], "b": {"c/d": 1}}
    assert check_docs.lookup(data, "a/1/x") == 2.0
    assert check_docs.lookup(data, "=max(r['x'] for r in d['a'])") == 2.0
    assert check_docs.fmt(1.4e-5, "sci1") == "1.4e-5"
    assert check_docs.fmt(0.4089, ".0%") == "41%"
    assert check_docs.fmt(-0.209, "+.3f") == "-0.209"
    with pytest.raises(check_docs.SourceError):
        check_docs.lookup(data, "b/c")
    regex = check_docs.template_regex("R² {} ({}) from one\nfit")
    assert regex.search("R² 0.482 (0.027) from   one fit").groups() == ("0.482", "0.027")


def test_summarise_equals_the_benchmarks_own():
    """The check's ranks are bench_quality.summarise's (which needs pandas to import)."""
    pytest.importorskip("pandas")
    pytest.importorskip("scipy")
    import bench_quality

    res = json.loads((ROOT / check_docs.QUALITY).read_text())
    for half in ("tuning", "heldout"):
        for methods in (check_docs.PEERS, check_docs.NEURAL):
            ours = check_docs.summarise(res, half, methods)
            theirs = bench_quality.summarise(res, half, methods)
            assert ours[1].keys() == theirs[1].keys()
            for m in ours[1]:
                for k, v in ours[1][m].items():
                    assert v == pytest.approx(theirs[1][m][k], rel=1e-12), (half, m, k)


def test_readme_is_short_and_keeps_its_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.split("\n")) <= 260
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "python examples/quickstart.py\n" in commands
    assert "python -m pytest\n" in commands  # CI runs the README's test command


def test_readme_example_is_python_of_about_twenty_lines():
    import ast

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    ast.parse(example)
    assert 12 <= len(example.strip().split("\n")) <= 25
    names = set(re.findall(r"^from skensemble import (.*)$", example, flags=re.M)[0].split(", "))
    assert names == {"NeuralBaggingClassifier", "NeuralBaggingRegressor"}

"""Sphinx configuration of skensemble's documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference is generated from the docstrings (autosummary + numpydoc), the gallery
from ``examples/`` (sphinx-gallery). Generated sources (``docs/generated``,
``docs/auto_examples``, ``docs/_gallery_src``, ``docs/sg_execution_times.rst``) and the
output (``docs/_build``) are ignored by git.
"""

import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import skensemble

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))  # _gallery_helpers (named by string below), _math_svg

# -- Project -------------------------------------------------------------------------
project = "skensemble"
author = "the skensemble developers"
copyright = "the skensemble developers"
release = skensemble.__version__
version = release

# -- General -------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "_math_svg",  # math drawn at build time (matplotlib's mathtext): no MathJax, no network
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_gallery_src", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"  # `x` in the guide is code, as ``x``
pygments_style = "sphinx"
# Curly quotes and ellipses, but no dashes: "--out" in the examples' usage lines stays "--out".
smartquotes_action = "qe"

# -- API reference: autosummary + numpydoc ---------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"  # the numpydoc sections carry the types
toc_object_entries_show_parents = "hide"  # "fit()" in the page's contents, not "Class.fit()"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False


# scikit-learn's metadata-routing methods (set_fit_request, get_metadata_routing, ...)
# are inherited plumbing; the API pages mention them instead of repeating their docs.
_ROUTING = re.compile(r"^(set_\w+_request|get_metadata_routing)$")


def _skip_member(app, what, name, obj, skip, options):
    """Skip scikit-learn's metadata-routing methods."""
    if _ROUTING.match(name):
        return True
    return skip


# Docstrings inherited from scikit-learn (e.g. ClassifierMixin.score) refer to labels and
# glossary terms of scikit-learn's own documentation: keep their text, drop the link.
_SKLEARN_ROLE = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<[^`>]*>)?`")


def _plain_sklearn_roles(app, what, name, obj, options, lines):
    """Replace scikit-learn's :ref: and :term: roles by their text."""
    if getattr(obj, "__module__", "").startswith("sklearn."):
        lines[:] = [_SKLEARN_ROLE.sub(r"\1", line) for line in lines]


# -- Gallery: sphinx-gallery over examples/ --------------------------------------------
# sphinx-gallery wants a header file (GALLERY_HEADER.rst) in the folder it reads, and a
# reST title at the top of each example's docstring. The examples stay plain scripts
# where users find them (examples/); each build copies them into docs/_gallery_src
# (ignored by git), underlining the first paragraph of a docstring as its title where
# it has none, with the header kept here.
GALLERY_SRC = DOCS / "_gallery_src"
_QUOTES = ('"""', "'''")


def _with_title(source):
    """``source`` with the first paragraph of its module docstring made a reST title."""
    start = len(source) - len(source.lstrip())
    if not source.startswith(_QUOTES, start):
        return source
    head = start + 3
    lines = source[head:].split("\n")
    first = []
    for line in lines:
        if not line.strip() or line.strip().endswith(_QUOTES):
            break
        first.append(line.strip())
    rest = lines[len(first):]
    if not first or (rest and set(rest[0].strip()) <= set("=-~^*+#") and rest[0].strip()):
        return source  # no first paragraph, or already a title
    title = " ".join(first).rstrip(".")
    return source[:head] + "\n".join([title, "=" * len(title), *rest])


def _stage_examples():
    """Copy examples/*.py (titled) and the gallery header into GALLERY_SRC."""
    GALLERY_SRC.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted((ROOT / "examples").glob("*.py"))}
    for old in GALLERY_SRC.iterdir():  # examples removed since, and anything else
        if old.name not in wanted and old.name != "GALLERY_HEADER.rst":
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
    for name, src in wanted.items():
        dst = GALLERY_SRC / name
        text = _with_title(src.read_text(encoding="utf-8"))
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            dst.write_text(text, encoding="utf-8")  # unchanged files keep their time stamp
    header = (DOCS / "gallery_header.txt").read_text(encoding="utf-8")
    header = header.replace("@NOTE@", _gallery_note())
    target = GALLERY_SRC / "GALLERY_HEADER.rst"
    if not target.exists() or target.read_text(encoding="utf-8") != header:
        target.write_text(header, encoding="utf-8")


# Examples executed during the build (the others are shown with their source only): the
# faster ones, about a minute together on the 2-core development machine (oob_vs_cv.py
# with fewer splits: _gallery_helpers.EXTRA_ARGS; quantile_coverage.py about 10 s).
# quickstart.py (about 50 s, mostly its scikit-learn baseline), hyperparameter_ensemble.py
# (about 2 minutes) and distributed_search.py (about 30 s; starts a Dask cluster of worker
# processes) are not run. SKENSEMBLE_DOCS_GALLERY=all runs every one;
# SKENSEMBLE_DOCS_GALLERY=none runs none (a quick build of the text). The gallery's note is
# written from this choice.
_RUN = {
    "fast": r"/(plot_uncertainty|oob_vs_cv|mothernets_pareto|quantile_coverage)\.py$",
    "all": r"\.py$",
    "none": r"^$",
}[os.environ.get("SKENSEMBLE_DOCS_GALLERY", "fast")]


def _gallery_note():
    """The gallery header's note: which examples this build executes, which it shows only."""
    from _gallery_helpers import EXTRA_ARGS

    names = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    run = [n for n in names if re.search(_RUN, "/" + n)]
    shown = [n for n in names if n not in run]

    def listed(items):
        items = [f"``{n}``" + (f" (with ``{' '.join(EXTRA_ARGS[n])}``)" if n in EXTRA_ARGS
                               and n in run else "") for n in items]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    if not run:
        return "This build of the pages executed no example: each is shown with its source only."
    text = (f"To keep the documentation build short, the pages were built executing "
            f"{listed(run)}. Their output and figures below come from that run, on whatever "
            "machine built these pages, so times and scores differ a little from a run of "
            "your own.")
    if shown:
        one = len(shown) == 1
        text += (f" {listed(shown)} {'is' if one else 'are'} shown with "
                 f"{'its' if one else 'their'} source only; to execute every example, build "
                 "with the environment variable ``SKENSEMBLE_DOCS_GALLERY=all``.")
    return textwrap.fill(text, width=88, initial_indent="   ", subsequent_indent="   ",
                         break_on_hyphens=False, break_long_words=False)


_stage_examples()

# Static thumbnails of the examples that a build does not execute are named in the
# examples themselves (sphinx_gallery_thumbnail_path, relative to this folder).
sphinx_gallery_conf = {
    "examples_dirs": str(GALLERY_SRC),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _RUN,
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    # Pictures and figures the examples save themselves go to the folder they run in
    # (docs/_gallery_src, ignored by git and cleaned by each build), so their output names
    # a file, not a temporary path; sphinx-gallery captures the matplotlib figures.
    "reset_argv": "_gallery_helpers.reset_argv",
    # "Examples using this class" on each API page.
    "doc_module": ("skensemble",),
    "backreferences_dir": "generated/backreferences",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "show_signature": False,
}

# -- Link check ------------------------------------------------------------------------
# CI has no network: `sphinx -b linkcheck` checks the local targets (files the pages link
# to); external addresses are checked only with SKENSEMBLE_LINKCHECK_ONLINE=1.
if os.environ.get("SKENSEMBLE_LINKCHECK_ONLINE") != "1":
    linkcheck_ignore = [r"^https?://"]

# -- HTML ------------------------------------------------------------------------------
html_math_renderer = "math_svg"
html_theme = "pydata_sphinx_theme"
html_title = f"skensemble {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "navigation_with_keys": False,
}
# The front page and the gallery's index (whose cards are its navigation) use the full width.
html_sidebars = {"index": [], "auto_examples/index": []}


def setup(app):
    """Connect the autodoc hooks above."""
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _plain_sklearn_roles)

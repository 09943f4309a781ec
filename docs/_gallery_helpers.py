"""Helpers that docs/conf.py names by string (Sphinx must be able to pickle its config)."""

from pathlib import Path

# Extra command-line arguments of examples executed during the docs build, to keep the
# build short. oob_vs_cv.py repeats everything over 10 random splits by default (about
# 100 s on the 2-core development machine); 3 splits show the same comparison.
EXTRA_ARGS = {
    "oob_vs_cv.py": ["--splits", "3"],
}


def reset_argv(gallery_conf, script_vars):
    """Command-line arguments of an example run by sphinx-gallery: ``--out .`` and more.

    sphinx-gallery runs each example in the folder it reads it from (docs/_gallery_src,
    ignored by git and cleaned at the start of each build), so the pictures and JSON
    figures an example saves land there and what it prints names no temporary folder.
    sphinx-gallery captures the matplotlib figures for the pages itself.
    """
    name = Path(script_vars["src_file"]).name
    return ["--out", ".", *EXTRA_ARGS.get(name, [])]

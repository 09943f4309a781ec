"""Helpers that docs/conf.py names by string (Sphinx must be able to pickle its config)."""

import atexit
import shutil
import tempfile
from pathlib import Path

_OUT = []

# Extra command-line arguments of examples executed during the docs build, to keep the
# build short. oob_vs_cv.py repeats everything over 10 random splits by default (about
# 100 s on the 2-core development machine); 3 splits show the same comparison.
EXTRA_ARGS = {
    "oob_vs_cv.py": ["--splits", "3"],
}


def out_dir():
    """A temporary folder, outside the repository, for the pictures examples save."""
    if not _OUT:
        path = tempfile.mkdtemp(prefix="skensemble-docs-gallery-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _OUT.append(path)
    return _OUT[0]


def reset_argv(gallery_conf, script_vars):
    """Command-line arguments of an example run by sphinx-gallery: ``--out TMPDIR`` and more.

    sphinx-gallery captures the matplotlib figures for the pages itself; the copies the
    examples save go to a temporary folder that is removed when the build ends.
    """
    name = Path(script_vars["src_file"]).name
    return ["--out", out_dir(), *EXTRA_ARGS.get(name, [])]

"""The tails of robust scaling, ablated on bench_quality.py's tuning half.

Runs ``bench_quality.py`` (its arguments pass through) with ``skensemble._scaling``
changed for the whole process, so that the ``skensemble_default`` configuration under
another name measures another way to treat the tails:

* ``TAILS=asinh``: every fit compresses the tails as ``CLIP * asinh(z / CLIP)`` (what the
  defaults do from ``ASINH_ROWS`` training rows on), whatever its size;
* ``TAILS=none``: no compression (``CLIP`` made 1e6: the smooth clipping is the identity
  on any real value);
* ``TAILS=clip10``: the smooth clipping at 10 instead of 3;
* ``TAILS=long_tails``: below ``ASINH_ROWS`` rows, features with 5% or more of their rows
  beyond the clip take the asinh tails (``TAIL_SHARE = 0.05``);
* ``TAILS=clip_all``: ``TAIL_SHARE`` infinite, the default (every feature clipped below
  ``ASINH_ROWS`` rows).

How ``benchmarks/results/quality_ablation_clip.json`` was made (one core each, tuning half,
3 splits; ``input_scaling="standard"`` needs no patch)::

    TAILS=none   python benchmarks/ablate_tails.py --half tuning \\
        --configs-json '{"skensemble_noclip": {}}' --methods skensemble_noclip --out OUT
    python benchmarks/ablate_tails.py --half tuning \\
        --configs-json '{"skensemble_standard": {"input_scaling": "standard"}}' \\
        --methods skensemble_standard --out OUT
    TAILS=clip10 python benchmarks/ablate_tails.py ... skensemble_clip10 ...
    TAILS=asinh  python benchmarks/ablate_tails.py ... skensemble_asinh ...

and ``benchmarks/results/quality_ablation_tails.json`` (the long-tail rule, TAIL_SHARE;
run at f678af9, where 0.05 was the default for a while, so its long_tails rows ran with
no TAILS set; today's equivalent is TAILS=long_tails)::

    TAILS=clip_all python benchmarks/ablate_tails.py --half tuning \
        --configs-json '{"skensemble_clip_all": {}}' --methods skensemble_clip_all --out OUT
    TAILS=long_tails python benchmarks/ablate_tails.py --half tuning \
        --configs-json '{"skensemble_long_tails": {}}' --methods skensemble_long_tails --out OUT

(The asinh rows ran at commit c8058ee with the same formula patched in from outside, before
it became part of the package.)
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import skensemble._scaling as scaling  # noqa: E402

TAILS = os.environ.get("TAILS", "")
if TAILS == "asinh":
    scaling.ASINH_ROWS = 0
elif TAILS == "none":
    scaling.CLIP = 1e6
elif TAILS == "clip10":
    scaling.CLIP = 10.0
elif TAILS == "clip_all":
    scaling.TAIL_SHARE = float("inf")
elif TAILS == "long_tails":
    scaling.TAIL_SHARE = 0.05
elif TAILS:
    raise SystemExit(f"TAILS={TAILS!r}: use asinh, none, clip10, clip_all or long_tails")

import bench_quality  # noqa: E402

if __name__ == "__main__":
    bench_quality.main(sys.argv[1:])

"""What a benchmark ran on: machine, library versions, thread counts, load, git state."""

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import sklearn
import torch


def machine_info(device=None):
    """Facts to store beside benchmark timings (a dict of JSON-serialisable values)."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), None)
    import numba

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "skensemble")),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info

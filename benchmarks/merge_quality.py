"""Merge bench_quality.py result files into one (fits of later files replace earlier ones).

    python benchmarks/merge_quality.py OUT IN1 [IN2 ...] [--rename OLD=NEW ...]

Each input is a JSON that ``bench_quality.py --out`` wrote; fits are keyed by (data set,
split, method), and ``--rename`` renames a method of the *first* input (e.g. to keep the
fits of an earlier default under another name). Runs are kept with their machine info,
so every fit still names the commit that produced it.
"""

import argparse
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--rename", action="append", default=[])
    args = parser.parse_args()
    rename = dict(r.split("=", 1) for r in args.rename)
    merged, fits = None, {}
    for k, path in enumerate(args.inputs):
        with open(path) as f:
            d = json.load(f)
        if merged is None:
            merged = {**d, "runs": [], "results": [], "notes": list(d.get("notes", []))}
        else:
            merged["datasets"].update(d["datasets"])
            merged["methods"].update(d["methods"])
            merged["notes"] += [n for n in d.get("notes", []) if n not in merged["notes"]]
        offset = len(merged["runs"])
        merged["runs"] += d["runs"]
        for rec in d["results"]:
            rec = {**rec, "run": rec["run"] + offset}
            if k == 0 and rec["method"] in rename:
                rec["method"] = rename[rec["method"]]
            fits[rec["dataset"], rec["split"], rec["method"]] = rec
        if k == 0:
            for old, new in rename.items():
                if old in merged["methods"]:
                    merged["methods"][new] = merged["methods"].pop(old)
    merged["results"] = list(fits.values())
    merged.pop("summary", None)  # bench_quality.py --table-only recomputes it
    with open(args.out, "w") as f:
        json.dump(merged, f, indent=1)
    print(f"{len(fits)} fits from {len(args.inputs)} files -> {args.out}")


if __name__ == "__main__":
    main()

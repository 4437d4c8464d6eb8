"""Quality and speed targets, measured side by side in one run and printed as tables.

    python scripts/benchmark.py                 # every benchmark (tens of minutes on 2 CPU cores)
    python scripts/benchmark.py --only crps mdn # some of them
    python scripts/benchmark.py --quick         # tiny sizes: checks that each one runs
    python scripts/benchmark.py --device cuda --quick-gpu   # the GPU benchmark (< 8 min)

Each benchmark lives in ``benchmarks/NAME.py`` with ``run(args) -> dict``; the results of a run
are also written to ``--out`` (default ``reports/benchmark.json``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHMARKS = ["crps", "regression", "mdn", "classifiers", "vae", "flow", "bnn", "ddp", "forecast"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", choices=[*BENCHMARKS, "gpu"], default=None)
    p.add_argument(
        "--quick-gpu",
        action="store_true",
        help="the GPU benchmark alone (benchmarks/gpu.py); with --quick, tiny sizes",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the code paths")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist")
    )
    p.add_argument("--out", default="reports/benchmark.json")
    args = p.parse_args(argv)
    names = ["gpu"] if args.quick_gpu else (args.only or BENCHMARKS)
    results = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        results[name] = module.run(args)
        results[name]["wall_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    failed = [n for n, r in results.items() if r.get("passed") is False]
    unchecked = [n for n, r in results.items() if r.get("passed") is None]
    print(f"\nresults written to {out}")
    print("targets met: all checked" if not failed else f"targets missed: {', '.join(failed)}")
    if unchecked:
        print(f"targets not checked (--quick, or none set): {', '.join(unchecked)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

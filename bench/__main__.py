"""Run every benchmark module's `run()` (or the ones named on the command line) and print numbers."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time

import bench


def main(names: list[str]) -> int:
    available = sorted(module.name for module in pkgutil.iter_modules(bench.__path__)
                       if not module.name.startswith("_"))
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    results = {}
    for name in chosen:
        started = time.perf_counter()
        results[name] = importlib.import_module(f"bench.{name}").run()
        results[name]["bench_seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run every benchmark and print the whole table: ``make bench`` (full size) and ``make bench-smoke`` (CI).

    python tests/bench/run_all.py [--smoke] [--only api_runs,run_path]

Each benchmark runs in its own process, prints its own table and writes ``bench-results/<name>.json``;
this runner then prints every figure in one table with the machine and versions, and writes
``bench-results/summary.json``. A benchmark that fails is reported and the others still run; the exit
status is 1 when any failed. Timings are never asserted: a missed goal is printed, not failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass

from benchkit import BENCH_DIR, RESULTS_DIR, Figure, bench_env, machine, print_table


@dataclass(frozen=True, kw_only=True)
class Bench:
    name: str
    """The benchmark's name: its JSON is ``bench-results/<name>.json``."""
    script: str
    full: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ("--smoke",)


BENCHES = (
    Bench(name="beat_tick", script="bench_tick.py"),
    Bench(name="run_path", script="bench_runs.py"),
    Bench(name="api_runs", script="bench_api.py"),
    Bench(name="dunning", script="bench_dunning.py", full=("--accounts", "1000000", "--threads", "2")),
    Bench(name="usage_mediation", script="bench_mediation.py", full=("--records", "1000000")),
    Bench(name="gl_collector", script="bench_gl.py", full=("--documents", "1000000")),
    Bench(name="erp_transfer", script="bench_erp.py", full=("--records", "1000000")),
    Bench(name="scale_out", script="bench_scaleout.py"),
    Bench(name="cron", script="bench_cron.py", full=("--expressions", "1000", "--fires", "20"),
          smoke=("--expressions", "100", "--fires", "5", "--repeat", "1")),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every benchmark at its small size (CI)")
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    failed: list[str] = []
    took: dict[str, float] = {}
    for bench in chosen:
        started = time.perf_counter()
        argv_ = [sys.executable, str(BENCH_DIR / bench.script), *(bench.smoke if args.smoke else bench.full)]
        (RESULTS_DIR / f"{bench.name}.json").unlink(missing_ok=True)
        code = subprocess.call(argv_, env=bench_env())
        took[bench.name] = round(time.perf_counter() - started, 1)
        if code != 0 or not (RESULTS_DIR / f"{bench.name}.json").exists():
            failed.append(bench.name)
            print(f"!! {bench.name} failed (exit {code})", file=sys.stderr)

    figures: list[Figure] = []
    versions: dict[str, str] = {}
    for bench in chosen:
        path = RESULTS_DIR / f"{bench.name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        versions.update(data.get("versions", {}))
        for f in data["figures"]:
            f.pop("ratio", None)
            figures.append(Figure(**{**f, "scenario": f"{bench.name}: {f['scenario']}", "note": ""}))
    host = machine()
    print(f"\n==== all benchmarks ({'smoke' if args.smoke else 'full'} size) on {host['cores']} cores "
          f"({host['cpu']}), {host['memory_gib']} GiB, load average {' '.join(map(str, host['load_average']))}")
    print("     " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print_table(figures)
    print("     seconds per benchmark: " + ", ".join(f"{k} {v}" for k, v in took.items()))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.json").write_text(json.dumps({
        "size": "smoke" if args.smoke else "full", "machine": host, "versions": versions, "seconds": took,
        "failed": failed, "figures": [{**f.__dict__, "ratio": f.ratio} for f in figures],
    }, indent=2, default=str) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

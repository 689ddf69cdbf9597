"""Cron benchmark: our engine's next fire times against croniter's, measured in the same run.

For each workload, both engines parse every expression and compute its next ``--fires`` fire times
after the same instant in the same zone; the table shows fires per second and the ratio (ours /
croniter). Workloads: common billing schedules, generated expressions (the grammar of the
differential test), and rare matches (``0 0 29 2 *`` and friends) that need a long look-ahead.

    python tests/bench/bench_cron.py --expressions 1000 --fires 20
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scheduler"))

from benchkit import Figure, Report, versions
from cron_oracle import ZONES, croniter_fires, random_after, random_expression

from scheduler.cron import CronSchedule

COMMON = ("0 2 * * *", "*/15 * * * *", "30 1 * * *", "0 9 * * MON-FRI", "0 23 L * *", "0 6 1 * *", "@hourly",
          "0 0 1 1,4,7,10 *", "5 4 * * SUN", "0 */2 * * *")
RARE = ("0 0 29 2 *", "@yearly", "0 0 29 2 1", "0 0 31 12 *", "0 12 13 * FRI")

Workload = list[tuple[str, str, datetime]]


def _ours(workload: Workload, fires: int) -> int:
    found = 0
    for expression, zone, after in workload:
        found += len(CronSchedule.parse(expression, zone).next_fires(after, fires))
    return found


def _croniter(workload: Workload, fires: int) -> int:
    return sum(len(croniter_fires(expression, zone, after, fires) or ()) for expression, zone, after in workload)


def _rate(run: Callable[[Workload, int], int], workload: Workload, fires: int, repeat: int) -> float:
    """Fires per second, best of ``repeat`` runs."""
    best = float("inf")
    found = 0
    for _ in range(repeat):
        started = time.perf_counter()
        found = run(workload, fires)
        best = min(best, time.perf_counter() - started)
    return found / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expressions", type=int, default=1000, help="generated expressions")
    parser.add_argument("--fires", type=int, default=20, help="next fire times per expression")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts")
    args = parser.parse_args(argv)

    rng = random.Random(7)
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    generated: Workload = []
    while len(generated) < args.expressions:
        expression, zone, after = random_expression(rng), rng.choice(ZONES), random_after(rng)
        if croniter_fires(expression, zone, after, args.fires) is not None:
            generated.append((expression, zone, after))  # both engines can run it
    workloads = {
        "common schedules": [(e, z, start) for e in COMMON for z in ZONES],
        "generated expressions": generated,
        "rare matches": [(e, z, start) for e in RARE for z in ZONES],
    }
    results = []
    for name, workload in workloads.items():
        ours = _rate(_ours, workload, args.fires, args.repeat)
        theirs = _rate(_croniter, workload, args.fires, args.repeat)
        results.append({"workload": name, "expressions": len(workload), "fires_each": args.fires,
                        "ours_fires_per_s": round(ours), "croniter_fires_per_s": round(theirs),
                        "ratio": round(ours / theirs, 2)})
    print(f"{'workload':<24}{'expressions':>12}{'ours fires/s':>15}{'croniter fires/s':>18}{'ratio':>8}")
    for row in results:
        print(f"{row['workload']:<24}{row['expressions']:>12}{row['ours_fires_per_s']:>15}"
              f"{row['croniter_fires_per_s']:>18}{row['ratio']:>7}x")
    report = Report(benchmark="cron", size=f"{args.expressions:,} expressions x {args.fires} fires",
                    versions=versions(), details={"results": results})
    for row in results:
        report.add(Figure(scenario=f"next fires, {row['workload']}", figure=row["ours_fires_per_s"], unit="fires/s",
                          baseline=row["croniter_fires_per_s"], baseline_label="croniter"))
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())

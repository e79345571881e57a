"""A new user's first hour: wall time of the quickstart and of every example.

Runs ``python -m overparam_sklearn --device cpu`` and each ``examples/plot_*.py`` as a new user
would: in a fresh process, in the default environment (the thread variables OMP_NUM_THREADS,
MKL_NUM_THREADS, OPENBLAS_NUM_THREADS, ... removed, so torch uses every core), once alone and once
with a busy process beside it (``python -c 'while True: pass'``, started and killed here).
For the quickstart it also reports the fitting time (the sum of the table's time column). The
CPU time (user + system) of the run is printed too: for single-threaded work it is what the wall
time would be with a core to itself, which a heavily shared machine does not give.

Give several source trees with ``--tree`` (for example a checkout of an older commit made with
``git archive <commit> | tar -x -C /tmp/before``) to compare them in the same run: the last
column is then the ratio to the first tree. Each run is cut at ``--timeout`` seconds (reported as
``>timeout``). The machine's 1-minute load average is printed beside every run, since other work
on a shared machine changes the numbers.

Run::

    nice -n 10 python benchmarks/first_hour.py                     # this checkout
    nice -n 10 python benchmarks/first_hour.py --tree /tmp/before --tree . --only quickstart
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "GOTO_NUM_THREADS")


def _targets(tree):
    out = [("quickstart", [sys.executable, "-m", "overparam_sklearn", "--device", "cpu"])]
    for path in sorted((Path(tree) / "examples").glob("plot_*.py")):
        out.append((path.stem, [sys.executable, str(path.relative_to(tree))]))
    return out


def _environment(tree):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(Path(tree).resolve())
    env["MPLBACKEND"] = "Agg"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _fit_seconds(output):
    """Sum of the quickstart table's time column (the rows' fit + score time)."""
    total = 0.0
    for line in output.splitlines():
        match = re.search(r"(?:-?\d+\.\d+|error)\s+(\d+\.\d+)(?:\s+\d+\.\d+)?\s*$", line)
        if match and not line.startswith("total"):
            total += float(match.group(1))
    return total


def run_one(tree, cmd, timeout, busy):
    proc = None
    if busy:
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    load = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        try:
            res = subprocess.run(cmd, cwd=tree, env=_environment(tree), capture_output=True,
                                 text=True, timeout=timeout)
            wall = time.perf_counter() - start
            output, ok = res.stdout + res.stderr, res.returncode == 0
        except subprocess.TimeoutExpired as exc:
            wall = float("inf")
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            ok = False
        # the finished child's CPU time (user + system), before the busy process is reaped
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, output, ok, load, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="source tree(s) to time (default: .)")
    parser.add_argument("--only", action="append", help="targets whose name contains this")
    parser.add_argument("--busy", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    trees = args.tree or ["."]
    conditions = {"both": (False, True), "yes": (True,), "no": (False,)}[args.busy]
    print(f"python {sys.version.split()[0]}, cores {os.cpu_count()}, thread variables removed "
          f"from the environment: {', '.join(THREAD_VARIABLES)}; timeout {args.timeout:.0f} s")
    print(f"{'target':<28} {'busy':<5} {'tree':<24} {'wall s':>8} {'fit s':>8} {'cpu s':>8} "
          f"{'load':>5} {'ratio':>6}")
    names = [name for name, _ in _targets(trees[-1])]
    if args.only:
        names = [n for n in names if any(o in n for o in args.only)]
    results = {}
    for name in names:
        for busy in conditions:
            for tree in trees:
                cmds = dict(_targets(tree))
                if name not in cmds:
                    continue
                wall, output, ok, load, cpu = run_one(tree, cmds[name], args.timeout, busy)
                fit = _fit_seconds(output) if name == "quickstart" else float("nan")
                results[name, busy, tree] = wall
                first = results.get((name, busy, trees[0]))
                ratio = wall / first if first and tree != trees[0] else float("nan")
                shown = f">{args.timeout:.0f}" if wall == float("inf") else f"{wall:.1f}"
                fit_shown = "" if fit != fit else f"{fit:.1f}"
                flag = "" if ok else "  FAILED" if wall != float("inf") else "  (cut)"
                print(f"{name:<28} {'yes' if busy else 'no':<5} {str(tree)[-24:]:<24} "
                      f"{shown:>8} {fit_shown:>8} {cpu:8.1f} {load:5.1f} {ratio:6.2f}{flag}",
                      flush=True)
                if not ok and wall != float("inf"):
                    print("    " + "\n    ".join(output.strip().splitlines()[-5:]))


if __name__ == "__main__":
    main()

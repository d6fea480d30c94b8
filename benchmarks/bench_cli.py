"""How long `irrepprobe --help` and each subcommand's --help take (a fresh process each, the best of 5).

    python benchmarks/bench_cli.py
"""
from __future__ import annotations

import subprocess
import sys
import time

COMMANDS = [[], ["capture"], ["report"], ["prune"], ["train"], ["experiment"]]


def main() -> None:
    print("| command | seconds (best of 5) |\n|---|---:|")
    for cmd in COMMANDS:
        best = min(_once([sys.executable, "-m", "irrepprobe", *cmd, "--help"]) for _ in range(5))
        print(f"| irrepprobe {' '.join(cmd + ['--help'])} | {best:.3f} |")


def _once(argv) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

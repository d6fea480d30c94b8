"""Shared by the benchmark scripts (run as ``python benchmarks/bench_X.py``, so this folder is on sys.path)."""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"

"""Progress bars for long stages: shown on a terminal (stderr), silent in logs, pipes and tests."""
from __future__ import annotations

import sys


def progress(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=not sys.stderr.isatty(), leave=False, **kwargs)

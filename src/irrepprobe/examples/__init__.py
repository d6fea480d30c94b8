"""A small trained checkpoint shipped with the package, so that ``irrepprobe capture`` works at once.
How it was made: ``README.md`` in this folder."""
from pathlib import Path

EXAMPLE = Path(__file__).with_name("u0_lee_small.pt")


def example_checkpoint() -> Path:
    return EXAMPLE

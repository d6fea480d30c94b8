"""Per-irrep activations of a trained model: hooks, block slicing, streaming reductions, capture files."""
from .hooks import Recorder, find_points, refuse_compiled
from .layouts import Block, blocks, split
from .run import capture_checkpoint, run_capture
from .store import Capture, load_capture, summary_table

__all__ = ["Block", "Capture", "Recorder", "blocks", "capture_checkpoint", "find_points", "load_capture",
           "refuse_compiled", "run_capture", "split", "summary_table"]

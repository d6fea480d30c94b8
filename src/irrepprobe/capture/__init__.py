"""Per-irrep activations of a trained model: hooks, block slicing, streaming reductions, capture files."""
from .hooks import Recorder, find_points, hooked, keeping, refuse_compiled, zeroing
from .layouts import Block, blocks, split
from .run import capture_checkpoint, capture_untrained, checkpoint_of, run_capture
from .store import Capture, load_capture, summary_table

__all__ = ["Block", "Capture", "Recorder", "blocks", "capture_checkpoint", "capture_untrained", "checkpoint_of", "find_points", "hooked", "keeping",
           "load_capture", "refuse_compiled", "run_capture", "split", "summary_table", "zeroing"]

"""Per-irrep activations of a trained model: hooks, block slicing, streaming reductions, capture files."""
from .equivariance import check_equivariance, equivariance_line
from ..intervene import hooked, keeping, replacing
from ..irreps import Block, blocks, from_mul_ir, split, to_mul_ir
from .hooks import Recorder
from .points import choose_points, find_points, refuse_compiled, select
from .run import (capture, capture_checkpoint, capture_untrained, model_of, resolve_data, run_capture,
                  structures_of)
from .store import Capture, load_capture, summary_table

__all__ = ["Block", "Capture", "Recorder", "blocks", "capture", "capture_checkpoint", "capture_untrained",
           "check_equivariance", "choose_points", "equivariance_line", "find_points", "from_mul_ir", "hooked",
           "keeping", "load_capture", "model_of", "refuse_compiled", "replacing", "resolve_data", "run_capture",
           "select", "split", "structures_of", "summary_table", "to_mul_ir"]

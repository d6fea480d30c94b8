"""Irreps as data, below every room that reads a model: blocks and layouts (:mod:`.layouts`), random
rotations (:mod:`.rotations`), and the generic e3nn weight-copy kit every family's surgery uses
(:mod:`.surgery`)."""
from .layouts import LAYOUTS, Block, blocks, from_mul_ir, split, to_mul_ir
from .rotations import random_rotations

__all__ = ["Block", "LAYOUTS", "blocks", "from_mul_ir", "random_rotations", "split", "to_mul_ir"]

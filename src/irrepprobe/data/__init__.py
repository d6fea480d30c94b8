"""QM9 from qm9pack: cached tensors, targets in the usual units, seeded splits, graphs."""
from .graphs import MoleculeDataset, collate, loader, radius_graph
from .qm9 import ELEMENTS, QM9, default_cache_dir, load_qm9
from .splits import SPLITS, make_split
from .targets import TARGETS, Target, get_target, target_values, to_cartesian

__all__ = [
    "ELEMENTS", "QM9", "SPLITS", "TARGETS", "MoleculeDataset", "Target", "collate", "default_cache_dir",
    "get_target", "load_qm9", "loader", "make_split", "radius_graph", "target_values", "to_cartesian",
]

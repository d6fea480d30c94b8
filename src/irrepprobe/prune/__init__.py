"""Drop the orders a model does not use, retrain, compare."""
from .model import prune_model
from .policy import orders_to_drop, pruned_config
from .run import prune

__all__ = ["orders_to_drop", "prune", "prune_model", "pruned_config"]

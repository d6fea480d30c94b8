"""Drop the orders a model does not use, retrain, compare."""
from .policy import orders_to_drop, pruned_config
from .run import prune

__all__ = ["orders_to_drop", "prune", "pruned_config"]

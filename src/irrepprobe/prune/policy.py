"""The config without the orders to drop (which ones: :func:`irrepprobe.metrics.verdicts.orders_to_drop`)."""
from __future__ import annotations

from ..adapters.irrepprobe.surgery import config_without
from ..metrics.verdicts import orders_to_drop  # noqa: F401  (re-exported: prune decides with it)


# the pruned config is the model's config without the orders (one definition, in models)
pruned_config = config_without

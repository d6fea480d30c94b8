"""irrepprobe: which irreducible representations does a trained equivariant network really use?"""
import sys

__version__ = "0.1.0"


def _e3nn_constants_loadable() -> None:
    """e3nn 0.4.x (pinned by mace-torch) reads its Wigner constants at import with a bare ``torch.load``,
    which torch >= 2.6 runs weights-only and which then refuses the builtin ``slice`` in that file. Allow
    that one harmless builtin instead of turning weights-only loading off (as ``import mace`` does)."""
    import torch

    allow = getattr(getattr(torch, "serialization", None), "add_safe_globals", None)
    if allow is not None:
        allow([slice])


class _BeforeE3nn:
    """Runs :func:`_e3nn_constants_loadable` just before e3nn is first imported, so that importing
    irrepprobe (and ``irrepprobe --help``) does not import torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "e3nn":
            sys.meta_path.remove(self)
            _e3nn_constants_loadable()
        return None  # the regular finders import it


if "e3nn" in sys.modules:
    _e3nn_constants_loadable()
else:
    sys.meta_path.insert(0, _BeforeE3nn())

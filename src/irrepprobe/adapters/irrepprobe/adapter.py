"""irrepprobe's own checkpoints: weights-only files, our EquivariantNet, QM9's five elements."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.qm9 import ATOMIC_NUMBERS, ELEMENTS
from ...data.structures import sha256
from ...data.targets import get_target, to_irreps_basis
from ...errors import IrrepprobeError
from ..base import Adapter, Batch, Loaded, Point, Quantity, parameters
from .io import is_checkpoint, read_checkpoint


class IrrepprobeAdapter(Adapter):
    name = "irrepprobe"

    def accepts(self, source: str) -> bool:
        return is_checkpoint(source)

    def load(self, source, trust=False, device="cpu") -> Loaded:
        net, ckpt, path = read_checkpoint(source)
        return self._loaded(net.to(device), ckpt, str(Path(path).resolve()), sha256(path))

    def _loaded(self, module, ckpt, source, digest) -> Loaded:
        cfg = ckpt["config"]
        t = get_target(cfg["data"]["target"])
        return Loaded(module.eval(), self, source, digest, Quantity(t.name, t.unit, t.irreps),
                      info={"config": cfg, "split": ckpt["split"], "untrained": bool(ckpt.get("untrained")),
                            "checkpoint": ckpt, "elements": list(ATOMIC_NUMBERS)})

    def points(self, model: Loaded) -> list[Point]:
        net = model.module
        pts = [Point("embedding", "embedding", net.embedding.irreps_out, role="input")]
        for i, layer in enumerate(net.layers):
            if layer.residual:  # what the layer itself adds, before the stream (x + update)
                pts.append(Point(f"layers.{i}.update", f"layers.{i}.update", layer.irreps_out, role="update"))
            pts.append(Point(f"layers.{i}", f"layers.{i}", layer.irreps_out, role="stream"))
        pts.append(Point("readout", "readout", net.readout.irreps_out, role="output"))
        return pts

    def mask_points(self, model: Loaded) -> list[Point]:
        net = model.module
        return [Point("spherical", "spherical", net.irreps_sh, kind="edge", role="input")] + super().mask_points(model)

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        from torch_geometric.data import Batch as PygBatch, Data

        lookup = torch.full((max(max(ATOMIC_NUMBERS), int(structures.numbers.max())) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(ATOMIC_NUMBERS)] = torch.arange(len(ELEMENTS))
        species = lookup[structures.numbers]
        if (species < 0).any():
            bad = sorted({int(z) for z in structures.numbers[species < 0]})
            raise IrrepprobeError(f"this model knows the elements {', '.join(ELEMENTS)}; the data also has atomic "
                                  f"numbers {bad}")
        dtype = next(model.module.parameters()).dtype
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            items = []
            for r in rows.tolist():
                a, b = int(structures.ptr[r]), int(structures.ptr[r + 1])
                items.append(Data(z=species[a:b], pos=structures.pos[a:b].to(dtype), num_nodes=b - a))
            pyg = PygBatch.from_data_list(items).to(model.device)
            yield Batch(pyg, pyg.batch, rows)

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        return model.module(batch.inputs)

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        """The model before training: same config; ``seed`` None keeps the run's own seed (the very
        weights training started from). Output scale and per-element offsets stay, so outputs keep
        target units."""
        from ...train.checkpoint import model_from_checkpoint, untrained_like

        ckpt = untrained_like(model.info["checkpoint"], seed=seed)
        return self._loaded(model_from_checkpoint(ckpt).to(model.device), ckpt, model.source, model.sha256)

    def without_orders(self, model: Loaded, drop: list[int]) -> Loaded | None:
        from .surgery import config_without, without_orders

        try:
            config_without(model.module.config, drop)
        except IrrepprobeError:  # l = 0, or an order the output needs
            return None
        net = without_orders(model.module, drop)
        ckpt = {**model.info["checkpoint"], "config": net.config.to_dict()}
        return self._loaded(net, ckpt, model.source, model.sha256)

    def summary(self, model: Loaded) -> str:
        cfg = model.info["config"]
        m = cfg["model"]
        net = model.module
        return (f"irrepprobe EquivariantNet ({Path(model.source).name}): target {cfg['data']['target']}, orders "
                f"{sorted(m['ls'])}, parity {m.get('parity', 'natural')}, hidden irreps {net.layers[0].irreps_out}, "
                f"{len(net.layers)} layers, cutoff {m['cutoff']} A, {parameters(net):,} parameters"
                + (" (untrained)" if model.info.get("untrained") else ""))

    def label_values(self, model: Loaded, structures, name: str) -> np.ndarray:
        return to_irreps_basis(name, structures.labels[name])

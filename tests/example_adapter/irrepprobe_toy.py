"""A model family that is not e3nn and an irrepprobe adapter for it: the example of the adapter guide.

ToyNet keeps per-atom scalars [atoms, C] and Cartesian vectors [atoms, 3, C] (x, y, z) and its layers return
the pair ``(s, v)``; nothing in it knows about irreps. The adapter names a point per layer, reads the pair
into irrepprobe's layout (C x 0e then C x 1o, mul_ir, each vector in e3nn's basis: irreps.basis gives the
matrix from Cartesian components) and writes an edited tensor back into the pair, so capture, ablation and the
equivariance check work unchanged."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from irrepprobe.adapters import Adapter, Batch, Loaded, Point, Quantity
from irrepprobe.adapters.base import ForcesOfPredict, parameters
from irrepprobe.data.structures import sha256
from irrepprobe.errors import IrrepprobeError
from irrepprobe.irreps.basis import cartesian

SUFFIX = ".toy"
Q = cartesian()  # [3, 3]: (x, y, z) @ Q are e3nn's l=1 components


class ToyLayer(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.s, self.v = nn.Linear(2 * c, c), nn.Linear(c, c, bias=False)

    def forward(self, s, v, src, dst, vec):
        w = torch.exp(-(vec * vec).sum(1, keepdim=True))  # [edges, 1]
        ms = torch.zeros_like(s).index_add_(0, dst, s[src] * w)
        mv = torch.zeros_like(v).index_add_(0, dst, (v[src] + vec[:, :, None] * s[src][:, None, :]) * w[:, :, None])
        s = s + torch.tanh(self.s(torch.cat([ms, (mv * mv).sum(1)], 1)))
        return s, v + self.v(mv)  # nn.Linear acts on the channel axis, last


class ToyNet(nn.Module):
    def __init__(self, c: int = 8, layers: int = 2, cutoff: float = 3.0):
        super().__init__()
        self.c, self.cutoff = c, cutoff
        self.embed = nn.Embedding(100, c)
        self.layers = nn.ModuleList(ToyLayer(c) for _ in range(layers))
        self.readout = nn.Linear(c, 1)

    def forward(self, z, pos, batch, n):
        d = pos[None] - pos[:, None]  # [i, j, 3] pos_j - pos_i
        near = (d.norm(dim=-1) < self.cutoff) & (batch[None] == batch[:, None]) & ~torch.eye(len(z), dtype=torch.bool)
        dst, src = near.nonzero(as_tuple=True)
        vec = pos[src] - pos[dst]
        s, v = self.embed(z), torch.zeros(len(z), 3, self.c, dtype=pos.dtype)
        for layer in self.layers:
            s, v = layer(s, v, src, dst, vec)
        return torch.zeros(n, dtype=pos.dtype).index_add_(0, batch, self.readout(s)[:, 0])


def write_model(path, seed: int = 0, **config) -> Path:
    torch.manual_seed(seed)
    net = ToyNet(**config)
    torch.save({"toy": {"c": net.c, "layers": len(net.layers), "cutoff": net.cutoff}, "state": net.state_dict()}, path)
    return Path(path)


def _pair(n_scalar: int):
    """read/write of a point whose module returns ``(s [N, C], v [N, 3, C])``."""
    def read(out):
        s, v = out
        e3 = torch.einsum("nic,ij->ncj", v, Q.to(v.dtype))  # [N, C, 3]: channel by channel (mul_ir)
        return torch.cat([s, e3.reshape(len(s), -1)], 1)  # C x 0e, then C x 1o

    def write(out, x):
        e3 = x[:, n_scalar:].reshape(len(x), -1, 3)
        v = torch.einsum("ncj,ij->nic", e3, torch.linalg.inv(Q).T.to(e3.dtype))  # back to (x, y, z)
        return x[:, :n_scalar].to(out[0].dtype), v.to(out[1].dtype)
    return {"read": read, "write": write}


class ToyAdapter(ForcesOfPredict, Adapter):
    name, family, needs_grad = "toy", "ToyNet", True

    def accepts(self, source: str) -> bool:
        return str(source).endswith(SUFFIX)

    def load(self, source, trust=False, device="cpu") -> Loaded:
        try:
            ckpt = torch.load(source, weights_only=True, map_location=device)  # no pickle: no --trust needed
            net = ToyNet(**ckpt["toy"])
            net.load_state_dict(ckpt["state"])
        except (OSError, KeyError, RuntimeError) as e:
            raise IrrepprobeError(f"{source}: not a ToyNet file ({str(e).splitlines()[0]})") from None
        return Loaded(net.eval(), self, str(Path(source).resolve()), sha256(source),
                      Quantity("energy", "eV", per_atom=True), info={"config": ckpt["toy"]})

    def points(self, model: Loaded) -> list[Point]:
        c = model.module.c
        return [Point(f"layers.{i}", f"layers.{i}", f"{c}x0e+{c}x1o", **_pair(c))
                for i in range(len(model.module.layers))]

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            a, b = int(structures.ptr[rows[0]]), int(structures.ptr[rows[-1] + 1])
            atom_batch = structures.structure_of_atom()[a:b] - int(rows[0])
            pos = structures.pos[a:b].float()
            yield Batch({"z": structures.numbers[a:b], "pos": pos, "batch": atom_batch, "n": len(rows)}, atom_batch, rows)

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        x = dict(batch.inputs)
        x["pos"] = x["pos"].clone().requires_grad_(forces)
        e = model.module(**x)
        f = -torch.autograd.grad(e.sum(), x["pos"])[0] if forces else None
        self.keep_forces(model, batch, f)
        return e[:, None]

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        torch.manual_seed(0 if seed is None else seed)
        net = ToyNet(**model.info["config"])
        return Loaded(net.eval(), self, model.source, model.sha256, model.quantity, info={**model.info, "untrained": True})

    def summary(self, model: Loaded) -> str:
        cfg = model.info["config"]
        return f"ToyNet: {cfg['c']} scalars and {cfg['c']} vectors per atom, {cfg['layers']} layers, {parameters(model.module):,} parameters"

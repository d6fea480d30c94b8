"""Any e3nn model that takes e3nn's example-network input: a dict of positions, batch and one-hot
node features (``e3nn.nn.models.v2106.gate_points_networks.SimpleNetwork``,
``e3nn.nn.models.gate_points_2101.Network`` and models written the same way).

Model sources
-------------
* ``pkg.module:fn``: a factory, any callable returning an eager ``torch.nn.Module`` (imported by name,
  the current directory searched last). Naming code runs it, as ``python -c`` would: no ``--trust``.
  ``pkg.module:fn@weights.pt`` then loads a state dict (a plain ``{name: tensor}``, or one under
  ``state_dict`` / ``model_state_dict`` / ``model``) into what the factory built, with
  ``torch.load(weights_only=True)``, so that a weights file needs no trust either. If ``fn`` takes a
  ``seed`` argument, :meth:`E3nnAdapter.untrained` passes it; otherwise it calls ``fn`` under
  ``torch.manual_seed``. The factory should build the architecture and leave trained weights to
  ``@weights``: a factory that restores them itself has no untrained control (detected: its parameters
  do not change with the seed).
* a file holding a whole pickled module (``torch.save(model)``): unpickling can run code, so it is
  refused without ``trust`` (``--trust``) before any of it runs (only torch's restricted
  ``weights_only`` unpickler reads it first, to point a bare state dict to ``pkg.module:fn@FILE``).
  TorchScript files are refused: they take no hooks. Either way the module is put in eval mode.

Inputs (one convention for every model)
---------------------------------------
``{"pos": [atoms, 3], "batch": [atoms]}`` plus a one-hot of the element: as ``x`` when the module's
``irreps_in`` (or ``irreps_node_input``) is ``Nx0e`` (absent when ``irreps_in`` is None: the network
then uses ones), and as ``z`` when it declares node attributes (``input_has_node_attr``, or
``irreps_node_attr`` other than ``1x0e``) of ``Nx0e``. Column ``k`` of the one-hot is ``elements[k]``:
the module's ``elements`` attribute (atomic numbers or symbols, set by its factory) when it has one, so
an element it does not list is refused; otherwise the sorted elements of the data, refused when their
number is not ``N``. The output is the pooled quantity per structure or one row per atom (then
:meth:`predict` sums it per structure). :class:`~.base.Quantity`: ``output`` in model units with the
module's ``irreps_out``, unless the module carries ``irrepprobe_quantity`` (a Quantity or its fields
as a dict).

Capture points
--------------
Found by running the model once on two tiny synthetic molecules at load: every module whose
``irreps_out`` (or ``irreps_node_output``, e3nn's v2106 ``Convolution``) e3nn's ``Irreps`` parses
(NequIP's dict irreps are skipped) and whose output is a 2-D tensor of that width, plus wrappers that
return a child's very output tensor (e3nn's ``Compose``: the ``Gate``'s irreps). One row per atom:
``node``; per edge of the model's graph: ``edge`` (when the graph is unknown, any other row count is
taken as per edge); one row per structure (the pooled output) is no point. Modules called more than
once per forward are skipped. Roles: the children of the layer stack (the ``ModuleList`` holding
the most node points) are ``stream``, its last child ``output`` when its irreps are the model's
output irreps; modules inside a layer are ``inner``; before the stack ``input``, after it ``output``.
Default points: the ``stream`` node points.

e3nn's example networks build their graph with ``torch.cdist(pos, pos)`` and ``r > 0``; above 25 atoms
cdist takes its matrix-product path, whose self-distances are not always 0, so atoms gain self-edges
that come and go with a rotation (and with what a structure is batched with). In v2106's
``SimpleNetwork`` they are harmless (its ``smooth_finite`` radial basis is exactly 0 at length 0, so a
self-edge carries no message), but ``gate_points_2101`` / ``2102`` give them a full message (Gaussian
basis, cutoff 1 at length 0): pooled invariants of 8 and 16 QM9 molecules batched together moved
by 6-16% under a rotation. For those two, batches hold at most 25 atoms (``Loaded.info["max_batch_atoms"]``;
set it to None for full batches); a structure above 25 atoms alone still may get self-edges, and
:meth:`batches` warns.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import torch
from e3nn import o3

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ..base import Adapter, Batch, Loaded, Point, Quantity, parameters
from ...fileio import check_file
from .inputs import (CDIST_SAFE_ATOMS, SELF_EDGE_MESSAGES, _elements, _graph_function, _onehot_inputs,
                     _probe_structures, model_inputs)
from .io import _mentions_e3nn, call_factory, import_factory, load_factory, load_file, parse_factory, takes_seed


def _irreps_of(module) -> o3.Irreps | None:
    for attr in ("irreps_out", "irreps_node_output"):
        try:
            value = getattr(module, attr, None)
        except Exception:  # a property that fails
            continue
        if value is None or isinstance(value, dict):
            continue
        try:
            return o3.Irreps(value)
        except Exception:
            continue
    return None


class E3nnAdapter(Adapter):
    name = "e3nn"

    # --- loading -------------------------------------------------------------------------------
    def accepts(self, source: str) -> bool:
        path = Path(source)
        if path.is_file():
            return _mentions_e3nn(path)
        return parse_factory(source) is not None and not path.exists()

    def load(self, source, trust=False, device="cpu") -> Loaded:
        source = str(source)
        path = Path(source)
        if path.is_file() or path.is_dir() or parse_factory(source) is None:
            path = check_file(path)
            module = load_file(path, trust)
            return self._loaded(module, str(path.resolve()), sha256(path), {"factory": None, "weights": None}, device)
        module, source, digest, info = load_factory(source, trust)
        return self._loaded(module, source, digest, info, device)

    def _loaded(self, module: torch.nn.Module, source: str, digest, info: dict, device) -> Loaded:
        if isinstance(module, torch.jit.ScriptModule):
            raise IrrepprobeError(f"{source} is a TorchScript module, which takes no hooks: give the eager model")
        if hasattr(module, "_orig_mod"):
            raise IrrepprobeError(f"{source} is a torch.compile'd module (hooks added after compile are ignored): "
                                  "give the eager model")
        module = module.to(device).eval()
        if all(_irreps_of(m) is None for m in module.modules()):
            from .. import GUIDE, families  # noqa: PLC0415 - the registry imports this adapter

            raise IrrepprobeError(f"{source} is not an e3nn-style model: none of its modules exposes irreps_out "
                                  f"(it is a {type(module).__module__}.{type(module).__name__}); the families read: "
                                  f"{', '.join(families())}; for another one, write an adapter ({GUIDE})")
        elements = _elements(module)
        onehot = _onehot_inputs(module)
        for key, width in onehot.items():
            if elements is not None and len(elements) != width:
                raise IrrepprobeError(f"the model lists {len(elements)} elements {elements} but its input {key} is a "
                                      f"one-hot of {width}")
        max_radius = getattr(module, "max_radius", None)
        graph = _graph_function(module)
        info = dict(info, elements=elements, onehot=onehot,
                    max_radius=float(max_radius) if isinstance(max_radius, (int, float)) else None,
                    graph="cdist radius graph (e3nn example network)" if graph is not None else None,
                    max_batch_atoms=CDIST_SAFE_ATOMS if graph is not None and type(module).__module__ in
                    SELF_EDGE_MESSAGES else None)
        info.update(self._probe(module, info))
        quantity = self._quantity(module, info)
        return Loaded(module, self, source, digest, quantity, info=info)

    # --- the probe: points, kinds, roles, pooling ---------------------------------------------
    def _probe(self, module, info) -> dict:
        width = max(info["onehot"].values(), default=1)
        pos, batch, columns = _probe_structures(width, info["max_radius"])
        inputs = model_inputs(module, info, pos, batch, columns)
        n_atoms, n_structures = 7, 2
        n_edges = None
        graph = _graph_function(module)
        if graph is not None:
            n_edges = int(graph(inputs["pos"], info["max_radius"], inputs["batch"]).shape[1])
        # TorchScript submodules take no hooks (e3nn < 0.5 scripts its tensor products' generated code)
        named = {n: m for n, m in module.named_modules() if n and not isinstance(m, torch.jit.ScriptModule)}
        outputs, calls, order = {}, {}, []

        def make(name):
            def hook(mod, args, out):
                calls[name] = calls.get(name, 0) + 1
                if name not in outputs:
                    outputs[name] = out
                    order.append(name)
            return hook

        handles = [m.register_forward_hook(make(n)) for n, m in named.items()]
        try:
            with torch.no_grad():
                out = module(inputs)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise IrrepprobeError(f"the model's forward failed on the e3nn adapter's input (a dict of "
                                  f"{', '.join(inputs)}): {type(e).__name__}: {first}") from None
        finally:
            for h in handles:
                h.remove()
        if torch.is_tensor(out) and out.dim() == 1:
            out = out[:, None]
        if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] not in (n_atoms, n_structures):
            shape = list(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise IrrepprobeError(f"the model's output is {shape}: the e3nn adapter needs [structures, k] or "
                                  f"[atoms, k]")
        pooled = out.shape[0] == n_structures

        found, skipped = {}, {}
        for name in order:
            irreps = _irreps_of(named[name])
            value = outputs[name]
            if irreps is None and torch.is_tensor(value):  # a wrapper returning a descendant's very tensor
                inner = [d for d in order if d.startswith(name + ".") and outputs[d] is value and d in found]
                if inner:
                    irreps = found[inner[-1]]["irreps"]
            if irreps is None:
                continue
            if calls[name] > 1:
                skipped[name] = f"called {calls[name]} times per forward"
                continue
            if not torch.is_tensor(value) or value.dim() != 2 or value.shape[-1] != irreps.dim:
                shape = list(value.shape) if torch.is_tensor(value) else type(value).__name__
                skipped[name] = f"output {shape} is not [rows, {irreps.dim}] for {irreps}"
                continue
            rows = value.shape[0]
            if rows == n_atoms:
                kind = "node"
            elif n_edges is not None and rows == n_edges or n_edges is None and rows != n_structures:
                kind = "edge"
            else:
                skipped[name] = "one row per structure (pooled)" if rows == n_structures else f"{rows} rows"
                continue
            found[name] = {"irreps": irreps, "kind": kind}
        roles = self._roles(module, found, order)
        points = [{"name": n, "irreps": str(found[n]["irreps"]), "kind": found[n]["kind"], "role": roles[n]}
                  for n in found if n in roles]
        return {"points": points, "skipped_points": skipped, "pooled": pooled, "output_width": int(out.shape[1])}

    @staticmethod
    def _roles(module, found, order) -> dict[str, str]:
        """Role of each found point; the modules around the layer stack (the network itself) are dropped."""
        out_irreps = _irreps_of(module)
        node = [n for n in found if found[n]["kind"] == "node"]

        def inside(n, a):
            return n.startswith(a + ".")

        stack, best = None, 1
        for name, m in module.named_modules():
            if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential)):
                kids = [f"{name}.{k}" if name else k for k, _ in m.named_children()]
                count = sum(k in node for k in kids)
                if count > best:
                    stack, best = (name, [k for k in kids if k in node]), count
        roles = {}
        if stack is not None:
            prefix, layers = stack
            position = {n: i for i, n in enumerate(order)}
            first, last = position[layers[0]], position[layers[-1]]
            for n in found:
                if n in layers:
                    roles[n] = "stream"
                elif any(inside(n, k) for k in layers) or found[n]["kind"] == "edge":
                    roles[n] = "inner"
                elif prefix and (n == prefix or inside(prefix, n)):
                    continue  # the network around the layer stack, not a layer: no point
                else:
                    outer = [a for a in found if inside(n, a) and not (prefix and (a == prefix or inside(prefix, a)))]
                    roles[n] = "inner" if outer else ("input" if position[n] < first else "output"
                                                      if position[n] > last else "stream")
            if out_irreps is not None and found[layers[-1]]["irreps"] == out_irreps:
                roles[layers[-1]] = "output"
            return roles
        outermost = [n for n in node if not any(inside(n, a) for a in found)]
        for n in found:
            roles[n] = "stream" if n in outermost else "inner"
        if outermost and out_irreps is not None and found[outermost[-1]]["irreps"] == out_irreps:
            roles[outermost[-1]] = "output"
        return roles

    def _quantity(self, module, info) -> Quantity:
        q = getattr(module, "irrepprobe_quantity", None)
        if isinstance(q, Quantity):
            return q
        if isinstance(q, dict):
            try:
                return Quantity(**q)
            except TypeError as e:
                raise IrrepprobeError(f"the model's irrepprobe_quantity is not a Quantity's fields: {e}") from None
        irreps = _irreps_of(module)
        if irreps is None or irreps.dim != info["output_width"]:
            outs = [p for p in info["points"] if p["role"] == "output"]
            irreps = o3.Irreps(outs[-1]["irreps"]) if outs and o3.Irreps(outs[-1]["irreps"]).dim == \
                info["output_width"] else None
        if irreps is None:
            raise IrrepprobeError(f"the model's output has {info['output_width']} components but no irreps_out says "
                                  "what they are: set irreps_out or irrepprobe_quantity on the module")
        return Quantity("output", "model units", str(irreps), per_atom=False)

    # --- the protocol ------------------------------------------------------------------------
    def points(self, model: Loaded) -> list[Point]:
        return [Point(p["name"], p["name"], p["irreps"], kind=p["kind"], role=p["role"])
                for p in model.info["points"]]

    def default_points(self, model: Loaded) -> list[str]:
        pts = model.info["points"]
        for keep in (lambda p: p["kind"] == "node" and p["role"] == "stream",
                     lambda p: p["kind"] == "node" and p["role"] not in ("inner", "output"),
                     lambda p: p["kind"] == "node"):
            names = [p["name"] for p in pts if keep(p)]
            if names:
                return names
        raise IrrepprobeError("the model has no per-atom module with irreps_out to capture")

    def elements_for(self, model: Loaded, structures) -> list[int]:
        """Column ``k`` of the one-hot is element ``elements[k]`` (see the module docstring)."""
        have = structures.elements
        known = model.info["elements"]
        onehot = model.info["onehot"]
        if known is not None:
            unknown = [z for z in have if z not in known]
            if unknown and onehot:
                from ase.data import chemical_symbols

                raise IrrepprobeError(f"the data has element(s) {', '.join(chemical_symbols[z] for z in unknown)} "
                                      f"that the model's one-hot ({' '.join(chemical_symbols[z] for z in known)}) "
                                      "does not know")
            return known
        for key, width in onehot.items():
            if len(have) != width:
                raise IrrepprobeError(f"the model's input {key} is a one-hot of {width} elements, the data has "
                                      f"{len(have)} ({', '.join(map(str, have))}), and the model does not say which "
                                      "it was made for: set elements (atomic numbers in one-hot order) on the module")
        return have

    def batches(self, model: Loaded, structures, batch_size: int = 64) -> Iterator[Batch]:
        if batch_size < 1:
            raise IrrepprobeError(f"batch size must be positive, got {batch_size}")
        elements = self.elements_for(model, structures)
        zmax = int(structures.numbers.max()) if structures.numbers.numel() else 0
        lookup = torch.full((max(max(elements, default=0), zmax) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(elements, dtype=torch.long)] = torch.arange(len(elements))
        columns = lookup[structures.numbers]
        cap = model.info.get("max_batch_atoms")
        counts = structures.n_atoms.tolist()
        if cap and any(c > cap for c in counts):
            warnings.warn(f"{sum(c > cap for c in counts)} structures have more than {cap} atoms: e3nn's cdist radius "
                          "graph may give them self-edges that depend on their orientation", stacklevel=2)
        graph = _graph_function(model.module)
        start, n = 0, len(structures)
        while start < n:
            stop, atoms = start, 0
            while stop < n and stop - start < batch_size and (not cap or stop == start or atoms + counts[stop] <= cap):
                atoms += counts[stop]
                stop += 1
            rows = torch.arange(start, stop)
            a, b = int(structures.ptr[start]), int(structures.ptr[stop])
            atom_batch = torch.repeat_interleave(torch.arange(stop - start), structures.n_atoms[start:stop])
            inputs = model_inputs(model.module, model.info, structures.pos[a:b], atom_batch, columns[a:b])
            edge_batch = None
            if graph is not None:
                edges = graph(inputs["pos"], model.info["max_radius"], inputs["batch"])
                edge_batch = inputs["batch"][edges[1]]
            yield Batch(inputs, inputs["batch"], rows, edge_batch)
            start = stop

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        out = model.module(batch.inputs)
        if out.dim() == 1:
            out = out[:, None]
        if model.info["pooled"]:
            if out.shape[0] != batch.n_structures:
                raise IrrepprobeError(f"the model returned {out.shape[0]} rows for {batch.n_structures} structures")
            return out
        if out.shape[0] != batch.n_atoms:
            raise IrrepprobeError(f"the model returned {out.shape[0]} rows for {batch.n_atoms} atoms")
        return out.new_zeros(batch.n_structures, out.shape[1]).index_add_(0, batch.atom_batch, out)

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded | None:
        """The factory's model built again, untrained: ``fn(seed=seed)`` when the factory takes a seed
        (``fn()`` for None: its own default, the weights a training from it started from), else ``fn()``
        under ``torch.manual_seed(seed or 0)``; None when that gives the loaded parameters again (the
        factory restores or pins them itself). A pickled module gives None: it holds weights, not a
        recipe for its architecture, and e3nn's tensor products have no ``reset_parameters`` to
        re-initialise it in place faithfully."""
        factory = model.info.get("factory")
        if not factory:
            return None
        module_name, fn_name = factory.split(":")
        fn = import_factory(module_name, fn_name)
        if takes_seed(fn):
            module = call_factory(fn, factory, **({} if seed is None else {"seed": seed}))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0 if seed is None else seed)
                module = call_factory(fn, factory)
            old, new = model.module.state_dict(), module.state_dict()
            if old.keys() == new.keys() and all(torch.equal(old[k].cpu(), new[k].cpu()) for k in old):
                return None
        info = {"factory": factory, "weights": None, "accepts_seed": takes_seed(fn), "untrained": True,
                "seed": seed}
        loaded = self._loaded(module, factory, None, info, model.device)
        loaded.info["max_batch_atoms"] = model.info.get("max_batch_atoms")
        return loaded

    def summary(self, model: Loaded) -> str:
        from ase.data import chemical_symbols

        info, net = model.info, model.module
        where = info.get("factory") or Path(model.source).name
        parts = [f"e3nn {type(net).__name__} ({where}" + (f" with weights {Path(info['weights']).name}" if
                                                          info.get("weights") else "") + ")"]
        if info["onehot"]:
            names = " ".join(chemical_symbols[z] for z in info["elements"]) if info["elements"] else "the data's"
            parts.append("one-hot of " + names + " elements as " + " and ".join(info["onehot"]))
        stream = [p for p in info["points"] if p["role"] == "stream" and p["kind"] == "node"]
        if stream:
            parts.append(f"{len(stream)} layers, hidden irreps {stream[-1]['irreps']}")
        parts.append(f"output {model.quantity.irreps} " + ("per structure" if info["pooled"] else "per atom, summed"))
        if info.get("max_radius"):
            parts.append(f"cutoff {info['max_radius']:g} A")
        parts.append(f"{parameters(net):,} parameters")
        if info.get("max_batch_atoms"):
            parts.append(f"batches of at most {info['max_batch_atoms']} atoms (cdist radius graph)")
        return ", ".join(parts) + (" (untrained)" if info.get("untrained") else "")

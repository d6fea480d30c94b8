"""SevenNet (``sevenn``): pretrained names (``7net-0``, ``7net-l3i5``, ...) and ``.pth`` checkpoints.

A SevenNet model is an ``AtomGraphSequential`` whose modules pass one ``AtomGraphData`` dict along
and write into it: node features live in ``data["x"]`` (``mul_ir`` e3nn layout), the self-connection
branch in ``data["self_cont_tmp"]``, the edge radial embedding and spherical harmonics in
``data["edge_embedding"]`` and ``data["edge_attr"]``, the per-atom energy in ``data["atomic_energy"]``.
Each :class:`~irrepprobe.adapters.base.Point` reads its tensor out of that dict and writes a changed
one back, so the forward hook returns the same dict. Every point sits on its own module (the spherical
harmonics on ``edge_embedding.spherical``, the per-edge messages on ``{t}_convolution.convolution``).

One interaction layer ``t`` computes ``gate(SI2(conv(SI1(x))) + SC(x))``: ``{t}_self_interaction_2``
is the layer's own update (role ``update``), ``{t}_equivariant_gate`` the features leaving the layer
(``stream``); the self-connection branch, ``SI1``, the aggregated messages and the pre-gate sum have
role ``inner``. With parity off (every pretrained SevenNet) vectors are ``1e`` and l=1 is in e3nn's
basis (Cartesian x, y, z): a rotation ``R`` acts on it as ``o3.Irreps("1e").D_from_matrix(R) == R``.

Forces come from autograd with respect to the edge vectors: ``predict(..., forces=True)`` runs under
``torch.enable_grad()`` itself and the force module frees the graph unless ``keep_graph`` is set; the
default energy-only predict runs the modules without the force step and without autograd.
Multi-fidelity models (``7net-mf-0``: R2SCAN, PBE) are measured at the fidelity (sevenn's modality)
that :meth:`~irrepprobe.adapters.base.Adapter.choose` sets, written as ``data_modality`` on every graph as
sevenn's calculator does; with several, none is guessed.
Checkpoints are pickles: nothing is unpickled without ``trust``, and :meth:`accepts` reads raw bytes only.
"""
from __future__ import annotations

import copy
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from ...fileio import check_file, describe, kind_of, pickle_bytes, refuse_untrusted, torch_load, zip_names

# sevenn's config keys; a checkpoint's pickle names them as plain strings
_MARKERS = (b"num_convolution_layer", b"model_state_dict")
_ONE_OF = (b"self_connection_type", b"interaction_type", b"irreps_manual")
_HEAD_BYTES = 8 << 20  # how much of a checkpoint's pickle accepts() reads (sevenn's: ~50 kB)
_NEEDS_SEVENN = "loading SevenNet models needs the sevenn package: pip install sevenn"


def _sevenn():
    try:
        import sevenn  # noqa: F401
        import sevenn.util
    except ImportError:
        raise IrrepprobeError(_NEEDS_SEVENN) from None
    return sevenn


class _NotLocal(Exception):
    pass


@contextmanager
def _no_download():
    """sevenn's name resolution, minus its download of a checkpoint the package does not ship."""
    import sevenn.util as su

    def refuse(path, url):
        raise _NotLocal(path, url)

    saved = su.download_checkpoint
    su.download_checkpoint = refuse
    try:
        yield su
    finally:
        su.download_checkpoint = saved


def resolve_name(name: str) -> tuple[str | None, str | None]:
    """(path, None) for a pretrained name whose checkpoint is on disk, (None, why) for a known name
    whose checkpoint is not, (None, None) for no SevenNet name. Never downloads, never unpickles."""
    try:
        import sevenn.util  # noqa: F401
    except ImportError:
        return None, None
    with _no_download() as su:
        try:
            return su.pretrained_name_to_path(str(name)), None
        except ValueError:
            return None, None
        except _NotLocal as e:
            path, url = e.args
            return None, (f"the SevenNet checkpoint {name!r} is not shipped with this sevenn package; download "
                          f"it{' from ' + url if url else ''} to {path} or ~/.cache/sevennet, or give the "
                          "file's path")
        except FileNotFoundError as e:
            return None, f"the SevenNet checkpoint {name!r} is missing from the sevenn package ({e})"


def _is_deployed(path: Path) -> bool:
    """A TorchScript model written by ``sevenn deploy`` (its extra files name sevenn's metadata)."""
    names = zip_names(path)
    return (any(n.endswith("extra/chemical_symbols_to_index") for n in names)
            and any(n.endswith("extra/cutoff") for n in names))


def looks_like_checkpoint(path) -> bool:
    """Whether the raw bytes of ``path``'s pickle name sevenn's config keys (no unpickling)."""
    raw = pickle_bytes(path, _HEAD_BYTES)
    return raw is not None and all(m in raw for m in _MARKERS) and any(m in raw for m in _ONE_OF)


class SevenNetAdapter(ForcesOfPredict, Adapter):
    name = "sevenn"
    head_flag, family, head_words = "modality", "SevenNet", ("fidelity", "fidelities (modalities)")

    def __init__(self):
        # True: the force module keeps the autograd graph (create_graph), so that the energy returned by
        # predict can be differentiated again (attribution); costs time and memory
        self.keep_graph = False

    # ---------------------------------------------------------------- finding and loading

    def accepts(self, source: str) -> bool:
        path = Path(str(source))
        if path.is_file():
            kind = kind_of(path)
            if kind == "torchscript":
                return _is_deployed(path)  # accepted so that load() can say what to give instead
            return kind in ("torch-zip", "pickle") and looks_like_checkpoint(path)
        if path.exists() or os.sep in str(source) or str(source).endswith((".pth", ".pt")):
            return False
        found, why = resolve_name(str(source))
        return found is not None or why is not None

    def _resolve(self, source: str) -> tuple[Path, str | None]:
        """(file, pretrained name or None)."""
        path = Path(str(source))
        if path.exists() or os.sep in str(source) or str(source).endswith((".pth", ".pt")):
            return check_file(path), None
        _sevenn()
        found, why = resolve_name(str(source))
        if why:
            raise IrrepprobeError(why)
        if found is None:
            import sevenn.util as su

            raise IrrepprobeError(f"{source} is neither a file nor a SevenNet pretrained name; names: "
                                  f"{', '.join(su.get_available_pretrained_models())}")
        return check_file(found), str(source)

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        path, pretrained = self._resolve(source)
        kind = kind_of(path)
        if kind == "torchscript":
            raise IrrepprobeError(f"{path} is a TorchScript file (a deployed SevenNet model), which takes no hooks: "
                                  "give the .pth checkpoint it was deployed from")
        if kind not in ("torch-zip", "pickle"):
            raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
        what = f"the SevenNet checkpoint {pretrained!r}" if pretrained else "this model file"
        refuse_untrusted(path, trust, what)  # before anything below unpickles
        _sevenn()
        from sevenn.checkpoint import SevenNetCheckpoint

        obj = torch_load(path, trust, what)  # damaged or truncated files say so here
        if not (isinstance(obj, dict) and isinstance(obj.get("config"), dict) and obj["config"]
                and isinstance(obj.get("model_state_dict"), dict) and obj["model_state_dict"]):
            raise IrrepprobeError(f"{path} is not a SevenNet checkpoint: it holds no sevenn config and model "
                                  "weights")
        del obj
        cp = SevenNetCheckpoint(str(path))  # sevenn's own reading of the checkpoint (config patches, rebuild)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = cp.config
                module = cp.build_model()  # e3nn tensor products (no cuEquivariance, FlashTP, oeq)
            config.update({"cuequivariance_config": {"use": False}, "use_flash_tp": False, "use_oeq": False})
        except Exception as e:  # a config or weights that this sevenn cannot rebuild
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise IrrepprobeError(f"sevenn cannot rebuild the model in {path} ({type(e).__name__}: "
                                  f"{first[:160]})") from None
        return self._loaded(module.to(device), config, pretrained or str(path.resolve()), sha256(path),
                            pretrained=pretrained, path=str(path.resolve()))

    def _loaded(self, module, config: dict, source: str, digest: str | None, **extra) -> Loaded:
        module.eval()
        cutoff = float(config["cutoff"])
        layers = int(config["num_convolution_layer"])
        gates = [module._modules[f"{t}_equivariant_gate"].gate.irreps_out for t in range(layers)]
        hidden = max(gates, key=lambda ir: ir.lmax)
        modal_map = config.get("_modal_map") or {}
        modalities = sorted(modal_map, key=modal_map.get)
        # no default fidelity (sevenn's calculator also refuses to guess): the only one, else choose()
        modal = modalities[0] if len(modalities) == 1 else None
        info = {
            "config": config,  # what untrained() rebuilds from
            "cutoff": cutoff,
            "lmax": int(hidden.lmax),
            "is_parity": bool(config.get("is_parity", False)),
            "channel": int(config.get("channel", hidden.count("0e"))),
            "layers": layers,
            "irreps_hidden": str(hidden),
            "irreps_layers": [str(ir) for ir in gates],
            "elements": sorted(int(z) for z in module.type_map) if module.type_map else [],
            "sevenn_version": config.get("version"),
            "head": modal,  # multi-fidelity models: the modality evaluated (set by choose())
            "heads": modalities,
        }
        info.update(extra)
        return Loaded(module, self, source, digest, Quantity("energy", "eV", "1x0e", per_atom=True), info=info)

    # ---------------------------------------------------------------- points

    def points(self, model: Loaded) -> list[Point]:
        m = model.module
        mods = m._modules
        pts: list[Point] = []
        for name, mod in mods.items():
            cls = type(mod).__name__
            if cls == "EdgeEmbedding":
                pts.append(Point(f"{name}.spherical", f"{name}.spherical", mod.spherical.irreps_out, kind="edge",
                                 role="input"))
                pts.append(Point(name, name, f"{mod.basis_function.num_basis}x0e", kind="edge", role="input",
                                 read=_key("edge_embedding"), write=_put("edge_embedding")))
            elif name == "onehot_to_feature_x":
                pts.append(_x(name, mod.irreps_out, "input"))
            elif name.endswith("_self_connection_intro"):
                pts.append(Point(name, name, mod.irreps_out, role="inner", read=_key("self_cont_tmp"),
                                 write=_put("self_cont_tmp")))
            elif name.endswith("_self_interaction_1"):
                pts.append(_x(name, mod.irreps_out, "inner"))
            elif name.endswith("_convolution") and cls == "IrrepsConvolution":
                tp = mod.convolution
                pts.append(Point(f"{name}.convolution", f"{name}.convolution", tp.irreps_out, kind="edge",
                                 role="inner"))
                pts.append(_x(name, tp.irreps_out, "inner"))
            elif name.endswith("_self_interaction_2"):
                pts.append(_x(name, mod.irreps_out, "update"))
            elif name.endswith("_self_connection_outro"):
                t = name.split("_", 1)[0]
                pts.append(_x(name, mods[f"{t}_equivariant_gate"].gate.irreps_in, "inner"))
            elif name.endswith("_equivariant_gate"):
                pts.append(_x(name, mod.gate.irreps_out, "stream"))
            elif name == "reduce_input_to_hidden":
                pts.append(_x(name, mod.irreps_out, "inner"))
            elif name in ("reduce_hidden_to_energy", "readout_FCN"):
                pts.append(Point(name, name, "1x0e", role="inner", read=_key("scaled_atomic_energy"),
                                 write=_put("scaled_atomic_energy")))
            elif name == "rescale_atomic_energy":
                pts.append(Point(name, name, "1x0e", role="output", read=_key("atomic_energy"),
                                 write=_put("atomic_energy")))
        return pts

    def default_points(self, model: Loaded) -> list[str]:
        return [p.name for p in self.points(model)
                if p.kind == "node" and (p.role == "stream" or p.name == "onehot_to_feature_x")]

    # ---------------------------------------------------------------- data

    def graphs(self, model: Loaded, structures, rows) -> list:
        """sevenn's own graphs (as its ASE calculator builds them) of the structures at ``rows``."""
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        cutoff, modal = model.info["cutoff"], model.info.get("head")
        out = []
        for r in rows:
            g = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(structures.atoms(int(r)), cutoff))
            if modal is not None:
                g["data_modality"] = modal
            out.append(g)
        return out

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        from torch_geometric.data import Batch as PygBatch

        _sevenn()
        self.choose(model)  # a multi-fidelity model loaded without choosing one: refused, not guessed
        self._check_elements(model, structures)
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            pyg = PygBatch.from_data_list(self.graphs(model, structures, rows.tolist())).to(model.device)
            atom_batch = pyg.batch
            edge_batch = atom_batch[pyg.edge_index[0]]
            yield Batch(pyg, atom_batch, rows, edge_batch)

    def _check_elements(self, model: Loaded, structures) -> None:
        known = set(model.info.get("elements") or [])
        if not known:
            return
        missing = sorted({int(z) for z in torch.unique(structures.numbers)} - known)
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in missing)
            raise IrrepprobeError(f"this SevenNet model knows {len(known)} elements; the data also has {names}")

    # ---------------------------------------------------------------- prediction

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        data = copy.copy(batch.inputs)  # the model writes into its input: keep the batch as it was
        data["edge_vec"] = batch.inputs["edge_vec"].detach()  # a fresh leaf for the force gradient
        if "cell_volume" in data:
            data["cell_volume"] = batch.inputs["cell_volume"].clone()  # clamped in place by force_output
        module = model.module
        if not forces:  # the modules in order, minus the force step: a forward pass without autograd
            with torch.enable_grad() if self.keep_graph else torch.no_grad():
                out = module._preprocess(data)
                for name, m in module._modules.items():
                    if name != "force_output":
                        out = m(out)
            self.keep_forces(batch, None)
            energy = out["inferred_total_energy"].reshape(-1, 1)
            return energy if self.keep_graph else energy.detach()
        force = module._modules.get("force_output")
        was = force.training if force is not None else False
        if force is not None and self.keep_graph:
            force.training = True  # create_graph: the graph survives the force gradient
        try:
            with torch.enable_grad():
                out = module(data)
        finally:
            if force is not None:
                force.training = was
        energy = out["inferred_total_energy"].reshape(-1, 1)
        self.keep_forces(batch, out["inferred_force"] if "inferred_force" in out else None)
        return energy if self.keep_graph else energy.detach()

    # ---------------------------------------------------------------- control and summary

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        """The same architecture rebuilt by sevenn's builder from the checkpoint's config, every learned
        weight re-drawn under ``torch.manual_seed(seed)`` (the global RNG state is restored afterwards).
        What training does not learn is copied from the trained model: the element map, the per-element
        energy shift and scale and the convolutions' neighbour-count denominators (the config holds a 0
        placeholder for those, which would divide by zero), so energies stay finite and in eV."""
        from sevenn.model_build import build_E3_equivariant_model

        config = copy.deepcopy(model.info["config"])
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0 if seed is None else seed)
            module = build_E3_equivariant_model(config)
        trained = dict(model.module.named_parameters())
        with torch.no_grad():
            for name, p in module.named_parameters():
                fixed = (not p.requires_grad or name.startswith("rescale_atomic_energy.")
                         or name.endswith("_convolution.denominator"))
                if fixed and name in trained and trained[name].shape == p.shape:
                    p.copy_(trained[name])
        extra = {k: model.info[k] for k in ("pretrained", "path") if k in model.info}
        loaded = self._loaded(module.to(model.device), config, model.source, model.sha256, untrained=True,
                              seed=seed, **extra)
        loaded.info["head"] = model.info.get("head")
        return loaded

    # ---------------------------------------------------------------- surgery and writing

    suffix = ".pth"

    def why_not_without(self, model: Loaded, drop: list[int]) -> str | None:
        from ...irreps.surgery import why_not_top

        return why_not_top(drop, model.info["lmax"], "SevenNet", "sevenn's spherical harmonics hold every order up to lmax")

    def without_orders(self, model: Loaded, drop: list[int]) -> Loaded | None:
        """A model of sevenn's own classes, built by its builder from the config without the orders in
        ``drop`` (the highest ones: lmax lowered, the orders gone from every layer's irreps), with every
        weight that connects channels both models have copied (rescaled by e3nn's path normalisations):
        it computes what ``model`` computes with the orders masked (:func:`irrepprobe.metrics.masked`)."""
        drop = sorted({int(l) for l in drop})
        if self.why_not_without(model, drop):
            return None
        from sevenn.model_build import build_E3_equivariant_model

        from ...irreps.surgery import irreps_without

        old = model.module
        config = copy.deepcopy(model.info["config"])
        layers = [old._modules["onehot_to_feature_x"].irreps_out] + [
            old._modules[f"{t}_equivariant_gate"].gate.irreps_out for t in range(model.info["layers"])]
        config["irreps_manual"] = [str(irreps_without(ir, drop)) for ir in (config.get("irreps_manual") or layers)]
        config["lmax"] = model.info["lmax"] - len(drop)
        if int(config.get("lmax_node", -1)) > 0:
            config["lmax_node"] = config["lmax"]
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new = build_E3_equivariant_model(config)
        olds, news = old._modules, new._modules
        try:
            done = self._copy_layers(olds, news, layers, drop, model.info["layers"])
        except ValueError as e:
            raise IrrepprobeError(f"cannot prune this SevenNet model: {e}") from None
        with torch.no_grad():
            state, old_state = new.state_dict(), old.state_dict()
            for name, v in state.items():  # the rest (scalars only, shifts, scales, denominators) as it was
                if name not in done and name in old_state and old_state[name].shape == v.shape:
                    v.copy_(old_state[name])
        p = next(old.parameters())
        loaded = self._loaded(new.to(device=p.device, dtype=p.dtype), config, model.source, None,
                              **{k: model.info[k] for k in ("pretrained", "path") if k in model.info})
        loaded.info.update(head=model.info.get("head"), without=drop)
        return loaded

    @staticmethod
    def _copy_layers(olds, news, layers, drop, n_layers) -> set:
        """Each interaction layer's weights by channel name (strict); the names of the parameters done."""
        from ...irreps.surgery import messages, nodes, pre, copy_linear, copy_tp_columns, irreps_without, tp_names

        done = set()
        with torch.no_grad():
            for t in range(n_layers):
                xo, xn = nodes(layers[t]), nodes(irreps_without(layers[t], drop))
                gate_o, gate_n = olds[f"{t}_equivariant_gate"].gate, news[f"{t}_equivariant_gate"].gate
                pre_o, pre_n = pre(gate_o.irreps_out, gate_o), pre(gate_n.irreps_out, gate_n)
                conv_o, conv_n = olds[f"{t}_convolution"], news[f"{t}_convolution"]
                xo1 = nodes(olds[f"{t}_self_interaction_1"].linear.irreps_out)
                xn1 = nodes(news[f"{t}_self_interaction_1"].linear.irreps_out)
                pairs = {f"{t}_self_connection_intro": ((xn, pre_n), (xo, pre_o)),
                         f"{t}_self_interaction_1": ((xn, xn1), (xo, xo1)),
                         f"{t}_self_interaction_2": ((messages(conv_n.convolution), pre_n),
                                                     (messages(conv_o.convolution), pre_o))}
                for name, (names_new, names_old) in pairs.items():
                    copy_linear(news[name].linear, olds[name].linear, names_new, names_old)
                    done.add(f"{name}.linear.weight")
                *hidden_n, last_n = list(conv_n.weight_nn.children())
                *hidden_o, last_o = list(conv_o.weight_nn.children())
                for a, b in zip(hidden_n, hidden_o):
                    a.weight.copy_(b.weight)
                tp_n, tp_o = conv_n.convolution, conv_o.convolution
                copy_tp_columns(last_n.weight, last_o.weight, tp_n, tp_o, tp_names(tp_n), tp_names(tp_o))
                done.update(f"{t}_convolution.weight_nn.{n}" for n, _ in conv_n.weight_nn.named_parameters())
        return done

    def write(self, model: Loaded, path) -> Path:
        """``model`` as a sevenn checkpoint (``.pth``: its config and weights) that sevenn's own
        ``SevenNetCalculator`` and ``SevenNetCheckpoint`` load; written atomically."""
        import sevenn

        from ...fileio import save_torch

        # the weights are in this sevenn's layout: a checkpoint marked with an older version would get the
        # old-to-new patch of its state dict on loading (reordered convolution weights)
        config = {**model.info["config"], "version": sevenn.__version__}
        # e3nn's generated code may hold traced constants (``_tensor_constant*``) once a copy of the model has
        # been trained; sevenn rebuilds them from the config and refuses them as unexpected keys
        state = {k: v for k, v in model.module.state_dict().items() if "._tensor_constant" not in k}
        return save_torch({"config": config, "model_state_dict": state,
                           "epoch": 0, "irrepprobe": {"without": model.info.get("without"),
                                                      "from": model.source}}, path)

    def calculator(self, path: str, model: Loaded):
        """sevenn's own ASE calculator on a checkpoint file or pretrained name (MD speed of a pruned file)."""
        from sevenn.calculator import SevenNetCalculator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SevenNetCalculator(model=path, device=model.device, modal=model.info.get("head"))

    def summary(self, model: Loaded) -> str:
        info = model.info
        src = info.get("pretrained") or Path(model.source).name
        fname = Path(info.get("path") or model.source).name
        parity = "on (O(3))" if info["is_parity"] else "off (SO(3): vectors are 1e)"
        last = info["irreps_layers"][-1]
        modal = (f", modality {info['head'] or '(not chosen)'} of {', '.join(info['heads'])}" if info.get("heads")
                 else "")
        return (f"SevenNet {src} ({fname}, trained with sevenn {info.get('sevenn_version')}): NequIP-style "
                f"gated interaction layers with linear self-connections; orders l=0..{info['lmax']}, parity "
                f"{parity}; channels per order {info['irreps_hidden']} ({info['layers']} layers, the last "
                f"leaving {last}); cutoff {info['cutoff']:g} A; {len(info['elements'])} elements{modal}; "
                f"{parameters(model.module):,} parameters" + (" (untrained)" if info.get("untrained") else ""))


def _key(key: str):
    def read(out):
        return out[key]
    return read


def _put(key: str):
    def write(out, x):
        out[key] = x
        return out
    return write


def _x(name: str, irreps, role: str) -> Point:
    return Point(name, name, irreps, role=role, read=_key("x"), write=_put("x"))

"""The NequIP/Allegro adapter on real trained models and real QM9 molecules (no mocks).

tests/data/nequip/ holds a tiny NequIP and a tiny Allegro model trained by nequip-train for QM9's U0
atomization energy (``analyses/codes/train_nequip.sh``: 400 training molecules, 30 CPU epochs; test MAE
about 0.16 eV for both), Allegro also packaged (``nequip-package build``), and the 100 test molecules."""
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nequip")
pytest.importorskip("allegro")

from e3nn import o3  # noqa: E402

from irrepprobe.adapters import detect, get_adapter  # noqa: E402
from irrepprobe.capture import capture, hooked  # noqa: E402
from irrepprobe.irreps import split, to_mul_ir  # noqa: E402
from irrepprobe.cli import main  # noqa: E402
from irrepprobe.data.structures import read_structures  # noqa: E402
from irrepprobe.errors import IrrepprobeError  # noqa: E402
from irrepprobe.metrics.utilisation import utilisation  # noqa: E402

DATA = Path(__file__).parent / "data" / "nequip"
XYZ = DATA / "test.xyz"
FILES = {"nequip": DATA / "nequip.ckpt", "allegro": DATA / "allegro.ckpt"}


@pytest.fixture(scope="module")
def adapter():
    return get_adapter("nequip")


@pytest.fixture(scope="module", params=["nequip", "allegro"])
def model(request, adapter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adapter.load(str(FILES[request.param]), trust=True)


@pytest.fixture(scope="module")
def mols():
    return read_structures(XYZ)


@pytest.fixture(scope="module")
def caps(model, mols, tmp_path_factory):
    """The capture of the model's every point over the 100 test molecules, and over them all rotated."""
    out = tmp_path_factory.mktemp(model.info["family"])
    names = [p.name for p in model.adapter.points(model)]
    torch.manual_seed(0)
    R = o3.rand_matrix()
    cap = capture(model, mols, names, out / "cap", batch_size=32, target="u0_atom", trusted=True)
    rot = capture(model, mols.rotated(R), names, out / "rot", batch_size=32, target="u0_atom", trusted=True)
    return cap, rot


def run_hooked(adapter, model, batch, points):
    seen = {}

    def make(p):
        def hook(module, args, out):
            seen[p.name] = p.read(out).detach()
        return hook

    with hooked(model.module, [(p.module, make(p)) for p in points]):
        energy = adapter.predict(model, batch)
    return energy, seen


def pooled(x, index, n):
    return torch.zeros(n, *x.shape[1:], dtype=x.dtype).index_add_(0, index, x)


def test_points_batches_and_energies_match_nequips_own_calculator(adapter, model, mols):
    family = model.info["family"]
    assert detect(str(FILES[family.lower()])).name == "nequip"
    assert model.quantity.name == "u0_atom" and model.quantity.unit == "eV" and model.quantity.per_atom
    assert model.info["lmax"] == 2 and model.info["layers"] == 2 and model.info["cutoff"] == 5.0
    assert model.info["type_names"] == ["H", "C", "N", "O", "F"] and len(model.sha256) == 64
    text = adapter.summary(model)
    assert family in text and "8x0e+8x1o+8x2e" in text and "parameters" in text and "u0_atom" in text

    sub = mols.take(np.arange(8))
    batches = list(adapter.batches(model, sub, batch_size=3))
    assert [b.n_structures for b in batches] == [3, 3, 2]
    b = next(adapter.batches(model, sub, batch_size=8))
    assert b.n_atoms == int(sub.n_atoms.sum()) and torch.equal(b.atom_batch, sub.structure_of_atom())
    src, dst = b.inputs["edge_index"]
    assert torch.equal(b.atom_batch[src], b.atom_batch[dst])  # edges never cross molecules
    assert torch.equal(b.edge_batch, b.atom_batch[src])

    points = adapter.points(model)
    names = [p.name for p in points]
    assert len(set(names)) == len(names) and len({p.module for p in points}) == len(points)
    energy, seen = run_hooked(adapter, model, b, points)
    for p in points:
        rows = b.n_atoms if p.kind == "node" else b.n_edges
        if p.layout == "mul_first":  # Allegro's tracks: [edges, tracks, sum of 2l+1]
            mul = p.irreps[0].mul
            assert seen[p.name].shape == (rows, mul, p.irreps.dim // mul), p.name
        else:
            assert seen[p.name].shape == (rows, p.irreps.dim), p.name
    kinds = {p.name: (p.kind, p.layout, p.role) for p in points}
    if family == "NequIP":
        assert adapter.default_points(model) == ["type_embed", "layer0_convnet", "layer1_convnet"]
        assert kinds["layer0_convnet"] == ("node", "mul_ir", "stream")
        assert kinds["layer1_convnet.conv.linear_2"] == ("node", "mul_ir", "update")
        assert kinds["spharm"][0] == "edge"
    else:
        assert adapter.default_points(model) == ["tensor_embed", "allegro.tps.0", "allegro.latents.0",
                                                 "allegro.tps.1", "allegro.latents.1"]
        assert kinds["allegro.tps.0"] == ("edge", "mul_first", "stream")
        assert str(next(p for p in points if p.name == "allegro.tps.0").irreps) == "8x0e+8x1o+8x2e"
        assert kinds["allegro.latents.1"] == ("edge", "mul_ir", "stream")
    assert kinds["per_type_energy_scale_shift"] == ("node", "mul_ir", "output")
    # the per-atom energies sum to the predicted totals
    assert torch.allclose(pooled(seen["per_type_energy_scale_shift"].double(), b.atom_batch, 8), energy, atol=1e-4)

    # the same energies and forces as nequip's own ASE calculator (its own load), one molecule at a time
    from nequip.integrations.ase import NequIPCalculator

    import e3nn

    defaults = e3nn.get_optimization_defaults()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = NequIPCalculator._from_saved_model(str(FILES[family.lower()]), chemical_species_to_atom_type_map=True)
    # nequip's own loading leaves e3nn's jit_mode at "script" (the adapter restores it; here we must), after
    # which later tests' e3nn modules could not be deep-copied
    e3nn.set_optimization_defaults(**defaults)
    forces = adapter.forces(model, b)
    assert energy.shape == (8, 1) and forces.shape == (b.n_atoms, 3)
    for i in (0, 5):
        atoms = sub.atoms(i)
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - float(energy[i])) < 1e-4
        a, c = int(sub.ptr[i]), int(sub.ptr[i + 1])
        assert np.allclose(atoms.get_forces(), forces[a:c].numpy(), atol=1e-4)


def test_loading_leaves_global_state_alone(adapter, mols):
    import e3nn

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    before, defaults = torch.get_default_dtype(), e3nn.get_optimization_defaults()
    loaded = adapter.load(str(FILES["nequip"]), trust=True)
    adapter.untrained(loaded, seed=3)
    next(adapter.batches(loaded, mols.take(np.arange(2)), 2))
    assert torch.get_default_dtype() == before  # nequip's set_global_state makes float64 the default
    assert torch.equal(torch.rand(3), expected)  # ... and reseeds every RNG
    assert e3nn.get_optimization_defaults() == defaults  # building leaves e3nn's jit_mode at "script"


def test_capture_over_the_test_molecules_and_rotation_invariance(model, caps):
    cap, rot = caps
    meta = cap.meta
    assert meta["adapter"] == "nequip" and meta["n_molecules"] == 100 and not meta["skipped"]
    assert meta["target"] == "u0_atom" and meta["quantity"]["unit"] == "eV"
    mae = np.abs(cap.arrays["error"]).mean()
    assert mae < 0.4, mae  # trained: about 0.16 eV on these molecules (the spread of U0 is ~10 eV)
    assert np.abs(rot.arrays["output"] - cap.arrays["output"]).max() <= 1e-5 * np.abs(cap.arrays["output"]).max()
    checked = 0
    for p in cap.points:
        for b in cap.blocks(p):
            scalar = b.startswith("0")
            kinds = ("norm_sum", "value_sum", "value_mean") if scalar else ("norm_sum", "norm_mean")
            for kind in kinds:
                x0, x1 = cap.pooled(p, b, kind), rot.pooled(p, b, kind)
                assert np.abs(x1 - x0).max() <= 1e-5 * np.abs(x0).max() + 1e-12, (p, b, kind)
            if not scalar:  # the norm of the summed vector is invariant too
                v0 = np.linalg.norm(cap.pooled(p, b, "vector_sum"), axis=-1)
                v1 = np.linalg.norm(rot.pooled(p, b, "vector_sum"), axis=-1)
                assert np.abs(v1 - v0).max() <= 1e-5 * np.abs(v0).max() + 1e-12, (p, b)
                checked += 1
    assert checked >= 4  # 1o and 2e at the first layer's stream (and for Allegro its input tracks)


def test_edge_points_are_pooled_per_structure(adapter, mols, caps, model):
    """Allegro's first tensor track (mul_first, the model's equivariant features), NequIP's spherical
    harmonics: the capture's per-structure pooling over edges matches pooling by hand."""
    cap, _ = caps
    allegro = model.info["family"] == "Allegro"
    points = {p.name: p for p in adapter.points(model)}
    p = points["allegro.tps.0" if allegro else "spharm"]
    layout = "mul_first" if allegro else "mul_ir"
    sums = {b: [] for b in ("0e", "1o", "2e")}
    counts = []
    for batch in adapter.batches(model, mols, batch_size=32):
        _, seen = run_hooked(adapter, model, batch, [p])
        x = seen[p.name]
        if allegro:
            assert x.shape == (batch.n_edges, 8, 9)
            # by hand: the track tensor [edges, tracks, 1+3+5] is the mul_first layout of 8x0e+8x1o+8x2e
            assert torch.equal(to_mul_ir(x, p.irreps, "mul_first")[:, 8:32].reshape(-1, 8, 3), x[:, :, 1:4])
        else:
            assert x.shape == (batch.n_edges, 9)
        for name, v in split(x, p.irreps, layout).items():
            sums[name].append(pooled(v.double().norm(dim=-1), batch.edge_batch, batch.n_structures))
        counts.append(torch.bincount(batch.edge_batch, minlength=batch.n_structures))
    n_edges = torch.cat(counts).numpy()
    for name, parts in sums.items():
        manual = torch.cat(parts).numpy()
        assert np.allclose(cap.pooled(p.name, name, "norm_sum"), manual, rtol=1e-5, atol=1e-6), name
        assert np.allclose(cap.pooled(p.name, name, "norm_mean"), manual / n_edges[:, None], rtol=1e-5, atol=1e-6)
    assert cap.meta["points"][p.name]["kind"] == "edge" and cap.meta["points"][p.name]["layout"] == layout


def test_ablation_moves_the_prediction(model, caps):
    cap, _ = caps
    table = utilisation(cap, molecules=40, device="cpu", batch_size=20, n_boot=50)
    # energies against the label; forces (by autograd) scored beside them as the shift of the model's own
    forces, table = table[table["quantity"] == "forces"], table[table["quantity"] != "forces"]
    assert (table["score"] == "error").all() and (forces["score"] == "shift").all()
    # the order truly removed (NequIP can build it) is scored on the energy only
    assert len(forces) == len(table[table["intervention"] != "removed"]) and np.isfinite(forces["scale_free"]).all()
    assert forces["scale_free"].max() > 0.05
    rows = table.set_index(["point", "block"])
    stream = "layer0_convnet" if model.info["family"] == "NequIP" else "allegro.tps.0"
    for block in ("0e", "1o", "2e"):
        r = rows.loc[(stream, block)]
        assert r["mae"] != pytest.approx(r["base_mae"], rel=1e-6), block
        assert r["reachable"]
    assert rows["utilisation"].abs().max() > 0.5  # zeroing some block ruins the fit
    # every captured point feeds the energy; Allegro's scalar tracks are a slice of their latent MLP's
    # output, which attribution must see through (a slice made in a hook is otherwise not in the graph)
    assert table["reachable"].all() and (table["grad_x_activation"].dropna() > 0).all()
    assert table["used"].any()


def _aoti_like(path: Path):
    """An archive laid out as nequip-compile --mode aotinductor writes it (members and metadata as in a
    real one; the compiled library itself left out)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.nequip/archive_format", "pt2")
        z.writestr("model.nequip/.data/version", "1")
        z.writestr("model.nequip/data/aotinductor/model/c0.wrapper_metadata.json",
                   '{"model_dtype": "float32", "type_names": "H C N O F", "r_max": "5.0"}')
        z.writestr("model.nequip/data/aotinductor/model/c0.wrapper.so", b"\0" * 64)


def test_compiled_models_are_refused_with_what_to_give(adapter, tmp_path, capsys):
    pt2 = tmp_path / "model.nequip.pt2"
    _aoti_like(pt2)
    renamed = tmp_path / "model.zip"
    _aoti_like(renamed)

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return x

    pth = tmp_path / "model.nequip.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Tiny()), str(pth), _extra_files={"r_max": "5.0", "type_names": "H C"})
    pt = tmp_path / "model.pt"
    pt.write_bytes(pth.read_bytes())
    for f, fmt, what in ((pt2, "nequip", "AOTInductor"), (renamed, "auto", "AOTInductor"), (pth, "auto", "TorchScript"),
                         (pt, "auto", "TorchScript")):
        assert adapter.accepts(str(f))
        code = main(["capture", str(f), "--format", fmt, "--data", str(XYZ), "--trust", "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and what in err, f
        assert "compiled" in err and ".ckpt" in err and ".nequip.zip" in err and "hooks" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_pickles_are_refused_without_trust_and_never_unpickled(adapter, tmp_path, capsys):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            # names nequip's checkpoint keys, so that accepts() (raw bytes) takes it for a nequip checkpoint
            return os.system, (f"touch {marker} # info_dict training_module nequip",)

    evil = tmp_path / "x.ckpt"
    torch.save(Evil(), evil)
    assert adapter.accepts(str(evil))  # raw bytes only
    for source in (evil, FILES["nequip"], DATA / "allegro.nequip.zip"):
        code = main(["capture", str(source), "--data", str(XYZ), "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and "--trust" in err and "run code" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()

    plain = tmp_path / "weights.ckpt"
    torch.save({"w": torch.zeros(3)}, plain)
    assert not adapter.accepts(str(plain))
    with pytest.raises(IrrepprobeError, match="not a nequip-train checkpoint"):
        adapter.load(str(plain), trust=True)
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(FILES["nequip"].read_bytes()[:40_000])
    with pytest.raises(IrrepprobeError, match="torn.ckpt"):
        adapter.load(str(torn), trust=True)
    assert not marker.exists()


def test_package_is_the_same_model_as_its_checkpoint(adapter, mols):
    ckpt = adapter.load(str(FILES["allegro"]), trust=True)
    pkg = adapter.load(str(DATA / "allegro.nequip.zip"), trust=True)
    assert detect(str(DATA / "allegro.nequip.zip")).name == "nequip"
    assert pkg.info["file"] == "package" and "package" in adapter.summary(pkg)
    assert type(pkg.module).__module__.startswith("<torch_package")  # its own classes: no isinstance
    assert [p.name for p in adapter.points(pkg)] == [p.name for p in adapter.points(ckpt)]
    b = next(adapter.batches(ckpt, mols.take(np.arange(10)), 10))
    assert torch.allclose(adapter.predict(pkg, b), adapter.predict(ckpt, b), atol=1e-5, rtol=0)


def test_untrained_control_is_finite_differs_and_keeps_energies_in_ev(adapter, model, mols):
    b = next(adapter.batches(model, mols.take(np.arange(16)), 16))
    trained = adapter.predict(model, b)
    control = adapter.untrained(model, seed=0)
    assert control.info["untrained"] and "(untrained)" in adapter.summary(control)
    assert [p.name for p in adapter.points(control)] == [p.name for p in adapter.points(model)]
    energy = adapter.predict(control, b)
    assert torch.isfinite(energy).all() and (energy - trained).abs().max() > 1e-2
    # same per-atom shift (~ -4.1 eV per atom): untrained energies stay on the scale of the labels
    assert (energy - trained).abs().max() < 0.5 * trained.abs().max()
    again = dict(adapter.untrained(model, seed=0).module.named_parameters())
    other = dict(adapter.untrained(model, seed=1).module.named_parameters())
    differs = False
    for name, p in control.module.named_parameters():  # the seed fixes the weights
        assert torch.equal(p, again[name]), name
        differs |= not torch.equal(p, other[name])
    assert differs
    fixed = dict(model.module.named_buffers())
    for name, buf in control.module.named_buffers():
        if "per_type_energy_scale_shift" in name:
            assert torch.equal(buf, fixed[name]), name


def test_residual_layers_expose_their_update_before_the_residual(adapter, mols):
    """NequIP with ``convnet_resnet`` (3 layers, parity off, so that the middle one keeps its irreps): that layer's
    stream is its input plus its gate's output, the point with role ``update``."""
    trained = adapter.load(str(FILES["nequip"]), trust=True)
    trained.info = dict(trained.info, config=dict(trained.info["config"], num_layers=3, convnet_resnet=True,
                                                            parity=False))
    model = adapter.untrained(trained, seed=0)
    points = {p.name: p for p in adapter.points(model)}
    assert model.module.model.func.layer1_convnet.resnet
    assert points["layer1_convnet.equivariant_nonlin"].role == "update"
    assert points["layer1_convnet.conv.linear_2"].role == "inner"  # the gate's input, not the update
    assert points["layer2_convnet.conv.linear_2"].role == "update"  # no residual: before the self-connection
    b = next(adapter.batches(model, mols.take(np.arange(4)), 4))
    want = ["layer0_convnet", "layer1_convnet.equivariant_nonlin", "layer1_convnet"]
    _, seen = run_hooked(adapter, model, b, [points[n] for n in want])
    assert torch.allclose(seen["layer1_convnet"], seen["layer0_convnet"] + seen["layer1_convnet.equivariant_nonlin"])


def test_masked_model_zeroes_the_order_and_fine_tunes_on_energy_and_forces(model, mols):
    from family_checks import masked_and_recovered

    masked_and_recovered(model, mols, 1, forces=True)


def test_surgery_computes_what_the_masked_model_computes_and_refuses_allegro(adapter, mols):
    import copy

    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions
    from irrepprobe.prune.family import check_drop

    nequip = adapter.load(str(FILES["nequip"]), trust=True)
    allegro = adapter.load(str(FILES["allegro"]), trust=True)
    for m, bad, why in ((nequip, [0], "l=0 is never dropped"), (nequip, [3], "no l=3"),
                        (nequip, [1], "only the highest orders"), (allegro, [2], "Allegro's tensor tracks")):
        assert why in adapter.why_not_without(m, bad)
        with pytest.raises(IrrepprobeError, match=why):
            check_drop(m, bad)
    model = copy.copy(nequip)  # weights moved off the trained ones, so that every l>0 path matters
    model.module = copy.deepcopy(nequip.module)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(0.3 * torch.randn_like(p) * (p.abs().mean() + 1e-3))
    batches = list(adapter.batches(model, mols.take(np.arange(12)), 6))
    full = predictions(model, batches)
    for drop in ([2], [1, 2]):
        small = adapter.without_orders(model, drop)
        assert small.info["lmax"] == min(drop) - 1
        mask = predictions(masked(model, drop), batches)
        assert (mask - full).abs().max() > 0.1  # the orders matter to these weights
        assert torch.allclose(predictions(small, batches), mask, atol=1e-4, rtol=0)  # float32 rounding, ~60 eV
        f_mask = adapter.forces(masked(model, drop), batches[0])
        assert torch.allclose(adapter.forces(small, batches[0]), f_mask, atol=1e-4, rtol=0)


def test_prune_writes_a_checkpoint_nequips_own_tools_run(adapter, mols, tmp_path, capsys):
    import pandas as pd
    from nequip.model.saved_models.load_utils import load_saved_model

    from irrepprobe.capture.equivariance import check_equivariance

    from ase.io import read, write

    out = tmp_path / "pruned"
    frames = read(XYZ, ":")
    write(tmp_path / "fit.xyz", frames[:12])
    write(tmp_path / "held.xyz", frames[-6:])
    assert main(["prune", str(FILES["nequip"]), "--format", "nequip", "--trust", "--drop-l", "2", "--data",
                 str(tmp_path / "fit.xyz"), "--held-out", str(tmp_path / "held.xyz"), "--seeds", "2", "--steps", "3",
                 "--md-steps", "1", "--validate", "molecules,stress", "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table["model"].tolist()[:4] == ["original", "pruned, before fine-tuning", "pruned, fine-tuned",
                                           "pruned, fine-tuned"]
    tuned = table[table["model"] == "pruned, fine-tuned"]
    assert tuned["seed"].tolist() == [0, 1]
    assert tuned["energy MAE vs original"].nunique() == 2  # the seeds draw different batches: different models
    seeds = pd.read_csv(out / "comparison_seeds.csv").set_index("model")
    row = seeds.loc["pruned, fine-tuned"]
    assert row["seeds"] == 2 and row["energy MAE vs original low"] < row["energy MAE vs original"] < row[
        "energy MAE vs original high"]
    assert (out / "pruned-seed1.ckpt").exists() and (out / "pruned-before.ckpt").exists()
    assert "the 6 structures of the held-out file" in (out / "report.md").read_text()
    # validated at the end through irrepprobe's own calculator (nequip's runs compiled models only): no stress
    s22 = pd.read_csv(out / "validate" / "tables" / "s22.csv")
    assert set(s22["model"]) == {"original", "pruned-before", "pruned-seed0", "pruned-seed1"}
    models = pd.read_csv(out / "validate" / "tables" / "models.csv")
    assert (models["calculator"] == "AdapterCalculator").all()
    assert table["model"].str.startswith("small, from scratch").any()
    assert "MD speed: not measured (nequip's ASE calculator runs compiled models only" in (out / "report.md").read_text()
    from irrepprobe.adapters.nequip.runtime import _nequip_state

    with _nequip_state(), warnings.catch_warnings():  # nequip's loader sets e3nn's global options: restore them
        warnings.simplefilter("ignore")
        theirs = load_saved_model(str(out / "pruned.ckpt"), compile_mode="eager")
    assert theirs.model.func.spharm.sh.irreps_out.lmax == 1
    ours = adapter.load(str(out / "pruned.ckpt"), trust=True)
    batch = next(adapter.batches(ours, mols.take(np.arange(2)), 2))
    assert ours.info["lmax"] == 1 and np.isfinite(adapter.predict(ours, batch).detach().numpy()).all()
    assert check_equivariance(ours, mols.take(np.arange(4)), n=4)[1]["passed"]
    assert main(["prune", str(FILES["allegro"]), "--format", "nequip", "--trust", "--drop-l", "2", "--data",
                 str(XYZ)]) == 2
    assert "Allegro's tensor tracks" in capsys.readouterr().err

"""The MACE adapter on a real trained MACE (no mocks): tests/data/mace/tiny_mace.model, trained by
analyses/codes/train_mace.sh (mace-torch 0.3.16, 400 QM9 molecules, U0 atomization energy in eV,
8x0e+8x1o+8x2e, 2 interactions, float32, 5,680 parameters, 0.3 MB), over its 100 test molecules
(tests/data/mace/qm9_test.xyz). Runs where mace-torch is installed (it pins e3nn 0.4.4)."""
import importlib.util
import os
import pickle
import warnings
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("mace") is None:  # not importorskip: the adapter is to import mace first
    pytest.skip("needs mace-torch", allow_module_level=True)
# import mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the whole process; the adapter undoes that
SWITCH_UNSET = "mace" not in sys.modules and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ

from e3nn import o3  # noqa: E402

from irrepprobe.adapters import detect, get_adapter, load_model  # noqa: E402
from irrepprobe.capture import capture, hooked, model_of  # noqa: E402
from irrepprobe.irreps import split  # noqa: E402
from irrepprobe.cli import main  # noqa: E402
from irrepprobe.data.structures import read_structures  # noqa: E402
from irrepprobe.errors import IrrepprobeError  # noqa: E402
from irrepprobe.metrics import utilisation  # noqa: E402

DATA = Path(__file__).parent / "data" / "mace"
MODEL = DATA / "tiny_mace.model"
XYZ = DATA / "qm9_test.xyz"


@pytest.fixture(scope="module")
def adapter():
    return get_adapter("mace")


@pytest.fixture(scope="module")
def tiny(adapter):
    return adapter.load(str(MODEL), trust=True)


@pytest.fixture(scope="module")
def mols():
    return read_structures(XYZ)


@pytest.fixture(scope="module")
def twin(adapter, tiny, tmp_path_factory):
    """The tiny model converted by MACE's own cuequivariance conversion (CPU, layout ir_mul)."""
    pytest.importorskip("cuequivariance_torch")
    import copy

    from mace.cli.convert_e3nn_cueq import run

    saved = torch.get_default_dtype()
    try:  # the conversion sets the default dtype to the model's
        module = run(copy.deepcopy(tiny.module), device="cpu", return_model=True, layout="ir_mul")
    finally:
        torch.set_default_dtype(saved)
    path = tmp_path_factory.mktemp("cueq") / "tiny_mace_cueq.model"
    torch.save(module, path)
    return adapter.load(str(path), trust=True)


def run_hooked(adapter, model, batch, points):
    seen = {}

    def make(p):
        def hook(module, args, out):
            seen[p.name] = p.read(out).detach()
        return hook

    with hooked(model.module, [(p.module, make(p)) for p in points]), torch.no_grad():
        energy = adapter.predict(model, batch)
    return energy, seen


def test_points_match_real_tensors_and_energies_are_maces_own(adapter, tiny, mols):
    assert adapter.name == "mace" and adapter.has_forces and not adapter.needs_grad
    assert detect(str(MODEL)).name == "mace"
    if SWITCH_UNSET:
        assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    assert tiny.quantity.name == "energy" and tiny.quantity.unit == "eV" and tiny.quantity.per_atom
    info = tiny.info
    assert (info["layers"], info["max_ell"], info["r_max"], info["layout"]) == (2, 2, 5.0, "mul_ir")
    assert info["elements"] == [1, 6, 7, 8] and info["irreps_layers"] == ["8x0e+8x1o+8x2e", "8x0e"]
    text = adapter.summary(tiny)
    assert "ScaleShiftMACE" in text and "8x0e+8x1o+8x2e" in text and "5,680 parameters" in text

    batches = list(adapter.batches(tiny, mols.take(np.arange(8)), batch_size=3))
    assert [b.n_structures for b in batches] == [3, 3, 2]
    b = next(adapter.batches(tiny, mols, batch_size=8))
    assert b.inputs["positions"].dtype == torch.float32
    assert torch.equal(b.atom_batch, mols.take(np.arange(8)).structure_of_atom())
    assert torch.equal(b.edge_batch, b.atom_batch[b.inputs["edge_index"][1]])  # edges stay in a molecule

    points = adapter.points(tiny)
    names = [p.name for p in points]
    assert len(set(names)) == len(names)
    energy, seen = run_hooked(adapter, tiny, b, points)
    for p in points:
        rows = b.n_atoms if p.kind == "node" else b.n_edges
        x = seen[p.name]
        if p.layout == "mul_first":
            mul = p.irreps[0].mul
            assert x.shape == (rows, mul, p.irreps.dim // mul), p.name
        else:
            assert x.shape == (rows, p.irreps.dim), p.name
    assert adapter.default_points(tiny) == ["products.0", "products.1"]
    table = {p.name: (str(p.irreps), p.layout, p.kind, p.role) for p in points}
    assert table["interactions.0.message"] == ("8x0e+8x1o+8x2e", "mul_first", "node", "inner")
    assert table["products.0"] == ("8x0e+8x1o+8x2e", "mul_ir", "node", "stream")
    assert table["products.1"] == ("8x0e", "mul_ir", "node", "stream")
    assert table["products.1.linear"][3] == "update" and table["readouts.1"][3] == "output"
    assert table["spherical_harmonics"] == ("1x0e+1x1o+1x2e", "mul_ir", "edge", "input")
    assert "interactions.0.sc" not in table and "interactions.1.sc" in table  # the first layer has no residual
    # the message is products' input in MACE's [atoms, mul, (lmax+1)^2]: its l=0 column is channel-wise 0e
    assert torch.equal(split(seen["interactions.0.message"], "8x0e+8x1o+8x2e", "mul_first")["0e"][..., 0],
                       seen["interactions.0.message"][:, :, 0])

    # the same energies and forces as MACE's own ASE calculator, one molecule at a time
    from mace.calculators import MACECalculator

    import copy

    # a copy: MACE's calculator freezes the parameters of the module it is given, and the fixture is shared
    calc = MACECalculator(models=copy.deepcopy(tiny.module), device="cpu", default_dtype="float32")
    forces = adapter.forces(tiny, b)
    assert energy.shape == (8, 1) and forces.shape == (b.n_atoms, 3)
    i = 5
    atoms = mols.atoms(i)
    atoms.calc = calc
    assert abs(atoms.get_potential_energy() - float(energy[i])) < 1e-4
    a, c = int(mols.ptr[i]), int(mols.ptr[i + 1])
    assert np.allclose(atoms.get_forces(), forces[a:c].numpy(), atol=1e-4)
    # trained to QM9's u0_atom: within a fraction of an eV of the label
    assert np.abs(energy[:, 0].numpy() - mols.labels["u0_atom"][:8]).mean() < 0.5


def test_captured_invariants_do_not_move_under_rotation(tiny, mols, tmp_path):
    torch.manual_seed(0)
    R = o3.rand_matrix()
    cap0 = capture(tiny, mols, ["*"], tmp_path / "a", batch_size=32, target="u0_atom")
    cap1 = capture(tiny, mols.rotated(R), ["*"], tmp_path / "b", batch_size=32, target="u0_atom")
    assert len(cap0.points) == 19  # with the up-projections and the first message before its skip (channels)
    assert np.allclose(cap0.arrays["output"], cap1.arrays["output"], rtol=1e-5, atol=0)
    checked = vectors = 0
    for key, a in cap0.arrays.items():
        if not key.startswith("mol/"):
            continue
        b = cap1.arrays[key]
        if key.endswith(("norm_sum", "norm_mean", "value_sum", "value_mean")):
            assert np.abs(b - a).max() <= 1e-5 * np.abs(a).max() + 1e-9, key
            checked += 1
        elif key.endswith("vector_sum") and "/1o/" in key:  # pooled l=1 features turn with D(R)
            D = o3.Irreps("1o").D_from_matrix(R).numpy()
            assert np.abs(b - a @ D.T).max() <= 1e-4 * np.abs(a).max() + 1e-9, key
            vectors += 1
    # 1o: harmonics, 2 conv_tp, the first message before its skip, 2 messages, the second up-projection, 3 in
    # products.0
    assert checked == 116 and vectors == 10


def test_ablation_moves_the_prediction(tiny, mols, tmp_path):
    cap = capture(tiny, mols, None, tmp_path / "c", batch_size=50, target="u0_atom", trusted=True)
    table = utilisation(cap, molecules=50, device="cpu", interventions=("zero",), n_boot=100)
    forces = table[table["quantity"] == "forces"]  # by autograd, scored beside the energy: the shift of its own
    assert len(forces) and (forces["score"] == "shift").all() and np.isfinite(forces["scale_free"]).all()
    table = table[table["quantity"] != "forces"]
    row = {(r.point, r.block): r for r in table[table.intervention == "zero"].itertuples()}
    assert set(row) >= {("products.0", "0e"), ("products.0", "1o"), ("products.0", "2e"), ("products.1", "0e")}
    assert row[("products.1", "0e")].utilisation > 0.5 and row[("products.0", "1o")].utilisation > 0.1
    assert row[("products.1", "0e")].used and row[("products.0", "1o")].used
    # this training left products.0's l=2 output at ~1e-7 (its weights went to ~0): no effect when zeroed
    assert abs(row[("products.0", "2e")].utilisation) < 1e-3 and not row[("products.0", "2e")].used


def test_ir_mul_twin_gives_the_same_invariants(adapter, tiny, twin, mols, tmp_path):
    assert twin.info["layout"] == "ir_mul" and "ir_mul" in adapter.summary(twin)
    layouts = {p.name: p.layout for p in adapter.points(twin)}
    assert layouts["products.0"] == "ir_mul" and layouts["interactions.0.message"] == "mul_first"
    pts = ["node_embedding", "interactions.*.message", "interactions.1.sc", "products.*"]
    some = mols.take(np.arange(40))
    cap0 = capture(tiny, some, pts, tmp_path / "e3nn", batch_size=20, target="u0_atom")
    cap1 = capture(twin, some, pts, tmp_path / "cueq", batch_size=20, target="u0_atom")
    assert cap0.points == cap1.points and len(cap0.points) == 10
    assert np.allclose(cap0.arrays["output"], cap1.arrays["output"], rtol=1e-5, atol=0)
    for key, a in cap0.arrays.items():
        if key.startswith("mol/") and not key.endswith("vector_sum"):
            assert np.abs(cap1.arrays[key] - a).max() <= 1e-4 * np.abs(a).max() + 1e-7, key
    # ablation through the ir_mul layout hits the same block as through mul_ir
    b0, b1 = next(adapter.batches(tiny, some, 20)), next(adapter.batches(twin, some, 20))
    from irrepprobe.capture import replacing

    def zero_1o(x):
        return torch.cat([x[:, :8], torch.zeros_like(x[:, 8:32]), x[:, 32:]], dim=1)

    outs = []
    for model, batch in ((tiny, b0), (twin, b1)):
        point = next(p for p in adapter.points(model) if p.name == "products.0")
        with hooked(model.module, replacing([point], {"products.0": zero_1o})), torch.no_grad():
            outs.append(adapter.predict(model, batch))
    base = adapter.predict(tiny, b0)
    assert (outs[0] - base).abs().max() > 1e-2 and torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_untrained_control_keeps_the_architecture_and_the_energy_scale(adapter, tiny, mols):
    u1, u1b, u2 = adapter.untrained(tiny, seed=1), adapter.untrained(tiny, seed=1), adapter.untrained(tiny, seed=2)
    assert u1.info["untrained"] and "(untrained)" in adapter.summary(u1)
    assert [(p.name, str(p.irreps)) for p in adapter.points(u1)] == [(p.name, str(p.irreps))
                                                                    for p in adapter.points(tiny)]
    trained = dict(tiny.module.named_buffers())
    for name, buf in u1.module.named_buffers():  # E0s, scale and shift, cutoff, elements: as trained
        assert torch.equal(buf, trained[name]), name
    w = "products.0.linear.weight"
    p1, p1b, p2, p0 = (dict(m.module.named_parameters())[w] for m in (u1, u1b, u2, tiny))
    assert torch.equal(p1, p1b) and not torch.equal(p1, p2) and not torch.equal(p1, p0)
    b = next(adapter.batches(u1, mols, 16))
    e = adapter.predict(u1, b)[:, 0].numpy()
    y = mols.labels["u0_atom"][:16]
    assert np.isfinite(e).all() and np.abs(e - y).mean() < 0.2 * np.abs(y).mean()  # E0s alone: in eV


def test_compiled_model_is_refused_with_what_to_give(tiny, tmp_path, capsys):
    from e3nn.util import jit

    path = tmp_path / "tiny_mace_compiled.model"
    import copy

    # as mace_run_train writes it; e3nn compiles submodules in place, so a copy: the fixture stays eager
    torch.jit.save(jit.compile(copy.deepcopy(tiny.module)), path)
    for extra in ([], ["--format", "mace", "--trust"]):
        code = main(["capture", str(path), "--data", str(XYZ), "--out", str(tmp_path / "c"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "TorchScript" in err[0] and "give tiny_mace.model" in err[0]


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("pwned"),))


def test_pickles_need_trust_and_run_no_code_without_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["capture", str(MODEL), "--data", str(XYZ), "--out", "c"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--trust" in err[0]
    with open("evil.model", "wb") as f:  # names mace's model module, so that detection picks it
        pickle.dump({"mace.modules.models": _Evil()}, f)
    assert detect("evil.model").name == "mace"
    code = main(["capture", "evil.model", "--data", str(XYZ), "--out", "c"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--trust" in err[0] and not Path("pwned").exists()
    torch.save({"model": {"w": torch.zeros(1)}, "mace.modules.models": 1}, "ckpt.pt")  # a training checkpoint
    with pytest.raises(IrrepprobeError, match="not a MACE module"):
        get_adapter("mace").load("ckpt.pt", trust=True)


def two_heads(heads, path):
    """A real two-head ScaleShiftMACE built by MACE's own constructor from the tiny model's config: per
    head its own E0s (the second's 0.5 eV higher per atom), scale, shift and readout weights (random);
    the trunk's trained weights copied over. Saved as mace_run_train saves a model."""
    import warnings

    from mace.tools.scripts_utils import extract_config_mace_model

    tiny = get_adapter("mace").load(str(MODEL), trust=True)  # not the fixture: another test scripts it
    config = extract_config_mace_model(tiny.module)
    e0, scale = config["atomic_energies"], float(config["atomic_inter_scale"])
    config.update(heads=heads, atomic_energies=np.concatenate([e0, e0 + 0.5]),
                  atomic_inter_scale=np.array([scale, scale]), atomic_inter_shift=np.zeros(2))
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        module = type(tiny.module)(**config)
    own, trained = module.state_dict(), tiny.module.state_dict()
    module.load_state_dict({k: trained[k] if k in trained and trained[k].shape == v.shape else v
                            for k, v in own.items()})
    torch.save(module, path)
    return path


def test_multi_head_model_is_measured_at_the_chosen_head(adapter, tiny, mols, tmp_path):
    path = two_heads(["pbe", "r2scan"], tmp_path / "two.model")
    some = mols.take(np.arange(4))
    with pytest.raises(IrrepprobeError) as err:  # no head called default: refused, never guessed
        load_model(path, "mace", trust=True)
    assert str(err.value) == "this MACE model has several heads: pbe, r2scan; choose one with --head NAME"
    with pytest.raises(IrrepprobeError, match="no head 'Default'; valid: pbe, r2scan$"):
        load_model(path, "mace", trust=True, head="Default")
    raw = adapter.load(str(path), trust=True)
    with pytest.raises(IrrepprobeError, match="several heads"):
        next(adapter.batches(raw, some))

    energies = {}
    for name in ("pbe", "r2scan"):
        model = adapter.choose(raw, name)
        assert f"head {name} of pbe, r2scan" in adapter.summary(model)
        energies[name] = adapter.predict(model, next(adapter.batches(model, some, 4)))
    assert (energies["r2scan"] - energies["pbe"]).abs().min() > 1e-2
    from mace.calculators import MACECalculator  # MACE's own calculator at that head

    atoms = some.atoms(2)
    atoms.calc = MACECalculator(models=raw.module, device="cpu", default_dtype="float32", head="r2scan")
    assert abs(atoms.get_potential_energy() - float(energies["r2scan"][2])) < 1e-4

    cap = capture(load_model(path, "mace", trust=True, head="r2scan"), some, ["products.1"], tmp_path / "c",
                  trusted=True)
    assert cap.meta["head"] == "r2scan" and cap.meta["heads"] == ["pbe", "r2scan"]
    again = model_of(cap)  # what report, utilisation and controls measure
    assert again.info["head"] == "r2scan"
    assert np.allclose(adapter.predict(again, next(adapter.batches(again, some, 4))).numpy(), cap.arrays["output"])
    control = adapter.untrained(again, seed=1)
    assert control.info["head"] == "r2scan" and control.info["heads"] == ["pbe", "r2scan"]

    # a fine-tuned model's own head is called Default: measured with no flag; single-head models too
    assert load_model(two_heads(["pt_head", "Default"], tmp_path / "ft.model"), "mace",
                      trust=True).info["head"] == "Default"
    assert adapter.choose(tiny) is tiny and tiny.info["heads"] == ["Default"]


def test_cli_head_picks_a_mace_head(tmp_path, capsys):
    import json

    path = two_heads(["pbe", "r2scan"], tmp_path / "two.model")
    base = ["capture", str(path), "--trust", "--data", str(XYZ), "--subset", "3"]
    for extra, message in (([], "several heads: pbe, r2scan; choose one with --head NAME"),
                           (["--modality", "pbe"], "--modality is for SevenNet multi-fidelity models; this is a "
                                                   "mace model: use --head NAME"),
                           (["--head", "pbe", "--modality", "pbe"], "not both")):
        code = main(base + ["--out", str(tmp_path / "bad"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad").exists()
    assert main(base + ["--out", str(tmp_path / "c"), "--head", "pbe"]) == 0
    assert "head pbe of pbe, r2scan" in capsys.readouterr().out
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["head"] == "pbe" and meta["heads"] == ["pbe", "r2scan"]


def test_periodic_diamond_cells_capture_rotation_safe_and_score_forces(adapter, tmp_path):
    """Rattled diamond supercells (carbon is among the tiny model's elements), periodic: the capture's
    equivariance check rotates cell and positions together and passes; one element means the energy's
    share has no denominator and the verdict rests on the forces."""
    from ase.build import bulk
    from ase.io import write

    frames = []
    for i in range(12):
        at = bulk("C", "diamond", a=3.57, cubic=True) * (2, 1, 1)
        at.rattle(stdev=0.04 + 0.01 * (i % 3), seed=i)
        at.set_cell(at.cell * (1 + 0.01 * (i % 4 - 1.5)), scale_atoms=True)
        frames.append(at)
    write(tmp_path / "diamond.extxyz", frames)
    cells = read_structures(tmp_path / "diamond.extxyz")
    tiny = adapter.load(str(MODEL), trust=True)  # a fresh copy: an earlier test scripts the shared one
    cap = capture(tiny, cells, None, tmp_path / "c", batch_size=6, trusted=True, check_equivariance=4)
    assert cap.meta["periodic"] == 12
    eq = cap.meta["equivariance"]
    assert eq["passed"] and eq["forces_max_rel"] is not None and eq["forces_max_rel"] < 1e-3
    table = utilisation(cap, device="cpu", batch_size=6, n_boot=100)
    energy, forces = table[table["quantity"] == "energy"], table[table["quantity"] == "forces"]
    assert energy["scale_free"].isna().all()  # one stoichiometry: left out, not 79,000%
    assert np.isfinite(forces["scale_free"]).all() and forces["scale_free"].max() > 0.05


def test_masked_mace_zeroes_the_order_and_fine_tunes_on_energy_and_forces(tiny, mols):
    from family_checks import masked_and_recovered

    masked_and_recovered(tiny, mols, 1, forces=True)


def test_surgery_computes_what_the_masked_model_computes_and_refuses_what_mace_cannot_build(tiny, mols):
    import copy

    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions
    from irrepprobe.prune.family import check_drop

    adapter = tiny.adapter
    for bad, why in (([0], "l=0 is never dropped"), ([3], "no l=3"), ([1], "only the highest orders"),
                     ([1, 2], "no model without l=1")):
        assert why in adapter.why_not_without(tiny, bad)
        with pytest.raises(IrrepprobeError, match=why):
            check_drop(tiny, bad)
    model = copy.copy(tiny)  # weights moved off the trained ones, so that every l=2 path matters
    model.module = copy.deepcopy(tiny.module)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(0.3 * torch.randn_like(p) * (p.abs().mean() + 1e-3))
    small = adapter.without_orders(model, [2])
    assert small.info["max_ell"] == 1 and "2e" not in small.info["hidden_irreps"]
    assert all(ir.l < 2 for p in adapter.points(small) for _, ir in o3.Irreps(p.irreps))
    assert sum(p.numel() for p in small.module.parameters()) < sum(p.numel() for p in model.module.parameters())
    batches = list(adapter.batches(model, mols.take(np.arange(16)), 8))
    full, mask, cut = (predictions(m, batches) for m in (model, masked(model, [2]), small))
    assert (mask - full).abs().max() > 0.1  # l=2 matters to these weights
    assert torch.allclose(cut, mask, atol=1e-4, rtol=0)  # float32 rounding on energies of ~60 eV
    f_mask = masked(model, [2]).adapter.forces(masked(model, [2]), batches[0])
    f_cut = adapter.forces(small, batches[0])
    assert torch.allclose(f_cut, f_mask, atol=1e-4, rtol=0)


def test_prune_writes_a_model_maces_own_calculator_runs(mols, tmp_path, capsys):
    import pandas as pd
    from mace.calculators import MACECalculator

    from irrepprobe.capture.equivariance import check_equivariance

    out = tmp_path / "pruned"
    assert main(["prune", str(MODEL), "--format", "mace", "--trust", "--drop-l", "2", "--data", str(XYZ),
                 "--subset", "12", "--steps", "3", "--md-steps", "1", "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table["model"].tolist()[:3] == ["original", "pruned, before fine-tuning", "pruned, fine-tuned"]
    assert table["model"].str.startswith("small, from scratch").any()  # the same small architecture, fresh
    assert (pd.read_csv(out / "md_speed.csv")["MD steps/s"] > 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = MACECalculator(model_paths=str(out / "pruned.model"), device="cpu", default_dtype="float32")
    assert calc.models[0].spherical_harmonics.irreps_out.lmax == 1
    atoms = mols.atoms(0)
    atoms.calc = calc
    ours = get_adapter("mace").load(str(out / "pruned.model"), trust=True)
    batch = next(ours.adapter.batches(ours, mols.take(np.arange(1)), 1))
    assert atoms.get_potential_energy() == pytest.approx(float(ours.adapter.predict(ours, batch)), abs=1e-3)
    assert check_equivariance(ours, mols.take(np.arange(4)), n=4)[1]["passed"]
    assert main(["prune", str(MODEL), "--format", "mace", "--trust", "--drop-l", "1", "--data", str(XYZ)]) == 2
    assert "cannot drop l=1" in capsys.readouterr().err
    # the original and the pruned file side by side through MACECalculator: molecules apply, crystals do not
    v = tmp_path / "validate"
    assert main(["validate", f"original={MODEL}", f"pruned={out / 'pruned.model'}", "--format", "mace", "--trust",
                 "--suite", "molecules,stress", "--qm9", "10", "--out", str(v)]) == 0
    s22 = pd.read_csv(v / "tables" / "s22.csv")
    assert set(s22["model"]) == {"original", "pruned"} and s22["error (kcal/mol)"].notna().all()
    assert "stress: original does not know" in (v / "tables" / "skipped.txt").read_text()


def _random_keep(model, k, seed=0):
    """``k`` channels kept at every channel point of a MACE model, one set for all blocks of a message."""
    g = torch.Generator().manual_seed(seed)
    adapter, keep = model.adapter, {}
    points = {p.name: p for p in adapter.points(model)}
    for _, names, _ in adapter.channel_groups(model):
        for name in names:
            blocks = [(mul, str(ir)) for mul, ir in o3.Irreps(points[name].irreps)]
            shared = sorted(torch.randperm(blocks[0][0], generator=g)[:k].tolist())
            keep[name] = {b: shared if name in adapter.tied_points(model) else
                          sorted(torch.randperm(mul, generator=g)[:k].tolist()) for mul, b in blocks}
    return keep


def test_channel_surgery_computes_what_the_channel_masked_model_computes(tiny, mols):
    from irrepprobe.metrics import masked
    from irrepprobe.metrics.utilisation import predictions

    adapter = tiny.adapter
    assert adapter.equal_channels and adapter.tied_points(tiny) == ["interactions.0.message", "interactions.1.message"]
    keep = _random_keep(tiny, 4)
    batches = list(adapter.batches(tiny, mols.take(np.arange(16)), 8))
    for drop in ([], [2]):
        small = adapter.without_orders(tiny, drop, keep)
        assert small.info["hidden_irreps"] == ("4x0e+4x1o+4x2e" if not drop else "4x0e+4x1o")
        full, mask, cut = (predictions(m, batches) for m in (tiny, masked(tiny, drop, keep), small))
        assert (mask - full).abs().max() > 0.1  # the channels matter
        assert torch.allclose(cut, mask, atol=1e-4, rtol=0)
        f_mask = adapter.forces(masked(tiny, drop, keep), batches[0])
        assert torch.allclose(adapter.forces(small, batches[0]), f_mask, atol=1e-4, rtol=0)
    uneven = {**keep, "products.0": {**keep["products.0"], "1o": [0, 1]}}
    with pytest.raises(IrrepprobeError, match="same number of channels in every block"):
        adapter.without_orders(tiny, [], uneven)


def test_prune_channels_of_mace_equal_across_orders_runs_in_maces_calculator(mols, tmp_path, capsys):
    import pandas as pd
    from mace.calculators import MACECalculator

    out = tmp_path / "c"
    assert main(["prune", str(MODEL), "--format", "mace", "--trust", "--channels", "0e:6,1o:4", "--data", str(XYZ),
                 "--subset", "12", "--steps", "2", "--md-steps", "0", "--no-scratch", "--out", str(out)]) == 0
    assert "every layer: 4x0e+4x1o+4x2e" in (out / "report.md").read_text()  # MACE: the smallest count for all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = MACECalculator(model_paths=str(out / "pruned.model"), device="cpu", default_dtype="float32")
    assert str(calc.models[0].products[0].linear.irreps_out) == "4x0e+4x1o+4x2e"
    atoms = mols.atoms(0)
    atoms.calc = calc
    ours = get_adapter("mace").load(str(out / "pruned.model"), trust=True)
    batch = next(ours.adapter.batches(ours, mols.take(np.arange(1)), 1))
    assert atoms.get_potential_energy() == pytest.approx(float(ours.adapter.predict(ours, batch)), abs=1e-3)
    assert pd.read_csv(out / "channels.csv")["point"].str.contains("message").any()
    assert main(["prune", str(MODEL), "--format", "mace", "--trust", "--channels", "3e:2", "--data", str(XYZ)]) == 2
    assert "block '3e'" in capsys.readouterr().err

"""The e3nn adapter on e3nn's own example networks over real QM9 molecules (no mocks)."""
import os

import pytest
import torch
from e3nn import o3

from irrepprobe.adapters import get_adapter
from irrepprobe.adapters.e3nn.adapter import E3nnAdapter
from irrepprobe.irreps import blocks, split
from irrepprobe.data.structures import qm9_structures, read_structures
from irrepprobe.errors import IrrepprobeError
from irrepprobe.examples.e3nn_nets import simple_network

SIMPLE = "irrepprobe.examples.e3nn_nets:simple_network"
GATE = "irrepprobe.examples.e3nn_nets:gate_points_network"


def _has_gate_points() -> bool:
    try:
        import e3nn.nn.models.gate_points_2101  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny e3nn ops: one thread is faster, and two threads crawl (x5-40) when the 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def molecules(qm9):
    return qm9_structures(qm9, torch.arange(100, 108))


@pytest.fixture(scope="module")
def simple():
    return get_adapter("e3nn").load(SIMPLE)


def run(model, structures, names, batch_size=8):
    """Per-point outputs of every batch ({name: [tensor per batch]}), the batches and the predictions."""
    adapter, modules = model.adapter, dict(model.module.named_modules())
    seen = {n: [] for n in names}
    handles = [modules[n].register_forward_hook(lambda m, a, out, n=n: seen[n].append(out.detach()))
               for n in names]
    try:
        with torch.no_grad():
            batches = list(adapter.batches(model, structures, batch_size))
            preds = torch.cat([adapter.predict(model, b) for b in batches])
    finally:
        for h in handles:
            h.remove()
    return seen, batches, preds


def pooled(model, structures, names):
    """Per structure and point: per-channel norms summed over atoms per block, l=0 values and l=1 vectors summed."""
    seen, batches, _ = run(model, structures, names)
    points = {p.name: p for p in model.adapter.points(model)}
    out = {}
    for name in names:
        parts = {}
        for x, b in zip(seen[name], batches):
            for block, v in split(x.double(), points[name].irreps).items():  # [atoms, mul, 2l+1]
                n = b.n_structures
                parts.setdefault((block, "norm"), []).append(v.new_zeros(n, v.shape[1]).index_add_(0, b.atom_batch,
                                                                                                   v.norm(dim=-1)))
                if v.shape[-1] in (1, 3):
                    kind = "value" if v.shape[-1] == 1 else "vector"
                    summed = v.new_zeros(n, *v.shape[1:]).index_add_(0, b.atom_batch, v)
                    parts.setdefault((block, kind), []).append(summed)
        out[name] = {k: torch.cat(v) for k, v in parts.items()}
    return out


def test_simple_network_loads_with_points_matching_the_tensors(simple, molecules):
    adapter = simple.adapter
    assert isinstance(adapter, E3nnAdapter) and adapter.accepts(SIMPLE)
    assert simple.quantity.irreps == "1x0e" and simple.sha256 is None
    points = adapter.points(simple)
    assert adapter.default_points(simple) == ["mp.layers.0", "mp.layers.1", "mp.layers.2"]
    roles = {p.name: p.role for p in points}
    assert roles["mp.layers.3"] == "output" and roles["mp.layers.0.second"] == "inner" and "mp" not in roles
    assert {p.name for p in points if p.kind == "edge"} == {"mp.layers.0.first.tp", "mp.layers.1.first.tp",
                                                                    "mp.layers.2.first.tp", "mp.layers.3.tp"}
    seen, batches, preds = run(simple, molecules, [p.name for p in points])
    assert preds.shape == (len(molecules), 1) and torch.isfinite(preds).all()
    assert len(batches) == 1 and simple.info["max_batch_atoms"] is None  # self-edges carry no message here
    for p in points:
        for x, b in zip(seen[p.name], batches):
            assert x.shape == (b.n_atoms if p.kind == "node" else b.n_edges, p.irreps.dim), p.name
    assert "SimpleNetwork" in adapter.summary(simple) and "48,098 parameters" in adapter.summary(simple)


@pytest.mark.parametrize("source", [SIMPLE, pytest.param(GATE, marks=pytest.mark.skipif(
    not _has_gate_points(), reason="e3nn < 0.5 builds gate_points_2101's graph with torch_cluster"))])
def test_pooled_invariants_and_vectors_follow_a_rotation(source, molecules):
    model = get_adapter("e3nn").load(source)
    names = model.adapter.default_points(model)
    torch.manual_seed(0)
    R = o3.rand_matrix()
    a, b = pooled(model, molecules, names), pooled(model, molecules.rotated(R), names)
    if source == GATE:  # self-edges carry messages: batches stay within cdist's exact range
        assert model.info["max_batch_atoms"] == 25
        assert all(b.n_atoms <= 25 for b in model.adapter.batches(model, molecules, 8))
    vectors = 0
    for name in names:
        for (block, kind), x in a[name].items():
            y = b[name][(block, kind)]
            scale = x.abs().max().clamp(min=1e-12)
            if kind == "vector":  # the pooled l=1 block rotates with its Wigner D
                vectors += 1
                y = y @ o3.Irrep(block).D_from_matrix(R.double())
            assert (x - y).abs().max() <= 1e-5 * scale, (name, block, kind, float((x - y).abs().max() / scale))
    assert vectors >= len(names)  # every default point carries an l=1 block
    ya, yb = (run(model, s, [])[2] for s in (molecules, molecules.rotated(R)))
    assert torch.allclose(ya, yb, rtol=1e-5, atol=1e-6)


def test_zeroing_a_block_through_point_read_write_changes_the_output(simple, molecules):
    adapter = simple.adapter
    point = next(p for p in adapter.points(simple) if p.name == "mp.layers.1")
    cols = next(b for b in blocks(point.irreps) if b.name == "0e").index

    def zero(module, args, out):
        x = point.read(out).clone()
        x[:, cols] = 0
        return point.write(out, x)

    batch = next(iter(adapter.batches(simple, molecules, 8)))
    with torch.no_grad():
        before = adapter.predict(simple, batch)
        handle = dict(simple.module.named_modules())[point.module].register_forward_hook(zero)
        try:
            after = adapter.predict(simple, batch)
        finally:
            handle.remove()
        again = adapter.predict(simple, batch)
    assert not torch.allclose(before, after) and torch.equal(before, again)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_pickled_module_needs_trust_and_runs_no_code_without_it(tmp_path, molecules):
    adapter = E3nnAdapter()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.pt"
    torch.save(Evil(), evil)
    with pytest.raises(IrrepprobeError, match="--trust"):
        adapter.load(str(evil))
    assert not marker.exists()

    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    with pytest.raises(IrrepprobeError, match="TorchScript.*no hooks"):
        adapter.load(str(scripted), trust=True)

    state = tmp_path / "state.pt"
    torch.save(simple_network().state_dict(), state)
    with pytest.raises(IrrepprobeError, match="not a whole module.*pkg.module:fn@"):
        adapter.load(str(state))  # weights alone: pointed to the factory syntax, no trust asked

    path = tmp_path / "simple.pt"
    net = simple_network()
    torch.save(net, path)
    assert adapter.accepts(str(path)) and not adapter.accepts(str(scripted))
    with pytest.raises(IrrepprobeError, match="--trust"):
        adapter.load(str(path))
    model = adapter.load(str(path), trust=True)
    assert type(model.module).__name__ == "SimpleNetwork" and model.sha256 and model.info["elements"] == [1, 6, 7, 8, 9]
    assert adapter.default_points(model) == ["mp.layers.0", "mp.layers.1", "mp.layers.2"]
    assert adapter.untrained(model) is None  # a pickle holds weights, not a recipe
    batch = next(iter(adapter.batches(model, molecules, 8)))
    with torch.no_grad():
        assert torch.equal(adapter.predict(model, batch), net(batch.inputs))

    net.pool_nodes = False  # one row per atom: predict sums it per structure (the pooled net divides by sqrt(18))
    torch.save(net, path)
    per_atom = adapter.load(str(path), trust=True)
    assert not per_atom.info["pooled"]
    with torch.no_grad():
        summed = adapter.predict(per_atom, batch)
    assert torch.allclose(summed, adapter.predict(model, batch) * 18**0.5, rtol=1e-5, atol=1e-6)


def test_factory_weights_and_untrained_control(tmp_path, simple):
    adapter = E3nnAdapter()
    weights = tmp_path / "w.pt"
    seed1 = simple_network(seed=1).state_dict()
    torch.save(seed1, weights)
    model = adapter.load(f"{SIMPLE}@{weights}")  # weights_only: no trust needed
    assert model.sha256 and model.source.endswith(str(weights.resolve()))
    trained = model.module.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in seed1.items())
    fresh = adapter.untrained(model, seed=0)  # the factory takes a seed: it builds simple_network(seed=0)
    assert fresh.info["untrained"] and fresh.info["weights"] is None
    assert all(torch.equal(v, simple.module.state_dict()[k]) for k, v in fresh.module.state_dict().items())
    assert not torch.equal(fresh.module.state_dict()["mp.layers.0.first.fc.layer0.weight"],
                           trained["mp.layers.0.first.fc.layer0.weight"])
    del seed1["mp.layers.0.first.fc.layer0.weight"]
    torch.save(seed1, weights)
    with pytest.raises(IrrepprobeError, match="do not fit"):
        adapter.load(f"{SIMPLE}@{weights}")
    with pytest.raises(IrrepprobeError, match="no 'nope'"):
        adapter.load("irrepprobe.examples.e3nn_nets:nope")


def test_elements_the_one_hot_does_not_know_are_refused(tmp_path, simple, molecules, qm9):
    from ase import Atoms
    from ase.io import write

    data = tmp_path / "chloromethane.xyz"
    write(data, Atoms("CClH3", positions=[[0, 0, 0], [1.78, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                           [-0.36, -0.51, -0.89]]))
    with pytest.raises(IrrepprobeError, match=r"element\(s\) Cl that the model's one-hot \(H C N O F\) does not know"):
        next(iter(simple.adapter.batches(simple, read_structures(data))))

    net = simple_network()  # without elements the one-hot follows the data's sorted elements
    del net.elements
    path = tmp_path / "anonymous.pt"
    torch.save(net, path)
    model = simple.adapter.load(str(path), trust=True)
    assert molecules.elements == [1, 6, 7, 8]
    with pytest.raises(IrrepprobeError, match="one-hot of 5 elements, the data has 4"):
        next(iter(model.adapter.batches(model, molecules)))
    five = qm9_structures(qm9, torch.arange(0, 400, 20))
    assert five.elements == [1, 6, 7, 8, 9]
    assert next(iter(model.adapter.batches(model, five))).inputs["x"].shape[1] == 5

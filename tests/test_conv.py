"""The fast convolution computes the same function as e3nn's tensor product, with the same parameters."""
import os
import subprocess
import sys

import pytest
import torch
from e3nn import o3

from conftest import smoke_config
from irrepprobe.models import build_model
from irrepprobe.models.layers import Interaction

CASES = [  # (orders, multiplicity, parity): contiguous, non-contiguous, a {l: mul} map, both parities
    ([0, 1, 2], 16, "natural"),
    ([0, 3, 4], 8, "natural"),
    ([0, 1, 2], {0: 12, 1: 8, 2: 5}, "both"),
    ([0, 2, 5], 3, "natural"),
]


@pytest.fixture
def float64():
    # e3nn bakes its Clebsch-Gordan constants in the default dtype when a module is built: build in
    # float64 so that the reference itself is exact to float64 rounding
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _layer_inputs(ls, seed=0):
    gen = torch.Generator().manual_seed(seed)
    irreps_sh = o3.Irreps([(1, (l, (-1) ** l)) for l in ls])
    hidden = o3.Irreps([(6, (l, (-1) ** l)) for l in ls])
    N, E = 40, 300
    x = torch.randn(N, hidden.dim, generator=gen)
    sh = o3.spherical_harmonics(irreps_sh, torch.randn(E, 3, generator=gen), True, "component")
    src = torch.randint(0, N, (E,), generator=gen)
    dst = torch.randint(0, N, (E,), generator=gen)  # unsorted on purpose
    return irreps_sh, hidden, x, sh, (src, dst)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("ls", [[0, 1, 2], [0, 3, 4]])
def test_the_convolution_equals_e3nns_product_and_sum_with_gradients(float64, ls, fused):
    irreps_sh, hidden, x, sh, edges = _layer_inputs(ls)
    layer = Interaction(hidden, irreps_sh, hidden, 8, 16, 5.0)
    w = torch.randn(len(edges[0]), layer.tp.weight_numel)
    x.requires_grad_(True), w.requires_grad_(True)
    src, dst = edges
    ref = torch.zeros(len(x), layer.tp.irreps_out.dim).index_add_(0, dst, layer.tp(x[src], sh, w))
    got = layer.plan.e3nn_layout(layer.plan(x, sh, w, edges, {}, fused=fused))
    assert (got - ref).abs().max() <= 1e-12 * ref.abs().max()
    probe = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * probe).sum(), [x, w])
    g_got = torch.autograd.grad((got * probe).sum(), [x, w])
    for a, b in zip(g_ref, g_got):
        assert (a - b).abs().max() <= 1e-12 * a.abs().max()


def _pair(ls, mul, parity, dtype):
    cfg = smoke_config(**{"model.ls": ls, "model.mul": mul, "model.parity": parity, "model.layers": 3,
                          "model.avg_neighbors": 6.0})
    cfg.model.conv = "e3nn"
    torch.manual_seed(0)
    ref = build_model(cfg).to(dtype)
    cfg.model.conv = "fast"
    fast = build_model(cfg).to(dtype)
    fast.load_state_dict(ref.state_dict())  # same parameters, same state_dict keys
    return ref, fast


def _batch(qm9, dtype, n=16):
    from irrepprobe.data import loader, target_values

    b = next(iter(loader(qm9, target_values(qm9, "u0_atom"), torch.arange(300, 300 + n), n)))
    b.pos = b.pos.to(dtype)
    return b


def test_the_linear_on_lanes_is_the_layers_linear_and_a_hook_on_it_sees_e3nns_layout(float64):
    irreps_sh, hidden, x, sh, edges = _layer_inputs([0, 1, 2])
    layer = Interaction(hidden, irreps_sh, hidden, 8, 16, 5.0)
    w = torch.randn(len(edges[0]), layer.tp.weight_numel)
    lanes = layer.plan(x, sh, w, edges, {}, fused=True)
    ref = layer.linear(layer.plan.e3nn_layout(lanes) * 0.3)
    assert (layer.plan.linear(lanes, layer.linear, 0.3) - ref).abs().max() <= 1e-12 * ref.abs().max()
    seen = []
    handle = layer.linear.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    radial = torch.rand(len(edges[0]), 8) + 0.5
    with_hook = layer(x, sh, radial, torch.stack(edges))
    handle.remove()
    without = layer(x, sh, radial, torch.stack(edges))
    assert (with_hook - without).abs().max() <= 1e-12 * without.abs().max()
    src, dst = edges
    agg = torch.zeros(len(x), layer.tp.irreps_out.dim).index_add_(0, dst, layer.tp(x[src], sh, layer.radial(radial)))
    assert (seen[0] - agg / 5.0**0.5).abs().max() <= 1e-12 * agg.abs().max()


@pytest.mark.parametrize("ls, mul, parity", CASES)
def test_the_fast_model_is_the_e3nn_model_in_float64_and_float32(qm9, float64, ls, mul, parity):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        ref, fast = _pair(ls, mul, parity, dtype)
        b = _batch(qm9, dtype)
        out_ref, out_fast = ref(b), fast(b)
        assert (out_ref - out_fast).abs().max() <= tol * out_ref.abs().max()
        g_ref = torch.autograd.grad(out_ref.sum(), list(ref.parameters()))
        g_fast = torch.autograd.grad(out_fast.sum(), list(fast.parameters()))
        for a, c in zip(g_ref, g_fast):
            assert (a - c).abs().max() <= tol * max(a.abs().max(), 1e-12)


def test_forces_through_the_fast_model_match(qm9, float64):
    ref, fast = _pair([0, 1, 2], 8, "natural", torch.float64)
    grads = []
    for model in (ref, fast):
        b = _batch(qm9, torch.float64, 6)
        b.pos.requires_grad_(True)
        grads.append(torch.autograd.grad(model(b).sum(), b.pos)[0])
    assert (grads[0] - grads[1]).abs().max() <= 1e-10 * grads[0].abs().max()


def test_a_checkpoint_of_either_path_loads_in_the_other(qm9, tmp_path):
    ref, fast = _pair([0, 1, 2], 8, "natural", torch.float32)
    assert list(ref.state_dict()) == list(fast.state_dict())
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in fast.parameters())


@pytest.mark.parametrize("env", [{"IRREPPROBE_NO_KERNEL": "1"}, {"CXX": "/nonexistent/g++"}])
def test_without_a_kernel_the_pytorch_path_gives_the_same_function_and_one_line(tmp_path, env):
    # a fresh extension directory, so the second case really has to compile, with no compiler to do it
    script = (
        "import torch\n"
        "from e3nn import o3\n"
        "from irrepprobe.models.layers import Interaction\n"
        "from irrepprobe.models import kernel\n"
        "torch.manual_seed(0)\n"
        "sh_irreps = o3.Irreps('0e+1o+2e'); h = o3.Irreps('4x0e+4x1o+4x2e')\n"
        "layer = Interaction(h, sh_irreps, h, 8, 16, 5.0)\n"
        "x = torch.randn(10, h.dim); sh = o3.spherical_harmonics(sh_irreps, torch.randn(30, 3), True)\n"
        "e = (torch.randint(0, 10, (30,)), torch.randint(0, 10, (30,))); w = torch.randn(30, layer.tp.weight_numel)\n"
        "ref = torch.zeros(10, layer.tp.irreps_out.dim).index_add_(0, e[1], layer.tp(x[e[0]], sh, w))\n"
        "got = layer.plan.e3nn_layout(layer.plan(x, sh, w, e, {}, fused=True))\n"
        "assert kernel.why_not() is not None\n"
        "print('max diff', float((got - ref).abs().max()))\n"
    )
    run_env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), **env}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=run_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    notice = [line for line in proc.stderr.splitlines() if line.startswith("irrepprobe:")]
    assert len(notice) == 1 and "no compiled uvu kernel" in notice[0]
    assert float(proc.stdout.split()[-1]) < 1e-5


def test_a_lock_left_by_a_killed_build_is_removed_and_a_live_one_waited_for(tmp_path):
    import threading
    import time

    from irrepprobe.models import kernel

    lock = tmp_path / "lock"
    lock.touch()
    old = time.time() - 2 * kernel.STALE_S
    os.utime(lock, (old, old))
    kernel.wait_for_build(lock)
    assert not lock.exists()  # stale: removed, so torch's own wait on it cannot hang
    lock.touch()  # a live build: its process removes the lock when done, and we wait until then
    threading.Timer(0.3, lock.unlink).start()
    t0 = time.monotonic()
    kernel.wait_for_build(lock, poll_s=0.05)
    assert not lock.exists() and time.monotonic() - t0 >= 0.25


def test_a_stale_lock_does_not_hang_the_first_use(tmp_path):
    # a build killed half-way leaves torch's lock file; without a compiler this must still end in the fallback
    ext = tmp_path / "ext"
    script = ("from irrepprobe.models import kernel\n"
              "lock = kernel._build_dir('irrepprobe_uvu_' + kernel._cpu_tag()) / 'lock'\n"
              "lock.parent.mkdir(parents=True, exist_ok=True); lock.touch(); import os; os.utime(lock, (0, 0))\n"
              "assert kernel.extension() is None\n")
    run_env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ext), "CXX": "/nonexistent/g++"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=run_env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "by a kernel build that did not finish" in proc.stderr, proc.stderr

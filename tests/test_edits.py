"""Interventions as data (issue 36): one Edit type, one way to select an order, applied by the one hook
mechanism for a pass and attached for fine-tuning, with the same result either way."""
import pytest
import torch

from irrepprobe.errors import IrrepprobeError
from irrepprobe.intervene import Edit, Point, attach, edit_hooks, hooked, order_edits
from irrepprobe.irreps import blocks

IRREPS = "2x0e+2x1o+1x2e"


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Identity()
        self.b = torch.nn.Identity()

    def forward(self, x):
        return self.b(self.a(x) * 2.0)


def points():
    return [Point("a", "a", IRREPS), Point("b", "b", IRREPS)]


def cols(l):
    return torch.cat([b.index for b in blocks(IRREPS) if b.l == l])


def test_order_edits_select_every_block_of_the_order_at_every_point():
    edits = order_edits(points(), [1, 2], "mask")
    assert edits == [Edit("a", ("1o", "2e"), "mask"), Edit("b", ("1o", "2e"), "mask")]
    assert order_edits(points(), 3) == []  # no point carries l=3
    assert order_edits(points(), 1)[0].how == "zero"


def test_zero_mask_and_keep_on_one_pass():
    net, x = Net(), torch.randn(5, 13)
    with hooked(net, edit_hooks(points(), order_edits(points()[:1], 1, "zero"))):
        zeroed = net(x)
    with hooked(net, edit_hooks(points(), order_edits(points()[:1], 1, "mask"))):
        masked = net(x)
    with hooked(net, edit_hooks(points(), [Edit("a", ("1o",), "keep")])):
        kept = net(x)
    assert torch.equal(zeroed, masked)
    assert torch.all(zeroed[:, cols(1)] == 0) and torch.equal(zeroed[:, cols(0)], 2 * x[:, cols(0)])
    assert torch.equal(kept[:, cols(1)], 2 * x[:, cols(1)]) and torch.all(kept[:, cols(0)] == 0)
    assert torch.all(kept[:, cols(2)] == 0)
    assert torch.equal(net(x), 2 * x)  # the hooks were for that pass only


def test_attached_edits_stay_and_match_the_pass():
    net, x = Net(), torch.randn(4, 13, requires_grad=True)
    edits = order_edits(points(), 2, "mask")
    with hooked(net, edit_hooks(points(), edits)):
        once = net(x)
    attach(net, points(), edits)
    assert torch.equal(net(x), once) and torch.equal(net(x), once)
    net(x).sum().backward()  # the graph stays whole: the masked columns get a zero gradient
    assert torch.all(x.grad[:, cols(2)] == 0) and torch.all(x.grad[:, cols(0)] == 2)


def test_mean_and_resample_take_their_values_from_a_baseline():
    class Baseline:
        def mean(self, p):
            return torch.arange(13.0)

        def donor(self, p, chosen, rows):
            return torch.full((rows, 13), -1.0)

    net, x = Net(), torch.randn(3, 13)
    with hooked(net, edit_hooks(points(), [Edit("b", ("0e",), "mean")], Baseline())):
        y = net(x)
    assert torch.equal(y[:, cols(0)], torch.arange(13.0)[cols(0)].expand(3, -1))
    with hooked(net, edit_hooks(points(), [Edit("b", ("2e",), "resample")], Baseline())):
        y = net(x)
    assert torch.all(y[:, cols(2)] == -1) and torch.equal(y[:, cols(1)], 2 * x[:, cols(1)])
    with pytest.raises(IrrepprobeError, match="needs a baseline"):
        edit_hooks(points(), [Edit("b", ("0e",), "mean")])


def test_bad_edits_are_one_line_errors():
    with pytest.raises(IrrepprobeError, match="unknown edit"):
        Edit("a", ("0e",), "scale")
    with pytest.raises(IrrepprobeError, match="has no block '3o'"):
        edit_hooks(points(), [Edit("a", ("3o",))])
    with pytest.raises(IrrepprobeError, match="no point 'c'"):
        edit_hooks(points(), [Edit("c", ("0e",))])


def test_a_channel_mask_zeroes_exactly_the_named_channels_of_each_block():
    net, x = Net(), torch.randn(5, 13)
    edit = Edit("a", ("1o", "0e"), "mask", channels=((1,), (0,)))
    with hooked(net, edit_hooks(points(), [edit])):
        y = net(x)
    # 2x0e: columns 0,1; 2x1o: channel 0 = columns 2-4, channel 1 = columns 5-7; 1x2e: columns 8-12
    gone = torch.tensor([0, 5, 6, 7])
    kept = torch.tensor([k for k in range(13) if k not in gone.tolist()])
    assert torch.equal(y[:, gone], torch.zeros(5, 4))
    assert torch.allclose(y[:, kept], 2 * x[:, kept])
    assert "1o[1 channels]" in str(edit)
    with pytest.raises(IrrepprobeError, match="has 2 channels; there is no channel 2"):
        with hooked(net, edit_hooks(points(), [Edit("a", ("1o",), "mask", channels=((2,),))])):
            net(x)
    with pytest.raises(IrrepprobeError, match="names channels for 1"):
        Edit("a", ("1o", "2e"), "mask", channels=((0,),))

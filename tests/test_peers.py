"""The reference MAML loops of other code bases agree with metalib's meta-gradient."""
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML, tasks
from benchmarks.peers import higher_available, higher_meta_step, textbook_meta_step
from _nets import conv_batch, rel_error, tiny_convbn, tiny_mlp
from test_maml import hand_unrolled_meta_grad


def grads_after(model, fn):
    model.zero_grad()
    out = fn()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, out


PEERS = [textbook_meta_step] + ([higher_meta_step] if higher_available() else [])


@pytest.mark.parametrize("peer", PEERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_peer_agrees_with_metalib_on_conv_batchnorm(peer, first_order, steps):
    model = tiny_convbn(seed=steps)
    batch = conv_batch(seed=steps)
    maml = MAML(model, inner_lr=0.3, inner_steps=steps, first_order=first_order)
    ours, _ = grads_after(model, lambda: maml.meta_loss(batch, F.cross_entropy).backward())
    theirs, loss = grads_after(model, lambda: peer(model, batch, F.cross_entropy, 0.3, steps, first_order))
    assert rel_error(theirs, ours) < 1e-12
    assert abs(float(loss) - float(maml.meta_loss(batch, F.cross_entropy).detach())) < 1e-12


def test_textbook_matches_hand_unrolled_mlp():
    """Against the independent, explicit-formula implementation of tests/test_maml.py."""
    model = tiny_mlp(seed=4)
    batch = tasks.Sinusoid().sample(3, 5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = hand_unrolled_meta_grad(model, batch, 0.1, 2)
    got, _ = grads_after(model, lambda: textbook_meta_step(model, batch, F.mse_loss, 0.1, 2))
    assert rel_error(got, ref) < 1e-12


def test_first_and_second_order_differ():
    """The agreement above is not vacuous: the two orders give different meta-gradients."""
    model = tiny_convbn(seed=9)
    batch = conv_batch(seed=9)
    so, _ = grads_after(model, lambda: textbook_meta_step(model, batch, F.cross_entropy, 0.3, 2, False))
    fo, _ = grads_after(model, lambda: textbook_meta_step(model, batch, F.cross_entropy, 0.3, 2, True))
    assert rel_error(fo, so) > 1e-3


def test_peer_bad_input():
    model = tiny_mlp()
    x = torch.zeros(2, 3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="inner_lr"):
        textbook_meta_step(model, (x, x, x, x), F.mse_loss, -1.0)
    with pytest.raises(TypeError, match="task batch"):
        textbook_meta_step(model, x, F.mse_loss, 0.1)
    with pytest.raises(TypeError, match="nn.Module"):
        textbook_meta_step(lambda z: z, (x, x, x, x), F.mse_loss, 0.1)


def test_higher_reports_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "higher", None)  # makes `import higher` raise ImportError
    assert not higher_available()
    with pytest.raises(ImportError):
        higher_meta_step(tiny_mlp(), (torch.zeros(1, 2, 1),) * 4, F.mse_loss, 0.1)


def test_textbook_protonet_agrees_with_metalib():
    from torch import nn

    from metalib import ProtoNet
    from benchmarks.peers import textbook_protonet_step

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, track_running_stats=False), nn.ReLU(), nn.Flatten()).double()
    g = torch.Generator().manual_seed(0)
    n, k, q = 4, 3, 2
    x_s = torch.randn(n * k, 1, 6, 6, generator=g, dtype=torch.float64)
    x_q = torch.randn(n * q, 1, 6, 6, generator=g, dtype=torch.float64)
    y_s, y_q = torch.arange(n).repeat_interleave(k), torch.arange(n).repeat_interleave(q)
    enc.zero_grad()
    loss = ProtoNet(enc).meta_loss((x_s[None], y_s[None], x_q[None], y_q[None]))
    loss.backward()
    ours = {name: p.grad.clone() for name, p in enc.named_parameters()}
    theirs, their_loss = grads_after(enc, lambda: textbook_protonet_step(enc, x_s, x_q, n))
    assert rel_error(theirs, ours) < 1e-12
    assert abs(float(their_loss) - float(loss.detach())) < 1e-12
    with pytest.raises(ValueError, match="multiples"):
        textbook_protonet_step(enc, x_s[:-1], x_q, n)

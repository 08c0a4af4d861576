"""The LSTM meta-learner: SGD when its gates are pinned, gates in (0, 1), coordinate-wise updates, the
preprocessing formula, back-propagation through the unrolled updates (finite differences), and learning."""
import math

import pytest
import torch
import torch.nn.functional as F

import metalib
from metalib.algorithms import LSTMMetaLearner
from metalib.algorithms.lstm_meta import preprocess
from metalib.fewshot import FewShotConfig, FewShotTrainer, default_config
from metalib.functional import buffers_of, inner_loop, params_of
from _nets import conv_batch, finite_difference_grad, rel_error, synthetic_images, tiny_convbn


def learner(seed=0, steps=3, **kw):
    torch.manual_seed(seed)
    return LSTMMetaLearner(tiny_convbn(seed=seed), inner_steps=steps, **kw).double()


@pytest.mark.parametrize("eta", [0.1, 0.37])
def test_forget_one_and_input_eta_is_sgd_with_learning_rate_eta(eta):
    lm = learner(steps=4)
    x_s, y_s = conv_batch()[:2]
    with lm.gates_pinned(forget=1.0, input=eta):
        phi, losses = lm.unroll(x_s[0], y_s[0])
    theta = {k: v.detach() for k, v in params_of(lm.model).items()}
    with torch.no_grad():  # plain SGD, first order (the LSTM treats its gradient inputs as constants)
        want, want_losses = inner_loop(lm.model, theta, buffers_of(lm.model), x_s[0], y_s[0], F.cross_entropy, eta, 4,
                                       first_order=True)
    for k in want:
        assert torch.equal(phi[k].detach(), want[k]), k
    assert torch.equal(losses, want_losses)


def test_gates_stay_strictly_between_0_and_1():
    lm = learner(steps=5)
    x_s, y_s = conv_batch()[:2]
    rec = lm.unroll(x_s[0], y_s[0], record=True)
    for gates in (rec.input_gates, rec.forget_gates):
        assert gates.shape == (5, rec.start.numel())
        assert bool((gates > 0).all() and (gates < 1).all())
    # extreme inputs too (float64): gradients from 1e-30 to 1e6, parameters up to 1e3
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(500, generator=g, dtype=torch.float64) * torch.logspace(-30, 6, 500, dtype=torch.float64)
    c = torch.randn(500, generator=g, dtype=torch.float64) * 1e3
    _, state, (i, f) = lm.cell(grad, torch.tensor(1e4, dtype=torch.float64), c)
    _, _, (i2, f2) = lm.cell(grad, torch.tensor(1e-12, dtype=torch.float64), c, state)
    for gate in (i, f, i2, f2):
        assert bool((gate > 0).all() and (gate < 1).all())


def test_the_update_is_coordinate_wise():
    """The same LSTM for every coordinate: permuting the inputs permutes the outputs (two steps, so the
    recurrent state is permuted consistently too)."""
    lm = learner()
    g = torch.Generator().manual_seed(1)
    P = 300
    grads = [torch.randn(P, generator=g, dtype=torch.float64) for _ in range(2)]
    c0 = torch.randn(P, generator=g, dtype=torch.float64)
    perm = torch.randperm(P, generator=g)
    loss = torch.tensor(0.8, dtype=torch.float64)
    c1, s1, _ = lm.cell(grads[0], loss, c0)
    c2, _, (i2, f2) = lm.cell(grads[1], loss, c1, s1)
    d1, t1, _ = lm.cell(grads[0][perm], loss, c0[perm])
    d2, _, (j2, e2) = lm.cell(grads[1][perm], loss, d1, t1)
    for a, b in ((c1[perm], d1), (c2[perm], d2), (i2[perm], j2), (f2[perm], e2)):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)


def test_preprocessing_is_andrychowicz_et_al():
    x = torch.tensor([3.0, -2e-3, 1e-5, -1e-6, 0.0, math.exp(-10)], dtype=torch.float64)  # e^-10 = 4.5e-5
    got = preprocess(x)
    want = [[math.log(3.0) / 10, 1.0], [math.log(2e-3) / 10, -1.0], [-1.0, 1e-5 * math.exp(10)],
            [-1.0, -1e-6 * math.exp(10)], [-1.0, 0.0], [-1.0, 1.0]]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_initial_parameters_are_the_initial_cell_state_and_everything_is_meta_learned():
    lm = learner()
    assert all(a is b for a, b in zip(lm.initial_params().values(), lm.model.parameters()))
    names = {n for n, _ in lm.named_parameters()}
    assert {"w_f", "w_i", "b_f", "b_i", "lstm.weight_ih", "model.4.weight"} <= names
    assert 4.0 <= float(lm.b_f.detach()) <= 5.0 and -5.0 <= float(lm.b_i.detach()) <= -4.0  # near SGD with a small step
    lm.zero_grad()
    lm.meta_backward(conv_batch())
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in lm.parameters())


def test_meta_gradient_is_backprop_through_the_unrolled_updates_with_the_inputs_held_fixed():
    """Finite differences of the query loss of a *replay*: the unrolled updates recomputed from the
    recorded gradient and loss inputs (held fixed, as the paper's first-order treatment does) — against
    the meta-gradient of the LSTM's own parameters and of c_0."""
    lm = learner(seed=2, steps=3)
    x_s, y_s, x_q, y_q = (t[:1] for t in conv_batch(seed=5))
    rec = lm.unroll(x_s[0], y_s[0], record=True)
    names, shapes = rec.names, rec.shapes

    def replay():
        c, state = torch.cat([p.reshape(-1) for p in params_of(lm.model).values()]), None
        for t in range(3):
            c, state, _ = lm.cell(rec.grads[t], rec.losses[t], c, state)
        phi, at = {}, 0
        for n, s in zip(names, shapes):
            phi[n] = c[at: at + math.prod(s)].view(s)
            at += math.prod(s)
        return F.cross_entropy(lm(phi, x_q[0]), y_q[0])

    lm.zero_grad()
    lm.meta_backward((x_s, y_s, x_q, y_q))
    analytic = {n: p.grad.clone() for n, p in lm.named_parameters()}
    assert float(replay()) == pytest.approx(float(lm.meta_loss((x_s, y_s, x_q, y_q))), rel=1e-12)
    check = {n: p for n, p in lm.named_parameters() if not n.startswith("lstm.")}  # w, b and c_0 (fast)
    check["lstm.bias_ih"] = lm.lstm.bias_ih
    numeric = finite_difference_grad(replay, check)
    assert rel_error({n: analytic[n] for n in check}, numeric) < 1e-7


def test_bad_input_and_settings():
    with pytest.raises(ValueError, match="lstm_hidden"):
        LSTMMetaLearner(tiny_convbn(), lstm_hidden=0)
    with pytest.raises(ValueError, match="forget"):
        with learner().gates_pinned(forget=float("nan")):
            pass
    cfg = default_config("lstm-meta", n_way=5, k_shot=1, dataset="miniimagenet")
    assert cfg.inner_steps == 12 and cfg.hidden == 32 and cfg.meta_batch == 1


def test_the_lstm_meta_learner_learns_on_synthetic_classes():
    """60 episodes of 3-way 1-shot on synthetic 16x16 classes: +10 points of test accuracy."""
    train, test = synthetic_images(16, seed=0), synthetic_images(8, seed=9)
    cfg = FewShotConfig(algorithm="lstm-meta", dataset="custom", image_size=16, hidden=8, iterations=60, n_way=3,
                        k_shot=1, train_query=3, test_query=3, meta_batch=4, inner_steps=3, meta_lr=3e-3,
                        val_every=0, checkpoint_every=0, seed=0)
    trainer = FewShotTrainer(cfg, train, False, run_dir=None, progress=False)
    before = metalib.evaluate(trainer.learner, test, 3, 1, 3, episodes=100)
    trainer.fit()
    after = metalib.evaluate(trainer.learner, test, 3, 1, 3, episodes=100)
    assert after.mean > before.mean + 10, (before.mean, after.mean)


@pytest.mark.data
def test_the_lstm_meta_learner_learns_on_omniglot():
    """150 episodes of 5-way 1-shot on the Omniglot training classes (Conv-4 with 16 filters, 3 updates, Adam
    1e-3): on the first 100 seeded test episodes accuracy rises by more than 15 points (measured with one
    thread: 29.4% -> 53.6%)."""
    from metalib.data import Omniglot
    from _data import require_omniglot

    require_omniglot()
    train, test = Omniglot("train", progress=False), Omniglot("test", progress=False)
    cfg = FewShotConfig(algorithm="lstm-meta", iterations=150, hidden=16, inner_steps=3, train_query=5, meta_lr=1e-3,
                        val_every=0, checkpoint_every=0, seed=0)
    trainer = FewShotTrainer(cfg, train, False, run_dir=None, progress=False)
    before = metalib.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    trainer.fit()
    after = metalib.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    assert after.mean > before.mean + 15, (before.mean, after.mean)


def _meta_grad(lm, batch):
    lm.zero_grad()
    loss, _ = lm.meta_gradient(batch)
    return float(loss), {n: p.grad.clone() for n, p in lm.named_parameters()}


@pytest.mark.parametrize("steps", [1, 4])
def test_the_fused_cell_is_the_plain_cell(steps):
    """The fused cell (hand-written backward, sigmoid-based tanh, the loss's input as a bias) against the plain
    ``nn.LSTMCell`` + autograd cell, float64, same seed: query loss and every meta-gradient within 1e-10
    relative; the recorded gates and updates too."""
    batch = conv_batch(seed=3)
    plain, fused = learner(seed=4, steps=steps, fused=False), learner(seed=4, steps=steps)
    assert fused.fused and not plain.fused
    (lp, gp), (lf, gf) = _meta_grad(plain, batch), _meta_grad(fused, batch)
    assert lf == pytest.approx(lp, rel=1e-10)
    assert rel_error(gf, gp) < 1e-10
    # per tensor too, but for the conv bias before BatchNorm, whose meta-gradient is 0 up to rounding (~1e-17)
    assert all(rel_error({n: gf[n]}, {n: gp[n]}) < 1e-10 for n in gp if float(gp[n].norm()) > 1e-12), "per tensor"
    assert steps == 1 or all(bool(gp[n].abs().sum() > 0) for n in gp)  # one step: W_hh meets a zero state
    rp, rf = (lm.unroll(batch[0][0], batch[1][0], record=True) for lm in (plain, fused))
    for k in ("losses", "grads", "input_gates", "forget_gates", "updates"):
        assert torch.allclose(getattr(rf, k), getattr(rp, k), rtol=1e-10, atol=1e-14), k


def test_the_fused_cell_passes_gradcheck():
    """The hand-written backward against finite differences (torch.autograd.gradcheck, float64), for the first
    step (no previous state) and a later one, every differentiable input at once."""
    from metalib.engine import FusedMetaLSTMCell

    g = torch.Generator().manual_seed(0)
    P, H = 7, 3
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    gpre, grad = torch.randn(P, 2, generator=g, dtype=torch.float64), torch.randn(P, generator=g, dtype=torch.float64)
    common = (r(4 * H), r(4 * H, 2), r(4 * H, H))
    head = (r(P), grad, r(H + 2), r(H + 2), r(()), r(()))
    first = (gpre, *common, None, None, None, None, *head)
    later = (gpre, *common, r(H, P), r(H, P), torch.rand(P, generator=g, dtype=torch.float64).requires_grad_(),
             torch.rand(P, generator=g, dtype=torch.float64).requires_grad_(), *head)
    for inputs in (first, later):
        assert torch.autograd.gradcheck(lambda *a: FusedMetaLSTMCell.apply(*a), inputs, eps=1e-6, atol=1e-8)


def test_the_lstm_width_is_a_config_setting():
    """``lstm_hidden`` (the first LSTM layer's width, the paper's 20) is a typed setting: default 20, passed to the
    learner by ``from_config`` and a ``--lstm-hidden`` flag of scripts/train_fewshot.py, refused below 1."""
    import subprocess
    import sys
    from pathlib import Path

    from metalib import models

    cfg = default_config("lstm-meta", n_way=5, k_shot=1)
    assert cfg.lstm_hidden == 20
    cfg = default_config("lstm-meta", n_way=5, k_shot=1, lstm_hidden=7, hidden=8)
    lm = LSTMMetaLearner.from_config(cfg, models.Conv4(1, 5, hidden=8))
    assert lm.hidden == 7 and lm.lstm.hidden_size == 7 and lm.w_f.shape == (9,)
    with pytest.raises(ValueError, match="lstm_hidden"):
        default_config("lstm-meta", n_way=5, k_shot=1, lstm_hidden=0)
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_fewshot.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--lstm-hidden" in out


def test_the_cost_benchmark_builds_its_rows_and_formats_its_table(monkeypatch):
    """benchmarks/bench_lstm_meta.py (speed is measured there, never asserted here): its rows are built as a run
    builds them (the fused and plain cells, MAML with the paper's settings) and its table gives MAML's ratio.
    Timings are synthetic: a real round takes seconds on a free machine, minutes on a loaded one."""
    import importlib.util
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench_dir))
    spec = importlib.util.spec_from_file_location("bench_lstm_meta", bench_dir / "bench_lstm_meta.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.rows([1, 15])
    assert list(rows) == ["maml, 1 step (paper)", "maml, 15 steps", "lstm-meta plain, 1 steps",
                          "lstm-meta fused, 1 steps", "lstm-meta plain, 15 steps", "lstm-meta fused, 15 steps"]
    plain, _ = bench.build(*rows["lstm-meta plain, 15 steps"][:2], **rows["lstm-meta plain, 15 steps"][2])
    fused, _ = bench.build(*rows["lstm-meta fused, 15 steps"][:2], **rows["lstm-meta fused, 15 steps"][2])
    maml, _ = bench.build(*rows["maml, 1 step (paper)"][:2])
    assert (plain.fused, fused.fused, plain.inner_steps, fused.hidden, maml.inner_steps) == (False, True, 15, 20, 1)
    assert sum(p.numel() for p in fused.initial_params().values()) == 112_261  # the coordinates
    text = bench.table({name: [100.0 * (k + 1)] * 3 for k, name in enumerate(rows)}, 3, 1)
    assert "| maml | 1 | 100 | 100 | 100 | 1.0 | 1.0 |" in text
    assert "| lstm-meta fused | 15 | 600 | 600 | 600 | 6.0 | 3.0 |" in text  # against MAML at 15 steps (200)

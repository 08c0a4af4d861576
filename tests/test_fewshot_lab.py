"""metalib.course.fewshot_lab: the computations behind the few-shot widgets, each against an independent one
(hand-computed ProtoNet distances, a plain autograd SGD loop, numpy's SVD/eigh, fewshot.evaluate)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML, ProtoNet, Reptile, fewshot
from metalib.course import fewshot_lab as fl
from metalib.data import EpisodeSampler
from _data import require_omniglot

from _nets import synthetic_images as synthetic, tiny_conv4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def protonet():
    return ProtoNet(tiny_conv4())


@pytest.fixture(scope="module")
def maml():
    return MAML(tiny_conv4(5, seed=1), inner_lr=0.5, inner_steps=1)


@pytest.fixture(scope="module")
def reptile():
    return Reptile(tiny_conv4(5, seed=2), inner_lr=0.01, inner_steps=2, inner_optimizer="adam")


# ----------------------------------------------------------------------------- episodes
def test_sample_episode_is_the_index_th_seeded_test_episode(data):
    sampler = EpisodeSampler(data, 5, 2, 3)
    expected = list(sampler.episodes(4, seed=7))  # the order fewshot.evaluate draws them in
    for i in (0, 3):
        ep = fl.sample_episode(data, 5, 2, 3, seed=7, index=i)
        assert all(torch.equal(a, b) for a, b in zip(ep, expected[i]))
    assert ep.x_s.shape == (1, 10, 1, 16, 16) and ep.x_q.shape == (1, 15, 1, 16, 16)
    assert not torch.equal(fl.sample_episode(data, 5, 2, 3, seed=7, index=0).x_s, ep.x_s)


def test_bad_episode_sizes_are_clear(data):
    with pytest.raises(ValueError, match="n_way=11 is more classes than the data has \\(10\\)"):
        fl.sample_episode(data, 11, 1, 1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 5 \\+ 4 = 9 .* only 8 images"):
        fl.sample_episode(data, 5, 5, 4)
    with pytest.raises(ValueError, match="k_shot must be >= 1"):
        fl.sample_episode(data, 5, 0, 4)
    with pytest.raises(ValueError, match="index"):
        fl.sample_episode(data, 5, 1, 1, index=-1)


# ----------------------------------------------------------------------------- probabilities
def test_protonet_probabilities_match_a_hand_computation(protonet, data):
    ep = fl.sample_episode(data, 4, 2, 3, seed=1)
    probs = fl.episode_probabilities(protonet, ep)
    assert probs.shape == (1, 12, 4)
    # by hand: embed support+query in one batch (as ProtoNet does), class means, exp(-d^2) normalised
    with torch.no_grad():
        z = protonet.encoder(torch.cat([ep.x_s[0], ep.x_q[0]])).double().numpy()
    z_s, z_q, y_s = z[:8], z[8:], ep.y_s[0].numpy()
    protos = [z_s[y_s == c].mean(0) for c in range(4)]
    for i, zq in enumerate(z_q):
        d = np.array([sum((zq[j] - p[j]) ** 2 for j in range(len(zq))) for p in protos])
        e = np.exp(-(d - d.min()))
        np.testing.assert_allclose(probs[0, i].numpy(), e / e.sum(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(12))


def _sgd_by_hand(model, x_s, y_s, lr, steps):
    """Independent of metalib's functional core: a deep copy trained with autograd SGD."""
    net = copy.deepcopy(model)
    for _ in range(steps):
        loss = F.cross_entropy(net(x_s), y_s)
        grads = torch.autograd.grad(loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p -= lr * g
    return net


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_maml_probabilities_are_the_adapted_models_softmax(maml, data, steps):
    ep = fl.sample_episode(data, 5, 1, 2, seed=2)
    probs = fl.episode_probabilities(maml, ep, steps=steps)
    net = _sgd_by_hand(maml.model, ep.x_s[0], ep.y_s[0], maml.inner_lr, steps)
    with torch.no_grad():
        expected = net(ep.x_q[0]).softmax(-1)
    torch.testing.assert_close(probs[0], expected, rtol=1e-4, atol=1e-5)
    # and via metalib's own API: learner.adapt + a functional forward
    phi = maml.adapt(ep.x_s[0], ep.y_s[0], F.cross_entropy, steps=steps)
    with torch.no_grad():
        ref = torch.func.functional_call(maml.model, phi, (ep.x_q[0],)).softmax(-1)
    torch.testing.assert_close(probs[0], ref, rtol=1e-5, atol=1e-6)


def test_default_steps_come_from_the_shipped_config(maml, protonet):
    assert fl.default_steps(maml) == maml.inner_steps  # not loaded from the manifest
    assert fl.default_steps(protonet) is None
    learners = fl.load_learners("maml-omniglot-5w1s")
    assert fl.default_steps(learners["maml-omniglot-5w1s"]) == 3  # Finn et al.: 3 test-time steps


def test_adaptation_path_equals_adapt_for_every_k(maml, reptile, data):
    ep = fl.sample_episode(data, 5, 2, 1, seed=3)
    x_s, y_s = ep.x_s[0], ep.y_s[0]
    for learner in (maml, reptile):
        path = fl.adaptation_path(learner, x_s, y_s, [0, 1, 2, 4])
        assert sorted(path) == [0, 1, 2, 4]
        for name, p in learner.initial_params().items():
            assert torch.equal(path[0][name], p.detach())
        for k in (1, 2, 4):
            ref = learner.adapt(x_s, y_s, F.cross_entropy, steps=k)
            for name in ref:
                torch.testing.assert_close(path[k][name], ref[name].detach(), rtol=1e-6, atol=1e-7)
    # Reptile's Adam restarts its state at each adapt: chaining 2 x 1 step is NOT 2 steps
    one = reptile.adapt(x_s, y_s, F.cross_entropy, steps=1)
    chained = reptile.adapt(x_s, y_s, F.cross_entropy, steps=1, params=one)
    two = fl.adaptation_path(reptile, x_s, y_s, [2])[2]
    assert any(not torch.allclose(chained[n], two[n]) for n in two)


# ----------------------------------------------------------------------------- embeddings
def test_embed_maml_is_the_features_before_the_head(maml, data):
    ep = fl.sample_episode(data, 5, 2, 3, seed=4)
    phi = fl.adaptation_path(maml, ep.x_s[0], ep.y_s[0], [2])[2]
    z = fl.embed(maml, ep.x_q[0], phi)
    assert z.shape == (15, maml.model.embedding_dim)
    logits = F.linear(z, phi["head.weight"], phi["head.bias"])
    torch.testing.assert_close(logits, maml.forward(phi, ep.x_q[0]).detach(), rtol=1e-5, atol=1e-6)
    # default params: the meta-learned initialisation, = the module's own features
    with torch.no_grad():
        torch.testing.assert_close(fl.embed(maml, ep.x_q[0]), maml.model.features(ep.x_q[0]).flatten(1))


def test_embed_protonet_is_the_encoder(protonet, data):
    x = fl.sample_episode(data, 3, 1, 1).x_s[0]
    with torch.no_grad():
        torch.testing.assert_close(fl.embed(protonet, x), protonet.encoder(x))
    with pytest.raises(ValueError, match="does not adapt"):
        fl.embed(protonet, x, params={})


def test_episode_view_matches_the_learners_own_predictions(protonet, maml, data):
    ep = fl.sample_episode(data, 5, 2, 3, seed=5)
    v = fl.episode_view(protonet, ep)
    with torch.no_grad():
        torch.testing.assert_close(v.logits, protonet.logits(ep.x_s[0], ep.y_s[0], ep.x_q[0]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v.rule(v.z_q), v.logits, rtol=1e-4, atol=1e-4)
    assert v.accuracy == pytest.approx(float((v.logits.argmax(-1) == ep.y_q[0]).float().mean()))
    m = fl.episode_view(maml, ep, steps=2)
    assert m.steps == 2 and m.prototypes is None and m.weight.shape == (5, m.z_q.shape[1])
    expected = maml.predict(ep.x_s, ep.y_s, ep.x_q, steps=2).argmax(-1)[0]  # evaluate's own prediction path
    assert torch.equal(m.predictions, expected)
    torch.testing.assert_close(m.rule(m.z_q), m.logits, rtol=1e-5, atol=1e-5)
    phi = maml.adapt(ep.x_s[0], ep.y_s[0], F.cross_entropy, steps=2)
    torch.testing.assert_close(m.logits, maml.forward(phi, ep.x_q[0]).detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.probs, fl.episode_probabilities(maml, ep, steps=2)[0], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- PCA
def test_pca_matches_numpy_svd_and_eigh():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0
    pca = fl.pca_2d(x)
    xn = x.double().numpy()
    xc = xn - xn.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    for i in range(2):  # same axes up to sign
        assert abs(float(np.dot(pca.components[i].double().numpy(), vt[i]))) == pytest.approx(1.0, abs=1e-5)
    evals = np.linalg.eigh(np.cov(xc.T, bias=True))[0][::-1]
    np.testing.assert_allclose(pca.explained_ratio.numpy(), evals[:2] / evals.sum(), rtol=1e-4)
    np.testing.assert_allclose(pca.mean.numpy(), xn.mean(0), rtol=1e-5)
    np.testing.assert_allclose(pca.coords.numpy(), (xc @ pca.components.double().numpy().T), atol=1e-4)
    # variance along each coordinate = the eigenvalue; components orthonormal
    np.testing.assert_allclose(pca.coords.double().numpy().var(0), evals[:2], rtol=1e-4)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(2), atol=1e-5, rtol=0)


def test_pca_known_axes_and_sign_convention():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(200, generator=g, dtype=torch.float64), torch.randn(200, generator=g, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    b = b - (a @ b) / (a @ a) * a  # exactly uncorrelated scores: the axes are then exactly u1, u2
    e = torch.eye(5, dtype=torch.float64)
    u1, u2 = (2 * e[2] - e[4]) / math.sqrt(5), -e[0]
    x = 7.0 + 5 * a[:, None] * u1 + 2 * b[:, None] * u2
    pca = fl.pca_2d(x)
    # PC1 = ±u1, PC2 = ±u2, each oriented so that its largest |loading| is positive: +u1, -u2 = +e0
    torch.testing.assert_close(pca.components, torch.stack([u1, -u2]), atol=1e-10, rtol=0)
    torch.testing.assert_close(pca.coords, torch.stack([5 * a, -2 * b], 1), atol=1e-10, rtol=0)
    torch.testing.assert_close(fl.pca_2d(-x).components, pca.components)  # same axes, same orientation
    # deterministic whatever the row order: permuting the points permutes the coordinates only
    perm = torch.randperm(200, generator=g)
    p2 = fl.pca_2d(x[perm])
    torch.testing.assert_close(p2.components, pca.components, atol=1e-10, rtol=0)
    torch.testing.assert_close(p2.coords, pca.coords[perm], atol=1e-10, rtol=0)
    assert pca.coords.dtype == torch.float64 and fl.pca_2d(x.float()).coords.dtype == torch.float32


def test_pca_orientation_follows_a_reference_across_frames():
    """An animation over inner steps: refit each frame with the previous components as reference
    -> no frame flips (dot product with the previous frame > 0), even where the sign convention
    alone would flip."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(30, 4, generator=g) * torch.tensor([4.0, 2.0, 0.5, 0.1])
    ref = fl.pca_2d(x0).components
    flipped = fl.pca_2d(x0, reference=-ref)
    torch.testing.assert_close(flipped.components, -ref)
    torch.testing.assert_close(flipped.coords, -fl.pca_2d(x0).coords)
    prev = ref
    for t in range(1, 12):
        rot = torch.linalg.matrix_exp(0.15 * t * torch.tensor([[0, 1.0, 0, 0], [-1.0, 0, 0, 0],
                                                                 [0, 0, 0, 0], [0, 0, 0, 0]]))
        frame = fl.pca_2d(x0 @ rot.T + 0.01 * torch.randn(30, 4, generator=g), reference=prev)
        assert (frame.components * prev).sum(1).min() > 0.8
        prev = frame.components
    with pytest.raises(ValueError, match="reference must be"):
        fl.pca_2d(x0, reference=torch.zeros(2, 3))


def test_pca_bad_input():
    with pytest.raises(ValueError, match="2-D tensor"):
        fl.pca_2d(torch.zeros(5))
    with pytest.raises(ValueError, match="at least 2 points"):
        fl.pca_2d(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="NaN"):
        fl.pca_2d(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 1.0]]))


# ----------------------------------------------------------------------------- decision regions
def _view_with(prototypes=None, weight=None, bias=None, d=3):
    z = torch.zeros(1, d)
    n = len(prototypes) if prototypes is not None else len(weight)
    return fl.EpisodeView("protonet" if prototypes is not None else "maml", None, z, z, torch.zeros(1, dtype=torch.long),
                          torch.zeros(1, dtype=torch.long), torch.zeros(1, n), torch.zeros(1, n),
                          prototypes=prototypes, weight=weight, bias=bias)


def test_decision_regions_use_the_real_rule_not_projected_prototypes():
    # the plane z3 = 0 (through the origin, axes e1, e2); prototype 1 sits far off the plane
    pca = fl.PCA(torch.zeros(1, 2), torch.zeros(3), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), torch.ones(2) / 2)
    view = _view_with(prototypes=torch.tensor([[0.5, 0, 0], [0.0, 0, 3.0]]))
    labels = fl.decision_regions(view, pca, (-1, 1, -1, 1), resolution=21)
    coords, feats = fl.plane_points(pca, (-1, 1, -1, 1), 21)
    # the point (0.2, 0): real distances 0.09 (class 0) vs 9.04 (class 1); the projected prototype of
    # class 1, (0, 0), would be nearer (0.04) -> the real rule says 0
    i = int(((coords - torch.tensor([0.2, 0.0])).abs().sum(1)).argmin())
    assert labels.flatten()[i] == 0
    # every grid point against a plain loop over the real prototypes
    for j in range(0, len(feats), 37):
        d = [float(((feats[j] - p) ** 2).sum()) for p in view.prototypes]
        assert labels.flatten()[j] == int(np.argmin(d))
    assert labels.shape == (21, 21) and coords[0].tolist() == [-1, -1] and coords[20].tolist() == [1, -1]


def test_decision_regions_linear_head():
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(4, 6, generator=g), torch.randn(4, generator=g)
    x = torch.randn(50, 6, generator=g)
    pca = fl.pca_2d(x)
    labels = fl.decision_regions(_view_with(weight=w, bias=b, d=6), pca, (-2, 2, -1, 1), resolution=9).flatten()
    _, feats = fl.plane_points(pca, (-2, 2, -1, 1), 9)
    for j in range(len(feats)):
        # the grid point is mean + c1 PC1 + c2 PC2, classified by the head W z + b
        assert labels[j] == int(np.argmax([float(w[c] @ feats[j] + b[c]) for c in range(4)]))
    torch.testing.assert_close(pca.project(pca.unproject(torch.tensor([[0.3, -0.7]]))), torch.tensor([[0.3, -0.7]]),
                               atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- accuracy vs steps
def test_accuracy_vs_steps_equals_evaluate(protonet, maml, reptile, data):
    learners = {"proto": protonet, "maml": maml, "reptile": reptile}
    curves = fl.accuracy_vs_steps(learners, data, n_way=5, k_shot=1, steps=[0, 1, 3], episodes=6, seed=11,
                                  n_query=2)
    for name, learner in learners.items():
        c = curves[name]
        assert c.steps == [0, 1, 3] and c.episodes == 6 and len(c.accuracies[0]) == 6
        for k in ([None] if name == "proto" else [0, 1, 3]):
            ref = fewshot.evaluate(learner, data, 5, 1, 2, episodes=6, seed=11, steps=k)
            mean, ci = c.at(0 if k is None else k)
            assert mean == pytest.approx(ref.mean, abs=1e-9) and ci == pytest.approx(ref.ci95, abs=1e-9)
            np.testing.assert_allclose(c.accuracies[c.steps.index(0 if k is None else k)], ref.accuracies, atol=1e-9)
    assert not curves["proto"].adapts and curves["proto"].mean == [curves["proto"].mean[0]] * 3
    assert "95% CI over 6 seeded episodes" in str(curves["maml"])


def test_bad_inputs(protonet, maml, data):
    ep = fl.sample_episode(data, 5, 1, 1)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        fl.episode_probabilities(maml, ep, steps=-1)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        fl.accuracy_vs_steps({"m": maml}, data, steps=[-1, 2], episodes=2)
    with pytest.raises(TypeError, match="steps must be ints"):
        fl.episode_probabilities(maml, ep, steps=2.5)
    with pytest.raises(ValueError, match="no inner loop"):
        fl.episode_probabilities(protonet, ep, steps=3)
    with pytest.raises(ValueError, match="5-way linear head"):
        fl.accuracy_vs_steps({"m": maml}, data, n_way=3, episodes=2, n_query=2)
    with pytest.raises(ValueError, match="5-way linear head: it classifies 5-way tasks only .got 3-way."):
        fl.episode_probabilities(maml, fl.sample_episode(data, 3, 1, 1))
    with pytest.raises(ValueError, match="n_way=12 is more classes"):
        fl.accuracy_vs_steps({"p": protonet}, data, n_way=12, episodes=2, n_query=2)
    with pytest.raises(ValueError, match="only 8 images"):
        fl.accuracy_vs_steps({"p": protonet}, data, k_shot=1, episodes=2)  # 15 queries by default
    with pytest.raises(ValueError, match="unknown model 'protonet-omniglot-9w9s'.*protonet-omniglot-5w1s"):
        fl.load_learners(["protonet-omniglot-9w9s"])
    with pytest.raises(ValueError, match="dataset must be"):
        fl.load_test_data("cifar")
    with pytest.raises(ValueError, match="expects 1x16x16 images but the data has 1x20x20"):
        fl.check_episode(protonet, synthetic(size=20), 5)
    assert not fl.adapts(protonet) and fl.adapts(maml)


def test_display_images_dark_ink_on_white():
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # a stroke pixel (Omniglot: 1 = stroke)
    out = fl.display_images(x)
    assert out.shape == (2, 4, 4, 3)
    assert out[0, 1, 1].tolist() == [0, 0, 0] and out[0, 0, 0].tolist() == [1, 1, 1]
    rgb = torch.rand(1, 3, 5, 5)
    torch.testing.assert_close(fl.display_images(rgb)[0], rgb[0].permute(1, 2, 0))
    with pytest.raises(ValueError, match="expected images"):
        fl.display_images(torch.zeros(1, 2, 4, 4))


# ----------------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_protonet_omniglot():
    require_omniglot()
    learner = fl.load_learners("protonet-omniglot-5w1s")["protonet-omniglot-5w1s"]
    data = fl.load_test_data("omniglot")
    assert fl.load_test_data("protonet-omniglot-5w1s") is data  # loaded once per process
    assert tuple(data.images.shape[2:]) == (1, 28, 28)
    curves = fl.accuracy_vs_steps({"p": learner}, data, n_way=5, k_shot=1, steps=[0], episodes=20)
    ref = fewshot.evaluate(learner, data, 5, 1, 15, episodes=20, seed=fewshot.TEST_SEED)
    assert curves["p"].at(0)[0] == pytest.approx(ref.mean, abs=1e-9)
    assert ref.mean > 85  # shipped at 97.4% over 600 episodes; 20 episodes, generous margin
    ep = fl.sample_episode(data, 20, 5, 2, seed=0)
    v = fl.episode_view(learner, ep)
    probs = fl.episode_probabilities(learner, ep)[0]
    torch.testing.assert_close(v.probs, probs, rtol=1e-4, atol=1e-5)
    assert v.z_s.shape == (100, 64) and v.accuracy > 0.7

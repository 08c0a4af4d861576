"""Learning happens: a short CPU meta-training makes MAML adapt better than the baselines."""
import torch
import torch.nn.functional as F

from metalib import MAML, Pretrain, Reptile, models, tasks
from metalib.training import meta_train


def _train(learner, iterations, seed):
    fam = tasks.Sinusoid()
    g = torch.Generator().manual_seed(seed)
    meta_train(learner, lambda: fam.sample(25, 10, 10, generator=g), iterations, F.mse_loss, progress=False)
    return learner


def test_maml_beats_pretraining_and_random_init_on_sinusoids():
    test = tasks.Sinusoid().sample(300, 10, 50, generator=torch.Generator().manual_seed(999))
    torch.manual_seed(0)
    maml = _train(MAML(models.sinusoid_mlp(), inner_lr=0.01, inner_steps=1), 1500, seed=1)
    torch.manual_seed(0)
    pre = _train(Pretrain(models.sinusoid_mlp(), inner_lr=0.01, inner_steps=1), 1500, seed=1)
    torch.manual_seed(0)
    rand = MAML(models.sinusoid_mlp(), inner_lr=0.01)

    def post_adaptation_mse(learner):  # K = 10, one inner step, as in training
        with torch.no_grad():
            return float(learner.task_losses(test, F.mse_loss, steps=1)[0].mean())

    m, p, r = post_adaptation_mse(maml), post_adaptation_mse(pre), post_adaptation_mse(rand)
    assert m < 0.6 * p, (m, p)
    assert m < 0.5 * r, (m, r)
    assert m < 1.5


def test_reptile_learns_a_better_initialisation_than_random():
    test = tasks.Sinusoid().sample(300, 10, 50, generator=torch.Generator().manual_seed(999))
    torch.manual_seed(0)
    rand = Reptile(models.sinusoid_mlp(), inner_lr=0.02, inner_steps=5, outer_lr=0.1)
    before = float(torch.stack([F.mse_loss(rand.forward(rand.adapt(xs, ys, F.mse_loss), xq), yq)
                                for xs, ys, xq, yq in zip(*test)]).mean())
    _train(rand, 800, seed=2)
    after = float(torch.stack([F.mse_loss(rand.forward(rand.adapt(xs, ys, F.mse_loss), xq), yq)
                               for xs, ys, xq, yq in zip(*test)]).mean())
    assert after < 0.7 * before, (after, before)

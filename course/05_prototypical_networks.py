# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 05 · Prototypical Networks
#
# *Notebook 5 of the metalib suite · about 20 minutes to read · needs: 00, 04*
#
# > **Runs in** about 1 min on a laptop CPU (default mode; measured 57 s of CPU time on one AMD EPYC core, kernel start included) · **needs** Omniglot
# > (`METALIB_DATA`, see `docs/data.md`) and the shipped `protonet-omniglot-5w1s` / `-5w5s` weights ·
# > **FULL mode** trains both here with the paper's settings (up to 20,000 episodes each: hours on a CPU).
#
# **After this notebook you can**
# - write a Prototypical Network — embedding, class prototypes, squared distances, softmax — in a dozen
#   lines of torch, and check it against `metalib.ProtoNet`;
# - explain why the squared Euclidean distance turns ProtoNet into a linear classifier on the embedding;
# - train one on Omniglot episodes (a short live run), load the shipped weights, and read a
#   5/20-way × 1/5-shot accuracy table honestly: live numbers, recorded numbers and the paper's, each with
#   what it was measured on;
# - look inside an episode (the episode explorer) and inside the embedding (the embedding explorer).

# %%
# %matplotlib inline
from pathlib import Path
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import metalib
from metalib import fewshot
from metalib.course import full_mode, plots, widgets, fewshot_lab as fl
from metalib.data import EpisodeSampler, Omniglot
from metalib.course.exercises import check_proto_logits, solution  # noqa: F401 (solution(): the checks' "Stuck?" hint)

# ▶ THE SWITCH. False: a short live training, then the ProtoNet weights the project trained and ships
#   (the notebook runs in about a minute). True — or METALIB_FULL=1 in the environment — trains both
#   Omniglot models here with the paper's settings (60-way episodes, up to 20,000 each: hours on a CPU).
FULL = full_mode()

plots.style()
torch.set_num_threads(1)  # small convolutions: one thread is fast enough, and the results do not depend on threads
torch.manual_seed(0)
metalib.data.fetch_if_missing("omniglot")   # missing and online? fetched here (says what, how large); offline: the next line says how to get it
test = Omniglot("test")     # needs the data: METALIB_DATA=/path/to/data (the error says how to get it)
train = Omniglot("train")
print("mode:", "FULL: paper-length training in this notebook" if FULL else "default: shipped weights + a short live demo")
print(f"Omniglot (Vinyals split, 28x28, 4 rotations): {train.n_classes} training classes, {test.n_classes} test classes, "
      f"{test.n_per_class} images each")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The model
#
# A metric-based meta-learner (Snell, Swersky & Zemel 2017) learns an **embedding** $f_\phi$ — here the
# Conv-4 of the few-shot literature: four blocks of 3×3 convolution with 64 filters, BatchNorm, ReLU and 2×2
# max-pooling, so a 28×28 Omniglot image becomes a 64-dimensional vector. An $N$-way $K$-shot episode has a
# support set $S = \{(x_i, y_i)\}$ with $K$ images of each of $N$ classes. Each class gets a **prototype**, the
# mean of its embedded support images (eq. 1 of the paper):
#
# $$c_k = \frac{1}{|S_k|}\sum_{(x_i, y_i) \in S_k} f_\phi(x_i),$$
#
# and a query $x$ is classified by a softmax over its negative squared distances to the prototypes (eq. 2):
#
# $$p_\phi(y = k \mid x) = \frac{\exp\!\big(-\lVert f_\phi(x) - c_k\rVert^2\big)}{\sum_{k'} \exp\!\big(-\lVert f_\phi(x) - c_{k'}\rVert^2\big)}.$$
#
# Meta-training minimises the cross-entropy $-\log p_\phi(y = k \mid x)$ of the query images over many episodes
# drawn from the *training* classes; at test time nothing is fine-tuned — a new class needs only its prototype.
#
# **Why squared Euclidean?** Expand it: $-\lVert z - c_k\rVert^2 = 2c_k^\top z - \lVert c_k\rVert^2 - \lVert z\rVert^2$.
# The last term is the same for every class and cancels in the softmax, so ProtoNet is a *linear* classifier
# on $z$ with weights $w_k = 2c_k$ and bias $b_k = -\lVert c_k\rVert^2$ — built from the support set instead of
# learned by gradient steps. (Section 2 checks this identity numerically.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · From scratch
#
# One 5-way 5-shot test episode, a freshly initialised Conv-4, and the two equations:

# %%
sampler = EpisodeSampler(test, n_way=5, k_shot=5, q_query=15)
x_s, y_s, x_q, y_q = sampler.sample(1, generator=torch.Generator().manual_seed(0))
x_s, y_s, x_q, y_q = x_s[0], y_s[0], x_q[0], y_q[0]          # one task: [25, 1, 28, 28], [25], [75, 1, 28, 28], [75]

torch.manual_seed(0)
encoder = metalib.models.Conv4(in_channels=1)                  # no head: the 64-d embedding
z = encoder(torch.cat([x_s, x_q]))                             # support + queries in one batch (BatchNorm sees both)
z_s, z_q = z[: len(x_s)], z[len(x_s):]
protos = torch.stack([z_s[y_s == k].mean(0) for k in range(5)])           # eq. 1: [5, 64]
sq_dist = ((z_q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)           # [75, 5]
logits = -sq_dist                                                         # eq. 2, before the softmax
loss = F.cross_entropy(logits, y_q)
print(f"embedding {tuple(z.shape)}, prototypes {tuple(protos.shape)}, logits {tuple(logits.shape)}")
print(f"untrained embedding: query loss {loss:.2f} (chance: ln 5 = 1.61), accuracy {(logits.argmax(1) == y_q).float().mean():.0%}")

# %% [markdown]
# The untrained network's loss is worse than guessing ($\ln 5$: its squared distances are large, so its
# mistakes are confident), yet nearest-prototype already beats chance (20%): random convolutional features keep
# some information about stroke shapes. Meta-training shapes the embedding so that classes it has never seen
# form tight clusters.
#
# **With metalib** — `ProtoNet(encoder).logits(x_s, y_s, x_q)` does the same; and the linear-classifier form
# of section 1 gives the same softmax:

# %%
protonet = metalib.ProtoNet(encoder)
ours_vs_metalib = (protonet.logits(x_s, y_s, x_q) - logits).abs().max()
linear = z_q @ (2 * protos).T - (protos ** 2).sum(1)            # w_k = 2 c_k, b_k = -||c_k||^2
linear_vs_softmax = (linear.softmax(1) - logits.softmax(1)).abs().max()
print(f"our logits and metalib's agree to within 1e-4: {bool(ours_vs_metalib < 1e-4)}")
print(f"the linear form gives the same probabilities to within 1e-4: {bool(linear_vs_softmax < 1e-4)}")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · Exercise: the prototype classifier
#
# Write `proto_logits(z_s, y_s, z_q, n_way)`: given support embeddings `z_s [N·K, d]` with labels `y_s [N·K]`
# (in **any order**) and query embeddings `z_q [n_query, d]`, return the logits $-\lVert z_q - c_k\rVert^2$ as
# `[n_query, n_way]`. The check compares it with a plain double loop and names the mistake (sign, a
# non-squared distance, summed prototypes, assuming a class-sorted support set, a transposed result…).

# %%
def proto_logits(z_s, y_s, z_q, n_way):
    # YOUR CODE HERE: prototypes = class means of z_s; logits = -squared distances [n_query, n_way]
    raise NotImplementedError


check_proto_logits(proto_logits)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def proto_logits(z_s, y_s, z_q, n_way):
#     protos = torch.stack([z_s[y_s == k].mean(0) for k in range(n_way)])   # [n_way, d]
#     return -((z_q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)          # [n_query, n_way]
# ```
# Select each class's rows by its label (`y_s == k`), not by position; square the distance, don't take its
# root; the minus sign makes the nearest prototype the most likely class.
# (`solution("proto_logits")` prints it too.)
# </details>

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Training, live
#
# `metalib.fewshot.FewShotTrainer` runs the episode loop (Adam on the query cross-entropy, one episode per
# update, seeded episodes, a progress bar, resumable checkpoints). Snell et al. train with **more ways than
# they test**: 60-way episodes for Omniglot. **Live demo** (a fraction of a minute): 120 episodes of
# 20-way 1-shot with 5 queries per class, Adam $4\cdot10^{-3}$ — the paper's recipe shrunk; the paper trains
# until validation stops improving (here up to 20,000 episodes).

# %%
demo_cfg = fewshot.default_config("protonet", n_way=5, k_shot=1, iterations=120, train_way=20, train_query=5,
                                  meta_lr=4e-3, lr_decay_every=0, val_every=0)
print(demo_cfg.describe(), f"| training episodes: {demo_cfg.train_way_}-way {demo_cfg.train_shot_}-shot, "
      f"{demo_cfg.train_query} queries/class, {demo_cfg.iterations} of them, Adam lr {demo_cfg.meta_lr}")

# %%
# NBVAL_IGNORE_OUTPUT
# a progress bar and a time (they change on every run).
demo = fewshot.FewShotTrainer(demo_cfg, train_data=train, val_data=False, device="cpu", progress=False)
history = fl.fit_live(demo)       # the bar stays when it is done; the line below it records the run

# %%
# NBVAL_IGNORE_OUTPUT
# a live training run: its digits depend on the CPU's floating-point kernels (docs/notebooks.md); the next
# cell checks what holds on any CPU.
fig, (ax1, ax2) = plots.subplots(2, width=5.6, height=3.2)
plots.plot_training_loss(ax1, history.loss, window=10)
ax1.set(title="query loss per training episode (20-way)", xlabel="training episode", ylabel="query cross-entropy")
ax1.legend()
acc = torch.tensor(history.accuracy)
ax2.plot(acc, lw=0.6, alpha=0.4, color="C0")
ax2.plot(range(9, len(acc)), acc.unfold(0, 10, 1).mean(1), color="C0", label="mean of 10")
ax2.set(xlabel="training episode", ylabel="query accuracy (%)", title="query accuracy per training episode (20-way)")
ax2.legend()
plt.show()
first, last = torch.tensor(history.loss[:10]).mean(), torch.tensor(history.loss[-10:]).mean()
print(f"mean query loss, first 10 episodes {first:.1f} -> last 10 {last:.1f}; "
      f"accuracy {acc[:10].mean():.0f}% -> {acc[-10:].mean():.0f}% (20-way training episodes)")
live = demo.test(test, episodes=100, best=False, progress=False)
print(f"after {demo.iteration} episodes, on 100 seeded 5-way 1-shot test episodes: {live.mean:.1f}% ± {live.ci95:.1f}% (95% CI)")

# %%
print(f"the loss fell to less than half (first 10 → last 10 training episodes): {bool(last < first / 2)}; "
      f"the 20-way training accuracy rose by more than 20 points: {bool(acc[-10:].mean() - acc[:10].mean() > 20)}")
print(f"after {demo.iteration} episodes the 5-way 1-shot test accuracy (100 seeded episodes) is above 80%: {live.mean > 80}")

# %% [markdown]
# The loss falls and the accuracy rises within a few dozen episodes. (`RESULTS.md` records how far the same
# loop gets in a few CPU minutes: 450 episodes of 60-way training reach 97% on the 600 test episodes — the
# CI accuracy bar.) The shipped models trained for 400–700 episodes of the paper's 60-way setting. `FULL = True` trains them here with the paper's settings and validation-based model selection
# (the same code as `scripts/train_fewshot.py`):

# %%
NAMES = {1: "protonet-omniglot-5w1s", 5: "protonet-omniglot-5w5s"}
if FULL:
    models = {}
    for k, name in NAMES.items():
        cfg = fewshot.default_config("protonet", n_way=5, k_shot=k)     # 60-way episodes, Adam 1e-3 halved every 2,000
        trainer = fewshot.FewShotTrainer(cfg, run_dir=Path("runs") / name)  # resumes if interrupted
        trainer.fit()
        trainer.load_best()
        models[k] = trainer.learner
    source = "trained in this notebook (FULL)"
else:
    models = {k: fewshot.pretrained_learner(name)[0] for k, name in NAMES.items()}
    source = "shipped weights"
for k, name in NAMES.items():
    info = metalib.pretrained_info(name)
    m = info["metrics"]
    print(f"{name}: {info['description']}\n    {info['iterations']} training episodes (metalib's bound: {info['paper_iterations']:,}), "
          f"{info['minutes']} min on {info['device']}; test {m['test_accuracy']:.2f}% ± {m['ci95']:.2f}% "
          f"over {m['episodes']} seeded episodes (seed {m['seed']})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · The table: 5/20-way × 1/5-shot
#
# The evaluation protocol of `RESULTS.md`: seeded test episodes (seed 1000, the same for every method),
# 15 queries per class, mean accuracy ± the 95% confidence interval $1.96\,\sigma/\sqrt{n}$ over episodes.
# Snell et al. train one model per shot and test it at 5 and 20 ways; so do we (the 20-way rows use the 5-way
# models). The full 600-episode evaluation of the four settings takes minutes on a CPU, so this notebook
# evaluates the **first 100** of those episodes for 5-way and the **first 20** for 20-way, live, and prints
# beside them the **600-episode** numbers recorded when the weights were shipped (the manifest and
# `RESULTS.md`) and the **paper's**.

# %%
LIVE_EPISODES = {5: 100, 20: 20}
live = {(n, k): fewshot.evaluate(models[k], test, n_way=n, k_shot=k, q_query=15, episodes=LIVE_EPISODES[n],
                                 seed=fewshot.TEST_SEED)
        for n in (5, 20) for k in (1, 5)}
for r in live.values():
    print(f"{r.n_way:>2}-way {r.k_shot}-shot: {r.mean:.1f}% ± {r.ci95:.1f}% over {r.episodes} episodes")


# %%
def results_row(prefix):
    """The four Omniglot cells of the RESULTS.md table row that starts with `prefix`."""
    for line in (Path(metalib.__file__).parents[1] / "RESULTS.md").read_text().splitlines():
        if line.startswith("| " + prefix):
            return [c.strip().strip("*").replace(" ‡", "").replace("**", "") for c in line.split("|")[2:6]]
    raise KeyError(f"no row {prefix!r} in RESULTS.md")

order = [(5, 1), (5, 5), (20, 1), (20, 5)]
recorded = dict(zip(order, results_row("**ProtoNet — metalib, CPU budget**")))
paper = dict(zip(order, results_row("ProtoNet — Snell et al. 2017 (paper)")))
for k in (1, 5):  # the 5-way cells also live in the manifest: they must agree with RESULTS.md
    m = metalib.pretrained_info(NAMES[k])["metrics"]
    assert recorded[(5, k)] == f"{m['test_accuracy']:.2f} ± {m['ci95']:.2f}", (recorded[(5, k)], m)

print(f"{'Omniglot':<14}| {'live here (' + source + ')':<30}| {'shipped, 600 episodes':<23}| Snell et al. 2017")
print(f"{'':<14}| {'mean ± 95% CI, n episodes':<30}| {'(manifest, RESULTS.md)':<23}| (paper)")
print("-" * 88)
for n, k in order:
    r = live[(n, k)]
    print(f"{n:>2}-way {k}-shot  | {f'{r.mean:.1f} ± {r.ci95:.1f}  (n = {r.episodes})':<30}| {recorded[(n, k)]:<23}| {paper[(n, k)]}")
print("paper: Snell et al. 2017, Table 1 (docs/references.md): the same split and 15 queries per class, but the mean "
      "over 1,000 test episodes, no interval given, a model trained to convergence and retrained on train + val")

# %% [markdown]
# Read it column by column:
#
# - **live** — the first 100 (5-way) or 20 (20-way) of the 600 seeded episodes; its wide CI is the price of
#   a one-minute notebook. The same weights on all 600 episodes give the middle column
#   (`fewshot.evaluate_pretrained(name)` re-measures it; `tests/test_omniglot_accuracy.py` does so in CI).
# - **shipped** — a *CPU-budget* run: 400–700 training episodes on one CPU thread (metalib's default bound is
#   20,000; the paper trains until validation stops improving).
# - **paper** — far longer training on a GPU, a final model retrained on train + validation classes, and the
#   mean over 1,000 test episodes (ours: 600) — the same split and queries per class, so the columns compare,
#   but the paper's number has no interval to compare it with.
#
# The gap to the paper is largest at 20-way 1-shot, the hardest setting: twenty classes to tell apart from a
# single example each.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Inside an episode
#
# The **episode explorer**: the support set (one column per class), queries framed green (right) or red
# (wrong, the predicted class written beside them), and for a few queries the probability ProtoNet gives each
# class. *New episode* draws the next seeded test episode; try 20-way and the 1-shot model.

# %%
# NBVAL_IGNORE_OUTPUT
# widget: tested in the browser test (tests/browser)
learners = {NAMES[1]: models[1], NAMES[5]: models[5]}
explorer = widgets.episode_explorer(learners, test, n_way=5, k_shot=1, n_query=3, seed=0)
explorer.ui

# %% [markdown]
# Without a live kernel the controls do nothing; here is a 20-way 5-shot episode (the widget's `update`
#     sets the controls), with its accuracy checked against a direct call of the model on the same episode:

# %%
explorer.update(model=NAMES[5], n_way=20, k_shot=5)
ep = fl.sample_episode(test, n_way=20, k_shot=5, n_query=3, seed=0, index=0)
direct = (models[5].logits(ep.x_s[0], ep.y_s[0], ep.x_q[0]).argmax(-1) == ep.y_q[0]).float().mean()
print(f"episode 0, 20-way 5-shot: {explorer.accuracy:.0%} of the 60 queries right; "
      f"the same as the model called directly: {abs(explorer.accuracy - float(direct)) < 1e-9}")
explorer.fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7 · Inside the embedding
#
# The **embedding explorer** projects an episode's 64-d embeddings onto their two principal components:
# discs are support images, dots queries (a cross where ProtoNet is wrong), stars the prototypes. The
# background is ProtoNet's *real* rule — nearest prototype in all 64 dimensions — on the plane spanned by the
# two components. A flat picture cannot show all 64 dimensions: a query drawn as a hollow ring lies in the
# region of a class other than the one ProtoNet gives it, and the box counts how many are drawn where their
# prediction is.

# %%
# NBVAL_IGNORE_OUTPUT
# widget: tested in the browser test (tests/browser)
emb = widgets.embedding_explorer(models[5], test, n_way=5, k_shot=5, n_query=15, seed=0, name=NAMES[5])
emb.ui

# %%
view = emb.view
same_protos = torch.allclose(view.prototypes, torch.stack([view.z_s[view.y_s == c].mean(0) for c in range(5)]), atol=1e-5)
print(f"episode 0: accuracy {view.accuracy:.0%} (75 queries); the stars are the class means of the support "
      f"embeddings: {same_protos}; PC1 + PC2 explain {emb.pca.explained_ratio.sum():.0%} of the variance")
emb.fig

# %% [markdown]
# Classes form tight clusters, and the prototypes sit in their middles: after meta-training, "nearest class
# mean" is already a good classifier for characters the network has **never seen**. That is the whole idea —
# the embedding, not a classifier, is what is learned.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - ProtoNet = an embedding $f_\phi$ + class means (eq. 1) + a softmax over negative squared distances (eq. 2);
#   with squared Euclidean distance it is a linear classifier whose weights come from the support set.
# - `metalib.ProtoNet(encoder).logits` agrees with the dozen-line version; `FewShotTrainer` trains it on
#   episodes (more ways in training than at test, as Snell et al.).
# - Every accuracy here says what it was measured on: live on the first 100/20 seeded test episodes, the
#   shipped 600-episode numbers, and the paper's — from a CPU budget that is a few percent of the paper's
#   training, so the gap is largest where the task is hardest (20-way 1-shot).
#
# **Next: 06 · MAML on Omniglot** — an optimisation-based learner on the same episodes: MAML, first-order
# MAML and Reptile, what test-time inner steps buy, and a BatchNorm pitfall.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## References
#
# - J. Snell, K. Swersky, R. Zemel. *Prototypical Networks for Few-shot Learning.* NeurIPS 2017.
# - O. Vinyals et al. *Matching Networks for One Shot Learning.* NeurIPS 2016 (the Omniglot split and episodes).
# - B. Lake, R. Salakhutdinov, J. Tenenbaum. *Human-level concept learning through probabilistic program induction.* Science 2015 (Omniglot).
# - `RESULTS.md`: the evaluation protocol, the shipped runs and their commands; `docs/references.md`: every
#   paper number, where it stands in the paper and how it was measured.

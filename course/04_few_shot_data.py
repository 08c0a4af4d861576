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
# # 04 · Few-shot data: Omniglot, episodes and how to measure accuracy
#
# *Notebook 4 of the metalib suite · about 20 minutes to read · needs: 00 (tasks, support and query sets)*
#
# > **Runs in** about 45 s on a laptop CPU (default mode; measured 42 s of CPU time on one AMD EPYC core, kernel start included) · **needs** Omniglot
# > (`METALIB_DATA`, see `docs/data.md`) and the shipped `protonet-omniglot-5w1s` weights · **FULL mode**
# > retrains those weights here first (700 episodes of 60-way training, about 20 minutes of CPU).
#
# **After this notebook you can**
# - describe Omniglot — alphabets, characters, drawers — and the two class splits in use (Vinyals et al.'s and
#   Finn et al.'s), and why rotated characters count as new classes;
# - draw an $N$-way $K$-shot episode in a few lines of torch and with `metalib.data.EpisodeSampler`;
# - state the evaluation protocol (600 seeded test episodes, mean ± 95% confidence interval), compute it, and
#   explain — with numbers — why one accuracy without an interval misleads.

# %%
# %matplotlib inline
import math
import matplotlib.pyplot as plt
import torch
import metalib
from metalib import fewshot
from metalib.course import full_mode, compare, plots, fewshot_lab as fl
from metalib.course.exercises import check_mean_ci95, solution  # noqa: F401 (solution(): the checks' "Stuck?" hint)
from metalib.data import EpisodeSampler, Omniglot, split_classes

# ▶ THE SWITCH. False: use the ProtoNet weights the project trained and ships for the evaluation
#   demo (the notebook runs in about a minute). True — or METALIB_FULL=1 — re-trains them here first
#   with the very same settings (700 episodes of 60-way training, ~20 minutes on one CPU core).
FULL = full_mode()

plots.style()
torch.set_num_threads(1)  # results must not depend on the thread count; one thread is enough here
torch.manual_seed(0)
print("mode:", "FULL: re-train ProtoNet 5-way 1-shot here" if FULL else "default: shipped weights")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · Omniglot: 1,623 characters, 20 drawings each
#
# Lake, Salakhutdinov & Tenenbaum (2015) asked 20 people on Amazon Mechanical Turk to draw each of the
# 1,623 characters of **50 alphabets** — from Latin and Greek to Tifinagh and invented scripts — once.
# Few-shot learning treats every *character* as a class: many classes, few examples each, the
# "transpose" of MNIST. metalib reads the two official archives and caches them as a uint8 tensor
# `[classes, 20, 1, 28, 28]` (strokes = 255, resized with Lanczos as in Finn et al.'s code).

# %%
metalib.data.fetch_if_missing("omniglot")   # missing and online? fetched here (says what, how large); offline: the next line says how to get it
test = Omniglot("test")                  # the Vinyals test split (loaded from METALIB_DATA, cached)
print(test)
names = test.class_names
print("a class is 'Alphabet/characterNN/rotDDD', e.g.", names[0])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · The splits: which characters are for meta-training, which for testing
#
# Meta-learning needs **disjoint classes** for meta-training and meta-testing: a test episode must be made of
# characters the learner has never seen. Two splits are in use:
#
# - **Vinyals et al. (2016)**, as shipped with Snell et al.'s code: 1,028 train / 172 validation / 423 test
#   characters, chosen mostly *by alphabet*. ProtoNet papers and metalib's shipped models use it.
# - **Finn et al. (2017)**: 1,200 meta-training characters (1,100 train + 100 validation here) and the other 423
#   for testing, drawn at random *across* alphabets. Finn's code shuffles with `random.seed(1)` over
#   `os.listdir`, which is not reproducible across machines, so metalib ships fixed lists of the same sizes.
#
# The lists ship with metalib (`split_classes` needs no data). Count characters and alphabets:

# %%
for scheme in ("vinyals", "maml"):
    chars = {s: {c.rsplit("/", 1)[0] for c in split_classes(s, scheme)} for s in ("train", "val", "test")}
    alph = {s: {c.split("/")[0] for c in v} for s, v in chars.items()}
    sizes = ", ".join(f"{s} {len(chars[s])} characters / {len(alph[s])} alphabets" for s in chars)
    print(f"{scheme:>7}: {sizes}; alphabets shared by train and test: {len(alph['train'] & alph['test'])}")

# %% [markdown]
# The Vinyals test characters come from 13 alphabets, only one of which also appears in training: a test
# episode asks for *new scripts*. Finn et al.'s random split puts every alphabet on both sides — its test
# characters have siblings from the same script in training, an easier transfer. Numbers measured on
# different splits are not directly comparable; `RESULTS.md` says which split every number used.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · Rotations are new classes
#
# Both splits multiply the classes by four: each character rotated by 90°, 180° and 270° becomes a class of
# its own (Santoro et al. 2016; so 423 test characters give **1,692** test classes). A rotated "b" is
# not a "b" — for a reader of the script it is a different symbol — and the extra classes make meta-training
# richer. metalib stores them as real rotated images; check that against `torch.rot90`:

# %%
char = names[0].rsplit("/", 1)[0]
rows = [names.index(f"{char}/rot{d:03d}") for d in (0, 90, 180, 270)]
base = test.images[rows[0]]
same = all(torch.equal(test.images[r], torch.rot90(base, k, dims=(-2, -1))) for k, r in enumerate(rows))
print(f"{char}: the four classes are the character rotated by 0/90/180/270 degrees: {same}")

fig, axes = plt.subplots(4, 10, figsize=(9, 3.8))
for row, r in zip(axes, rows):
    for j, ax in enumerate(row):
        ax.imshow(255 - test.images[r, j, 0], cmap="gray"); ax.set_axis_off()
    row[0].set_title(names[r].rsplit("/", 1)[1], fontsize=8, loc="left")
fig.suptitle(f"{char}: 10 of its 20 drawers (columns), four rotations (rows)", fontsize=10)
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · An $N$-way $K$-shot episode, from scratch
#
# An episode (a *task*) picks $N$ classes at random, labels them $0 \dots N-1$ in random order, and splits $K + Q$
# images of each into a **support set** of $N K$ labelled examples and a **query set** of $N Q$ images to
# classify. Twelve lines of torch:

# %%
def draw_episode(images, n_way, k_shot, q_query, g):
    """images: uint8 [C, P, 1, H, W] -> x_s [N*K, 1, H, W], y_s [N*K], x_q [N*Q, 1, H, W], y_q [N*Q]."""
    C, P = images.shape[:2]
    # the indices of the N largest of C uniforms: N distinct classes in random order
    classes = torch.rand(C, generator=g, dtype=torch.float64).topk(n_way).indices
    # per class, K + Q distinct images (the first K are the support set)
    picks = torch.rand(n_way, P, generator=g, dtype=torch.float64).topk(k_shot + q_query, dim=-1).indices
    x = images[classes[:, None], picks].float() / 255             # [N, K+Q, 1, H, W]
    y = torch.arange(n_way)[:, None].expand(n_way, k_shot + q_query)  # class j of the episode gets label j
    return (x[:, :k_shot].flatten(0, 1), y[:, :k_shot].flatten(),
            x[:, k_shot:].flatten(0, 1), y[:, k_shot:].flatten())

mine = draw_episode(test.images, 5, 1, 3, torch.Generator().manual_seed(7))
print([tuple(t.shape) for t in mine])

# %% [markdown]
# **With metalib** — `EpisodeSampler` draws a whole batch of tasks with two gathers, on any device. With the
#     same seed it draws the very same episode:

# %%
sampler = EpisodeSampler(test, n_way=5, k_shot=1, q_query=3)
theirs = sampler.sample(1, torch.Generator().manual_seed(7))         # [T=1, ...] tensors
print("identical to ours:", all(torch.equal(a, b[0]) for a, b in zip(mine, theirs)))

# %%
x_s, y_s, x_q, y_q = mine
fig, axes = plt.subplots(4, 5, figsize=(6.5, 5.4))
for j in range(5):
    axes[0, j].imshow(fl.display_images(x_s[y_s == j])[0]); axes[0, j].set_title(f"class {j}", fontsize=9)
    for i, img in enumerate(fl.display_images(x_q[y_q == j])):
        axes[1 + i, j].imshow(img)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
axes[0, 0].set_ylabel("support", fontsize=9); axes[1, 0].set_ylabel("queries", fontsize=9)
fig.suptitle("one 5-way 1-shot episode: 1 labelled example per class, 3 queries per class", fontsize=10)
plt.show()

# %% [markdown]
# A learner sees the support row and must label the query rows — after having been meta-trained on *other*
# characters. Notebooks 05 and 06 build the two answers (ProtoNet, MAML); the episode explorer widget in
# notebook 07 lets you draw episodes and watch them classify.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · The evaluation protocol
#
# One episode is a noisy measurement: with 5 classes × 15 queries, an episode's accuracy moves in steps of
# 1/75. The papers therefore report the **mean over 600 test episodes** with a **95% confidence interval**
#
# $$\bar a = \frac{1}{n}\sum_{e=1}^{n} a_e, \qquad \bar a \pm 1.96\,\frac{\sigma}{\sqrt{n}}, \qquad
# \sigma^2 = \frac{1}{n}\sum_e (a_e - \bar a)^2, \quad n = 600,$$
#
# $\sigma$ being the spread of single episodes (Finn et al.'s code uses this population σ). metalib's protocol
# (`metalib.fewshot.evaluate`): 600 episodes from a generator seeded with 1000 — *the very same episodes for
# every algorithm* — 15 queries per class.
#
# We measure it for the ProtoNet 5-way 1-shot weights the project ships (in FULL mode: retrained here):

# %%
NAME = "protonet-omniglot-5w1s"
info = metalib.pretrained_info(NAME)
if FULL:   # the shipped run's exact config: python scripts/train_fewshot.py ... (see info["command"])
    config = fewshot.FewShotConfig.from_dict(info["config"])
    trainer = fewshot.FewShotTrainer(config, run_dir="runs/nb04-" + NAME)
    trainer.fit()
    learner = trainer.learner
    trainer.load_best()
else:
    learner, config = fewshot.pretrained_learner(NAME)
print(f"{NAME}: {info['note'] or info['description']}")

# %%
result = fewshot.evaluate(learner, test, n_way=5, k_shot=1, q_query=15, episodes=600, seed=fewshot.TEST_SEED)
acc = torch.tensor(result.accuracies, dtype=torch.float64)    # one accuracy (%) per episode, [600]
print(f"ProtoNet 5-way 1-shot, Omniglot test: {result.mean:.2f}% ± {result.ci95:.2f}% (600 seeded episodes, 95% CI)")
print(f"the manifest recorded {info['metrics']['test_accuracy']:.2f}% ± {info['metrics']['ci95']:.2f}% when it was "
      f"shipped: reproduced = {not FULL and round(result.mean, 2) == round(info['metrics']['test_accuracy'], 2)}")
print(f"single episodes: sigma = {acc.std(unbiased=False):.1f} points; worst episode {acc.min():.1f}%, "
      f"{int((acc == 100).sum())} of 600 perfect")


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise: the mean and its 95% interval
#
# Write `mean_ci95(acc)` for a tensor of per-episode accuracies (in %): return `(mean, half_width)` with the
# formula above. The check compares it with an independent computation and names the usual slips.

# %%
def mean_ci95(acc):
    # YOUR CODE HERE: return (mean, 1.96 * sigma / sqrt(n)), sigma with ddof = 0
    raise NotImplementedError


check_mean_ci95(mean_ci95)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def mean_ci95(acc):
#     acc = torch.as_tensor(acc, dtype=torch.float64)
#     return float(acc.mean()), 1.96 * float(acc.std(unbiased=False)) / math.sqrt(acc.numel())
# ```
# The half-width is 1.96 *standard errors* of the mean, σ/√n — it shrinks with more episodes, while σ (the
# spread of single episodes) does not. `metalib.course.compare.mean_ci95` is the same function;
# `solution("mean_ci95")` prints this one.
# </details>

# %%
m, ci = compare.mean_ci95(acc)
print(f"by hand from the 600 episode accuracies: {m:.2f}% ± {ci:.2f}% — the same as evaluate(): "
      f"{abs(m - result.mean) < 1e-9 and abs(ci - result.ci95) < 1e-9}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Why one number without an interval misleads
#
# **Small evaluations scatter.** Cut the 600 episodes into twelve blocks of 50 — twelve honest evaluations of
# *the same model* on *the same test classes* — and compare:

# %%
blocks = acc.view(12, 50)
stats = [compare.mean_ci95(b) for b in blocks]
fig, ax = plots.subplots(width=7.5, height=3.3)
ax.errorbar(range(1, 13), [s[0] for s in stats], yerr=[s[1] for s in stats], fmt="o", capsize=3,
            label="50 episodes each (± 95% CI)")
ax.axhspan(result.mean - result.ci95, result.mean + result.ci95, color="C1", alpha=0.3,
           label="600 episodes (± 95% CI)")
ax.set_xlabel("block of 50 test episodes"); ax.set_ylabel("accuracy (%)"); ax.legend(loc="lower left")
ax.set_title("ProtoNet 5-way 1-shot on Omniglot: the same model, twelve small evaluations")
plt.show()
means = blocks.mean(1)
print(f"50-episode means range from {means.min():.2f}% to {means.max():.2f}% "
      f"(spread {means.max() - means.min():.2f} points); the 600-episode interval is ± {result.ci95:.2f}")
print(f"their standard deviation {means.std(unbiased=False):.2f} vs the predicted sigma/sqrt(50) = "
      f"{acc.std(unbiased=False) / math.sqrt(50):.2f}")

# %% [markdown]
# **Equal models "differ".** Two learners that are *exactly as good* (episodes drawn from the same
# distribution — we resample this model's 600 episode accuracies) are each evaluated on 50 fresh episodes. How
# often do their scores differ by more than one point? The same with 600 episodes each, and the normal
# approximation $P(|\bar a_1 - \bar a_2| > 1) = 2\,\big(1 - \Phi(1 / (\sigma\sqrt{2/n}))\big)$ as an
# independent check:

# %%
g = torch.Generator().manual_seed(0)
sigma = float(acc.std(unbiased=False))
for n in (50, 600):
    a = acc[torch.randint(0, 600, (10_000, n), generator=g)].mean(1)
    b = acc[torch.randint(0, 600, (10_000, n), generator=g)].mean(1)
    either = float(((a - b).abs() > 1.0).double().mean())
    better = float(((b - a) > 1.0).double().mean())                 # the second "beats" the first
    normal = 2 * (1 - 0.5 * (1 + math.erf(1 / (sigma * math.sqrt(2 / n)) / math.sqrt(2))))
    print(f"{n:>3} episodes each: of 10,000 simulated comparisons of two equal models, {100 * either:.0f}% differ "
          f"by > 1 point in either direction (normal approximation: {100 * normal:.0f}%), and in {100 * better:.0f}% "
          f"the second is > 1 point *better*")

# %% [markdown]
# With 50 episodes, chance alone makes two equal models differ by more than a point in about one comparison in
# five — in either direction, so a one-point "improvement" of the new model over the old one in about one
# comparison in ten — on Omniglot, where this model is right on almost every query. On harder data σ is
# larger — Snell et al.'s miniImageNet interval, ±0.78 over 600 episodes, means
# $\sigma \approx 0.78 \cdot \sqrt{600} / 1.96 \approx 9.7$ points, $2.5\times$ this model's — and such differences
# become common (notebook 07). Hence the rules every number in this
# suite follows: **the mean over many seeded episodes, its 95% interval, the number of episodes, and the same
# episodes for every method**. Two results whose intervals overlap substantially are not shown to differ.
# Note also what the interval does *not* cover: another split, another seed of the meta-training run, or
# another number of queries per class (Finn et al. used $K$ queries per class; metalib and Snell et al. 15).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - Omniglot: 1,623 characters × 20 drawers from 50 alphabets; rotations by 90°/180°/270° make four classes of
#   each character; the Vinyals split tests on unseen *alphabets* (423 characters → 1,692 test classes),
#   Finn et al.'s on random unseen *characters*.
# - An $N$-way $K$-shot episode: $N$ random classes relabelled $0…N-1$, $K$ support and $Q$ query images each —
#   a dozen lines of torch, or `EpisodeSampler(data, N, K, Q).sample(T, generator)` for a batch.
# - Report the mean over 600 seeded episodes ± $1.96\,\sigma/\sqrt{600}$. Evaluations of 50 episodes of the same
#   model scatter by several times the 600-episode interval, and equal models "differ" by more than a point
#   in about one comparison in five (either direction; one in ten is a spurious "improvement"); with 600
#   episodes almost never.
#
# **Next: 05 · Prototypical Networks** — the metric-based answer: embed, average, nearest prototype.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## References
#
# - B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum. *Human-level concept learning through probabilistic program
#   induction.* Science 350 (6266), 2015. (Omniglot.)
# - O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu, D. Wierstra. *Matching Networks for One Shot
#   Learning.* NeurIPS 2016. (The Vinyals split; the episode protocol.)
# - A. Santoro, S. Bartunov, M. Botvinick, D. Wierstra, T. Lillicrap. *Meta-Learning with Memory-Augmented
#   Neural Networks.* ICML 2016. (Rotations as new classes.)
# - C. Finn, P. Abbeel, S. Levine. *Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks.*
#   ICML 2017. (The random character split; 600 test episodes with 95% CI.)
# - J. Snell, K. Swersky, R. Zemel. *Prototypical Networks for Few-shot Learning.* NeurIPS 2017.

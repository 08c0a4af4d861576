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
# # 01 · Sinusoid tasks: the MAML paper's toy problem
#
# *Notebook 1 of the metalib suite · about 20 minutes to read · needs: 00*
#
# > **Runs in** about 20 s on a laptop CPU (default mode; measured 17 s of CPU time on one AMD EPYC core, kernel start included) · **needs** the shipped
# > `sinusoid-pretrain` weights (part of metalib) · **FULL mode** retrains them here (70,000
# > meta-iterations, about a minute of CPU).
#
# **After this notebook you can**
# - write down the sinusoid task distribution of Finn et al. (2017) and sample from it in four lines;
# - explain what one network trained on *all* tasks jointly learns — the average task, $-\tfrac{2\bar A}{\pi}\cos x$ — and derive it;
# - show, with a figure and numbers, why that network cannot adapt to a new task from $K = 5$ or $10$ points,
#   and why a fresh network cannot either: the motivation for meta-learning an initialisation (notebook 02).

# %%
# %matplotlib inline
import math
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import metalib
from metalib.course import full_mode, plots, sinusoid_lab as lab
from metalib.course.exercises import check_sinusoid_sampler, solution  # noqa: F401 (solution(): the checks' "Stuck?" hint)

# ▶ THE SWITCH. False: load the network the project trained and ships (the notebook runs in about a
#   minute). True — or METALIB_FULL=1 in the environment — trains the paper-length version here instead.
FULL = full_mode()

plots.style()
torch.set_num_threads(1)  # the networks here are tiny: one thread is fastest, and immune to a busy CPU
torch.manual_seed(0)
print("mode:", "FULL: paper-length training in this notebook" if FULL else "default: shipped weights + a short live demo")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The task distribution
#
# Each task is a sine wave with its own amplitude and phase (Finn, Abbeel & Levine 2017, §5.1):
#
# $$y = A \sin(x - \varphi), \qquad A \sim \mathcal{U}[0.1,\, 5], \quad \varphi \sim \mathcal{U}[0,\, \pi], \quad x \sim \mathcal{U}[-5,\, 5].$$
#
# A task gives $K$ support points to learn from ($K = 5, 10, 20$ in the paper) and query points to be judged on,
# with the mean squared error $\mathcal{L} = \frac{1}{n}\sum_j (f(x_j) - y_j)^2$. The regressor is a small MLP
# with two hidden layers of 40 ReLU units (`metalib.models.sinusoid_mlp()`, 1,761 parameters).
#
# **From scratch** — sampling a batch of tasks is four lines of `torch.rand`:

# %%
g = torch.Generator().manual_seed(0)
n, k = 25, 20
A = 0.1 + 4.9 * torch.rand(n, generator=g, dtype=torch.float64)         # amplitude ~ U[0.1, 5]
phi = math.pi * torch.rand(n, generator=g, dtype=torch.float64)         # phase ~ U[0, π]
x = -5 + 10 * torch.rand(n, k, 1, generator=g, dtype=torch.float64)     # inputs ~ U[-5, 5]
y = A.view(-1, 1, 1) * torch.sin(x - phi.view(-1, 1, 1))                 # [tasks, points, 1]
print(f"x: {list(x.shape)}, y: {list(y.shape)}; first task: A = {A[0]:.2f}, φ = {phi[0]:.2f}")

# %% [markdown]
# **With metalib** — `tasks.Sinusoid().sample(n_tasks, k_support, k_query, generator=g)` draws the same
#     numbers in the same order and splits each task's 20 points into 10 support and 10 query points:

# %%
x_s, y_s, x_q, y_q = metalib.tasks.Sinusoid().sample(n, 10, 10, generator=torch.Generator().manual_seed(0))
same_x = torch.allclose(torch.cat([x_s, x_q], 1), x.float())
same_y = torch.allclose(torch.cat([y_s, y_q], 1), y.float(), atol=1e-5)
print(f"support {list(x_s.shape)} + query {list(x_q.shape)}; agrees with ours: inputs {same_x}, targets {same_y}")

# %%
fig, (ax1, ax2) = plots.subplots(2, width=5.6, height=3.8)
p = metalib.tasks.Sinusoid().sample_params(12, generator=torch.Generator().manual_seed(1))
plots.plot_tasks(ax1, p.amplitude, p.phase, title="12 tasks of the family")
ax1.legend(loc="lower left")
plots.plot_task_spread(ax2)


# %% [markdown]
# Left: tasks differ a lot — amplitudes from 0.1 to 5, shifted phases. Right: what they have in common is
# little — at every $x$ the tasks spread over several units around their mean.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · Exercise: write the sampler
#
# Write `sample_sinusoid_tasks(n_tasks, k, generator)` returning `(amplitude [n], phase [n], x [n, k, 1], y [n, k, 1])`
# for the distribution above. Draw every random number from `generator` (so that a seed reproduces the tasks).
# The check samples 2,000 tasks and tells you which part is off — shapes, ranges, the formula, or reproducibility.

# %%
def sample_sinusoid_tasks(n_tasks, k, generator=None):
    # YOUR CODE HERE: amplitude, phase, x, y
    raise NotImplementedError


check_sinusoid_sampler(sample_sinusoid_tasks)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def sample_sinusoid_tasks(n_tasks, k, generator=None):
#     amplitude = 0.1 + 4.9 * torch.rand(n_tasks, generator=generator)
#     phase = math.pi * torch.rand(n_tasks, generator=generator)
#     x = -5 + 10 * torch.rand(n_tasks, k, 1, generator=generator)
#     y = amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))
#     return amplitude, phase, x, y
# ```
# `view(-1, 1, 1)` lines each task's amplitude and phase up with its own `k` points.
# (`solution("sample_sinusoid")` prints it too.)
# </details>

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · One network for all tasks: the average task
#
# The obvious baseline ("pretrained" in the MAML paper) trains one network on the points of all tasks at once,
# hoping to fine-tune it on a new task later:
#
# $$\min_\theta \; \mathbb{E}_{A,\varphi}\; \mathbb{E}_{x}\Big[\big(f_\theta(x) - A \sin(x - \varphi)\big)^2\Big].$$
#
# For every $x$ the minimiser is the mean target, so the best possible network is the *average task*:
#
# $$f^\star(x) = \mathbb{E}[A]\;\frac{1}{\pi}\int_0^\pi \sin(x - \varphi)\, d\varphi = \bar A\,\frac{\cos(x - \pi) - \cos x}{\pi} = -\frac{2 \bar A}{\pi}\cos x \approx -1.62 \cos x .$$
#
# **Live demo** — `metalib.Pretrain` is exactly this objective (the MSE of the un-adapted network on every point of
# a meta-batch of 25 tasks, Adam 10⁻³). 2,000 iterations take a few seconds:

# %%
# NBVAL_IGNORE_OUTPUT
# a progress bar and a time (they change on every run).
demo = lab.train("pretrain", 2000, seed=1)
print(demo.summary())

# %% [markdown]
# The paper-length run (70,000 iterations, as for MAML) is shipped; `FULL = True` retrains it here.
#     The manifest records how it was made:

# %%
pretrained = lab.get_models(FULL, kinds=["pretrain"])["pretrain"]
print(lab.provenance("pretrain"))

# %%
x = lab.grid()
fig, ax = plots.subplots(width=7, height=3.8)
with torch.no_grad():
    ax.plot(x, lab.joint_optimum(x), "k--", lw=1.6, label="average task −1.62·cos x")
    ax.plot(x, demo.model(x), color="C3", alpha=0.5, label="live demo, 2,000 iterations")
    ax.plot(x, pretrained(x), color="C3", label="paper-length run, 70,000 iterations")
    gap = float((pretrained(x) - lab.joint_optimum(x)).abs().max())
plots.sinusoid_axes(ax, "A network trained on all tasks jointly learns the average task", ylim=(-3, 3))
ax.legend(loc="lower left")
plt.show()
print(f"largest gap between the paper-length network and −1.62·cos x over [−5, 5]: {gap:.1f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Adapting it to a new task from K points
#
# Now the real test: a new task, $K$ support points, and a few steps of gradient descent on their MSE,
# $\theta \leftarrow \theta - \alpha \nabla_\theta \mathcal{L}_S(f_\theta)$ with $\alpha = 0.01$ (the step
# MAML uses). For comparison, a *fresh* network fitted to nothing but the same $K$ points (Adam, 2,000 steps).

# %%
# NBVAL_IGNORE_OUTPUT
# the fresh network is trained live (Adam, 2,000 steps): its digits depend on the CPU's floating-point
# kernels (docs/notebooks.md); the next cell checks what holds on any CPU.
fig, axes = plots.subplots(2, width=5.6, height=3.8)
amplitude, phase = 4.0, 2.5
ratio = {}
for ax, k in zip(axes, (5, 10)):
    x_s, y_s = lab.demo_task(amplitude, phase, k)
    path = lab.adaptation_path(pretrained, x_s, y_s, x, steps=10)      # predictions after 0..10 SGD steps
    fresh = lab.fit_from_scratch(x_s, y_s)
    plots.plot_true(ax, amplitude, phase)
    ax.plot(x, path[0], color="C3", ls=":", label="pretrained, before")
    ax.plot(x, path[10], color="C3", label="pretrained, after 10 steps")
    ax.plot(x, fresh(x).detach(), color="0.45", label="fresh network fit to the K points")
    plots.plot_support_query(ax, x_s, y_s, support_label=f"K = {k} support points")
    plots.sinusoid_axes(ax, f"K = {k}")
    err = (fresh(x).detach() - lab.true_curve(x, amplitude, phase)) ** 2           # [200, 1] on the grid
    inside = (x >= x_s.min()) & (x <= x_s.max())                                   # within the points' range
    print(f"K = {k:>2}: the fresh network's squared error against the true curve, mean over the grid: "
          f"{err[inside].mean():.2f} between the support points, {err[~inside].mean():.2f} outside their range")
    ratio[k] = float(err[~inside].mean() / err[inside].mean())
axes[0].legend(loc="lower left", fontsize=8)
plt.show()

# %%
print("outside the support points' range the fresh network's error is more than 10 times its error between them, "
      f"for K = 5 and K = 10: {all(r > 10 for r in ratio.values())}")

# %% [markdown]
# The same on 600 seeded test tasks (`lab.test_tasks`: every notebook, and the manifest, use the same ones), as the mean query MSE:

# %%
for k in (5, 10):
    batch = lab.test_tasks(k=k)
    per_step = lab.mse_per_step(pretrained, batch, steps=10).mean(0)   # [11]: after 0, 1, ..., 10 steps
    print(f"K = {k:>2}: pretrained  before {per_step[0]:.2f} → 1 step {per_step[1]:.2f} → 10 steps {per_step[10]:.2f}")
print(f"        predicting the average task everywhere: {F.mse_loss(lab.joint_optimum(batch.x_q), batch.y_q):.2f}")
print(f"        predicting 0 everywhere:                 {batch.y_q.pow(2).mean():.2f}")

# %% [markdown]
# **Why it fails.** The jointly trained network *is* the average task: before adapting it scores about what
# predicting $-1.62\cos x$ scores. Gradient steps on $K$ points then move it slowly — each step of
# $\alpha = 0.01$ nudges a network that was never trained to change quickly, and ten of them remove only a
# third to a half of the error. A larger step or many more steps would fit the $K$ points, and then behave like
# the fresh network (grey): it passes through the support points and, where they lie close together, even
# follows the sine wave between them — but where there are no points (left of the leftmost one in both panels)
# nothing tells it that the curve goes on, and it is far off (the errors printed above the figure are more than
# ten times larger outside the points' range than between them, as the check below it says). $K$ points alone do not pin down a sine wave for a
# network that knows nothing about sine waves.
#
# What we want is a starting point that *knows the family* and moves to the right member in one or a few steps.
# That starting point can be learned — by differentiating through the adaptation itself.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - Sinusoid tasks $y = A\sin(x-\varphi)$: $A \sim \mathcal{U}[0.1, 5]$, $\varphi \sim \mathcal{U}[0, \pi]$,
#   $x \sim \mathcal{U}[-5, 5]$; $K$ support points, MSE. `metalib.tasks.Sinusoid().sample(...)`.
# - Joint training over all tasks learns their average, $-\frac{2\bar A}{\pi}\cos x$ — it shares nothing that helps adapting.
# - Fine-tuning it with a few small gradient steps moves it slowly; a fresh network overfits the $K$ points.
#
# **Next: 02 · MAML from scratch** — learn the initialisation *for* adaptation: the inner step and the
# second-order meta-gradient in a few lines of `torch.func`.

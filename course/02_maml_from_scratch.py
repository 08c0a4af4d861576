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
# # 02 · MAML from scratch
#
# *Notebook 2 of the metalib suite · about 20 minutes to read · needs: 01*
#
# > **Runs in** about 15 s on a laptop CPU (default mode; measured 13 s of CPU time on one AMD EPYC core, kernel start included) · **needs** the shipped
# > `sinusoid-maml`, `sinusoid-fomaml` and `sinusoid-pretrain` weights (part of metalib) · **FULL mode**
# > retrains them here (70,000 meta-iterations each, about 5 minutes of CPU each).
#
# **After this notebook you can**
# - write MAML's inner step in `torch.func` (the exercise) and its *second-order* meta-gradient in a dozen more lines, and check them against `metalib.MAML`;
# - explain where the Hessian enters the meta-gradient and what first-order MAML (FOMAML) drops;
# - read a meta-training run: the loss, the adapted curve after 0…10 steps, and how the learned initialisation evolved.

# %%
# %matplotlib inline
import copy
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
import metalib
from metalib.course import full_mode, plots, widgets, sinusoid_lab as lab
from metalib.course.exercises import check_inner_step, solution  # noqa: F401 (solution(): the checks' "Stuck?" hint)

# ▶ THE SWITCH. False: load the MAML / FOMAML weights the project trained and ships (the notebook runs in
#   about a minute). True — or METALIB_FULL=1 in the environment — trains the paper-length runs here
#   (70,000 meta-iterations each, ~5-10 minutes each on a laptop CPU).
FULL = full_mode()

plots.style()
torch.set_num_threads(1)  # the networks here are tiny: one thread is fastest, and immune to a busy CPU
torch.manual_seed(0)
print("mode:", "FULL: paper-length training in this notebook" if FULL else "default: shipped weights + a short live demo")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · The algorithm
#
# MAML (Finn, Abbeel & Levine 2017) learns an initialisation $\theta$ that is good *after* adaptation. For
# each task $\mathcal{T}_i$ of a meta-batch, the **inner step** adapts on the support set $S_i$ (eq. 1 of the paper):
#
# $$\phi_i(\theta) = \theta - \alpha\, \nabla_\theta \mathcal{L}_{S_i}(f_\theta),$$
#
# and the **outer step** moves $\theta$ to reduce the loss of the adapted models on the query sets (eq. 2–3):
#
# $$\theta \leftarrow \theta - \beta\, \nabla_\theta \sum_i \mathcal{L}_{Q_i}\big(f_{\phi_i(\theta)}\big).$$
#
# The outer gradient differentiates *through* the inner step. By the chain rule,
#
# $$\nabla_\theta \mathcal{L}_{Q_i}(f_{\phi_i}) = \big(I - \alpha \nabla^2_\theta \mathcal{L}_{S_i}(f_\theta)\big)\, \nabla_{\phi}\mathcal{L}_{Q_i}(f_{\phi})\big|_{\phi = \phi_i},$$
#
# which contains the Hessian of the support loss: MAML is a *second-order* method. **First-order MAML**
# (FOMAML) replaces the bracket by $I$ — it treats the inner gradient as a constant.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · Exercise: the inner step in `torch.func`
#
# `torch.func` makes MAML almost literal: `functional_call(model, params, (x,))` runs the network with any
# dict of weights `{name: tensor}`, `grad(f)` returns the gradient of a scalar function `f` *as a differentiable
# function*, and `vmap` maps a function over the tasks of a batch. The first piece is the inner step (eq. 1).
#
# Write `inner_step(model, params, x, y, lr)`: one SGD step on the MSE of `model` run with `params`, returning
# the new dict — **differentiable** with respect to `params`, second-order path included. The check compares
# it with `metalib.functional.inner_loop`, values *and* gradients, and names the mistake (a wrong sign, a
# missing learning rate, a summed loss, a detached gradient…).

# %%
def inner_step(model, params, x, y, lr):
    # YOUR CODE HERE: return {name: new tensor}, phi = theta - lr * grad of the MSE
    raise NotImplementedError


check_inner_step(inner_step)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def inner_step(model, params, x, y, lr):
#     def support_loss(p):
#         return F.mse_loss(functional_call(model, p, (x,)), y)
#     g = grad(support_loss)(params)
#     return {name: p - lr * g[name] for name, p in params.items()}
# ```
# `torch.func.grad` returns the gradient *as a differentiable function of `params`*, so the result keeps the
# second-order path. With `torch.autograd.grad` you would need `create_graph=True`.
# (`solution("inner_step")` prints it too.)
# </details>

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The meta-gradient from scratch
#
# The outer step differentiates the query loss *through* the inner step. Below, `adapt` takes the inner step
# with `metalib.functional.inner_loop`, the function your exercise is checked against. Once your check passes,
# let `adapt` return `inner_step(model, params, x_s, y_s, lr)` and rerun: the agreement with metalib below
# still holds (for an answer written with `torch.func.grad`: `torch.autograd.grad` does not work inside `torch.func`'s
# `grad` and `vmap`).
# The rest is MAML's objective (eq. 2) and its gradient: a `grad` of a function that calls `grad`.

# %%
torch.manual_seed(0)                                          # the check above draws random numbers too
model = metalib.models.sinusoid_mlp()                        # 1-40-40-1 ReLU, as in the paper
theta = {name: p.detach() for name, p in model.named_parameters()}

def loss(params, x, y):
    return F.mse_loss(functional_call(model, params, (x,)), y)

def adapt(params, x_s, y_s, lr=0.01):                         # the inner step (eq. 1): metalib's, or yours
    phi, _ = metalib.functional.inner_loop(model, params, {}, x_s, y_s, F.mse_loss, lr, steps=1)
    return phi

def maml_objective(params, batch):                            # mean query loss after adaptation (eq. 2)
    def one_task(x_s, y_s, x_q, y_q):
        return loss(adapt(params, x_s, y_s), x_q, y_q)
    return vmap(one_task)(*batch).mean()

batch = metalib.tasks.Sinusoid().sample(25, 10, 10, generator=torch.Generator().manual_seed(0))
meta_grad = grad(maml_objective)(theta, batch)                # second order: grad of a function that calls grad
print({name: list(g.shape) for name, g in meta_grad.items()})

# %% [markdown]
# **With metalib** — `MAML(model, inner_lr, inner_steps)`; `meta_loss(batch, loss_fn).backward()` leaves the
#     meta-gradient in the model's `.grad`, ready for any `torch.optim` optimiser. The two agree:

# %%
maml = metalib.MAML(model, inner_lr=0.01, inner_steps=1)     # second-order by default
model.zero_grad()
maml.meta_loss(batch, F.mse_loss).backward()
worst = max(float((meta_grad[name] - p.grad).abs().max()) for name, p in model.named_parameters())
print(f"our meta-gradient and metalib's agree to within 1e-5 in every entry: {worst < 1e-5}")

# %% [markdown]
# **How much does the second-order term matter?** Drop it — detach the inner gradient, as FOMAML does — and
# compare the two meta-gradients on the same batch:

# %%
fomaml = metalib.MAML(copy.deepcopy(model), inner_lr=0.01, first_order=True)
fomaml.model.zero_grad()
fomaml.meta_loss(batch, F.mse_loss).backward()
second = torch.cat([p.grad.flatten() for p in model.parameters()])
first = torch.cat([p.grad.flatten() for p in fomaml.model.parameters()])
cos = F.cosine_similarity(second, first, dim=0)
print(f"cosine(MAML, FOMAML meta-gradient) = {cos:.3f}; relative difference = {(second - first).norm() / second.norm():.2f}")


# %% [markdown]
# With one inner step of $\alpha = 0.01$ the Hessian term is a correction of order $\alpha$: the directions
# nearly agree at a random initialisation. It matters more with larger $\alpha$, more inner steps, and
# later in training — section 6 compares the trained models.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Meta-training
#
# The paper's sinusoid settings: 70,000 meta-iterations, meta-batch 25 tasks of $K = 10$ support and 10 query
# points, one inner step of $\alpha = 0.01$, Adam with $\beta = 10^{-3}$ on the meta-gradient.
# `metalib.training.meta_train` runs that loop for any learner. **Live demo**: 1,000 iterations.

# %%
# NBVAL_IGNORE_OUTPUT
# a progress bar and a time (they change on every run).
live = lab.train("maml", 1000, seed=1)
print(live.summary())

# %%
fig, ax = plots.subplots(width=7, height=3.4)
plots.plot_training_loss(ax, live.loss, window=50)
ax.set_title("live demo: MAML's query loss after one inner step, per meta-batch")
ax.legend()
plt.show()
start = lab.mse_per_step(lab.random_model(1), lab.test_tasks(k=10), 1).mean(0)[1]
after = lab.mse_per_step(live.model, lab.test_tasks(k=10), 1).mean(0)[1]
print(f"1,000 iterations lowered the test MSE after one step (K = 10): {bool(after < 0.7 * start)}")

# %% [markdown]
# The paper-length runs are shipped (`FULL = True` retrains them here). How they were made, from the manifest:

# %%
models = lab.get_models(FULL, kinds=["maml", "fomaml", "pretrain"])
for kind in models:
    print(lab.provenance(kind))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · What the learned initialisation does
#
# A new task, $K = 10$ support points, and 0, 1, …, 10 plain SGD steps ($\alpha = 0.01$) from MAML's
# initialisation — and, for contrast, from the pretrained network of notebook 01:

# %%
amplitude, phase = 4.0, 2.5
x_s, y_s = lab.demo_task(amplitude, phase, k=10)
x = lab.grid()
fig, axes = plots.subplots(2, width=5.8, height=3.9)
for ax, kind in zip(axes, ("maml", "pretrain")):
    path = lab.adaptation_path(models[kind], x_s, y_s, x, steps=10)
    plots.plot_adaptation_steps(ax, x, path, amplitude, phase, x_s, y_s, title=lab.LABELS[kind])

# %% [markdown]
# MAML's initialisation is not a good fit to *any* task — it is a point from which one step lands close to
# the task at hand, and further steps keep refining. The pretrained network barely moves.
#
# On the 600 seeded test tasks (mean query MSE; `lab.test_tasks`):

# %%
curves = lab.compare(models, ks=(5, 10), max_steps=10)
for k in (5, 10):
    print(f"K = {k:>2}, MAML after 0..10 steps: " + " ".join(f"{m:.2f}" for m in curves.curve("maml", k)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · FOMAML against MAML
#
# Both were trained with the same settings, seed and tasks; only the meta-gradient differs.

# %%
fig, axes = plots.subplots(2, width=5.2, height=3.6)
for ax, k in zip(axes, (5, 10)):
    plots.plot_mse_vs_steps(ax, curves, k)
axes[0].legend()
plt.show()

# %% slideshow={"slide_type": "subslide"}
print(curves.table(steps=(1, 10)))

# %% slideshow={"slide_type": "subslide"}
for k in (5, 10):
    for kind in ("maml", "fomaml"):
        print(f"K = {k:>2}, {lab.LABELS[kind]:<17} query MSE after 1 / 2 / 3 / 10 steps:  mean "
              + " / ".join(f"{curves.at(kind, k, s):.2f}" for s in (1, 2, 3, 10)) + ";  median "
              + " / ".join(f"{curves.median(kind, k, s):.2f}" for s in (1, 2, 3, 10)))
m = curves.per_task["maml"][10]                                   # [600 tasks, 0..10 steps]
print(f"MAML, K = 10: from step 2 to step 3 the error rises on {float((m[:, 3] > m[:, 2]).double().mean()):.0%} "
      f"of the 600 tasks, by up to {float((m[:, 3] - m[:, 2]).max()):.1f}")

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# wall-clock times depend on the machine and its load.
from metalib.device import time_it
for first_order in (False, True):
    learner = metalib.MAML(lab.random_model(0), inner_lr=0.01, first_order=first_order)
    t = time_it(lambda: learner.meta_loss(batch, F.mse_loss).backward(), repeats=20)
    print(f"{'FOMAML' if first_order else 'MAML  '}: {t.median_ms:.1f} ms per meta-iteration (meta-batch 25)")

# %% [markdown]
# **Reading the curves.** MAML is ahead after one step — the step it was meta-trained for — but from the
# second step on FOMAML's curve lies below MAML's at both $K$, and after ten steps FOMAML is the better
# initialisation here. MAML's objective rewards the error after *exactly one* step of 0.01; nothing in it asks
# the later steps to keep helping, and they help less. The bump of MAML's $K = 10$ curve at step 3 is a
# mean pulled up by a minority of tasks: on about a fifth of them the error rises from step 2 to step 3 —
# fixed-step SGD overshooting from an initialisation that moves far in one step — while the median keeps
# falling. With one inner step of $\alpha = 0.01$ the Hessian term is small, and the two methods end close.
#
# **Cost.** FOMAML saves the second backward pass through the inner step. On this network — 1,761 weights,
# one inner step, the 25 tasks of a meta-batch handled by one vmapped call — that pass is a small part of the
# work: the timing above puts the two at about the same cost per meta-iteration. The saving grows with the
# network and with the number of inner steps; notebook 06 measures it on a Conv-4 with one and five steps.
#
# Finn et al. found first-order MAML close to MAML on miniImageNet as well: 48.07 ± 1.75% against
# 48.70 ± 1.84%, 5-way 1-shot (their Table 1; every paper number in this suite is listed, with where it
# stands and how it was measured, in `docs/references.md`).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7 · Meta-training, frame by frame
#
# The shipped run kept 30 snapshots of the weights at log-spaced iterations. Slide through them: the
# dashed curve is the initialisation at that point of training, the solid one the fit after adaptation to
# the 10 points; on the right, the test MSE of every snapshot before and after adaptation.

# %%
# NBVAL_IGNORE_OUTPUT
# an interactive widget (its model id and rendered image change on every run).
timeline = widgets.TrainingTimeline(lab.snapshots("maml"), name="MAML")
timeline.ui

# %% [markdown]
# Without a live kernel the sliders do nothing; here is the same figure early in training (the widget's `update` sets the slider):

# %%
timeline.update(iteration=440, steps=1)
timeline.fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - MAML's inner step is $\phi = \theta - \alpha\nabla_\theta\mathcal{L}_S$; its outer step differentiates the
#   query loss *through* it — a Hessian-vector product, for free with `torch.func.grad` of a function that
#   calls `grad`.
# - `metalib.MAML(model, inner_lr, inner_steps, first_order)` does the same for a batch of tasks (`vmap`) and
#   agrees with the dozen-line version to float precision.
# - The learned initialisation adapts from 10 points in one step and keeps improving with more; the
#   pretrained network does not. FOMAML drops the second-order term: on sinusoids it is behind MAML after the
#   one step MAML was trained for and ahead from the second step on — and on so small a network it is not
#   noticeably cheaper.
#
# **Next: 03 · Reptile and the comparison** — a first-order method with no query set in the update, and all
# four initialisations on the same test tasks, as in the MAML paper's figure.

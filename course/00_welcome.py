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
# # 00 · Welcome: learning to learn
#
# *Notebook 0 of the metalib suite · about 20 minutes to read*
#
# > **Runs in** about 15 s on a laptop CPU (default mode; measured 11 s of CPU time on one AMD EPYC core, kernel start included) · **needs** nothing but metalib
# > and its shipped sinusoid weights; the last cell only *reports* whether the Omniglot and miniImageNet
# > data are found · **FULL mode** changes nothing here.
#
# **After this notebook you can**
# - say what a *task*, a *support set* and a *query set* are, and what the *inner* and *outer* loops do;
# - tell the three families of meta-learning apart — metric-, optimisation- and model-based — and name one method of each;
# - find your way around the suite: the notebooks, the `metalib` library behind them, the exercises and their checks, the `METALIB_FULL` switch;
# - check that your environment is ready (device, shipped weights, datasets).

# %%
# %matplotlib inline
import torch
import torch.nn.functional as F
import metalib
from metalib.course import plots, sinusoid_lab as lab
from metalib.course.exercises import check_split_task, solution  # noqa: F401 (solution(): the checks' "Stuck?" hint)

plots.style()
torch.manual_seed(0)
print("metalib imported")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · From learning to learning to learn
#
# Ordinary supervised learning fits one function to one dataset $\mathcal{D}$:
# $\theta^\star = \arg\min_\theta \mathcal{L}(f_\theta; \mathcal{D})$ — with thousands of examples.
# People learn a new concept from a handful, because they have learned many *related* concepts before.
# Meta-learning trains for exactly that situation:
#
# - a **task** $\mathcal{T}_i$ is a small learning problem drawn from a distribution $p(\mathcal{T})$ —
#   "fit this sine wave", "tell these five handwritten characters apart";
# - each task comes with a **support set** $S_i$ (the $K$ examples we may learn from — "$K$-shot") and a
#   **query set** $Q_i$ (new examples of the same task, on which the adapted model is judged);
# - the **inner loop** adapts to one task from its support set: $\phi_i = \mathrm{Adapt}(\theta, S_i)$,
#   e.g. a few gradient steps $\phi_i = \theta - \alpha \nabla_\theta \mathcal{L}_{S_i}(f_\theta)$;
# - the **outer loop** improves what all tasks share — here the starting point $\theta$ — so that
#   adaptation works well *on the query sets*:
#
# $$\min_\theta \; \mathbb{E}_{\mathcal{T}_i \sim p(\mathcal{T})}\Big[\mathcal{L}_{Q_i}\big(f_{\mathrm{Adapt}(\theta, S_i)}\big)\Big].$$
#
# Meta-*training* and meta-*testing* use disjoint sets of tasks: at test time the learner meets tasks it
# has never seen, gets $K$ examples of each, and is scored on their query sets.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · Tasks in code
#
# In `metalib` every batch of tasks is a tuple `(x_s, y_s, x_q, y_q)` with a leading task dimension.
# Here are 4 tasks of the sinusoid family (notebook 01 studies it), each with $K = 5$ support and 20 query points.

# %%
g = torch.Generator().manual_seed(0)            # every random draw in the suite takes a seeded generator
batch = metalib.tasks.Sinusoid().sample(4, 5, 20, generator=g)
for name, t in zip(("x_s", "y_s", "x_q", "y_q"), batch):
    print(f"{name}: {list(t.shape)}   # [tasks, points, features]")

# %%
fig = plots.show_task_batch(batch, title="Four tasks: learn from the support points, be judged on the query points")

# %% [markdown]
# The learner sees only the five black points of a task and must predict the red circles. Five points
# could be fitted by infinitely many functions — what makes the problem solvable is everything the learner
# picked up from *other* tasks of the same family during meta-training.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · The inner and outer loop, as a picture
#
# The optimisation-based view (MAML, notebook 02): the outer loop moves the shared starting point $\theta$
# (thick path); from there, one or a few gradient steps on a task's support set (blue arrows) should land
# close to that task's own best parameters $\theta^\star_i$.

# %%
ax = plots.meta_learning_diagram()

# %% [markdown]
# **The inner loop in code.** One adaptation step on task 1's support set, from scratch with
# `torch.autograd`, then with `metalib.MAML.adapt` — the two agree (notebook 02 builds the outer loop):

# %%
model = metalib.models.sinusoid_mlp()
x_s, y_s = batch.x_s[0], batch.y_s[0]                       # task 1: its 5 support points

loss = F.mse_loss(model(x_s), y_s)                           # from scratch: φ = θ − α ∇θ L_S(θ)
grads = torch.autograd.grad(loss, list(model.parameters()))
phi = [p - 0.01 * g for p, g in zip(model.parameters(), grads)]

phi_lib = metalib.MAML(model, inner_lr=0.01).adapt(x_s, y_s, F.mse_loss)   # with metalib: {name: tensor}
print("ours and metalib's adapted weights agree:", all(torch.allclose(a, b, atol=1e-6) for a, b in zip(phi, phi_lib.values())))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · Three families
#
# | family | what is meta-learned | adaptation to a new task | examples | in this suite |
# |---|---|---|---|---|
# | **metric-based** | an embedding $f_\phi$ in which classes are easy to compare | none: classify a query by its distance to the support examples (or their mean, the *prototype*) | Matching Networks, **Prototypical Networks** | `metalib.ProtoNet` — notebook 05 |
# | **optimisation-based** | an initialisation $\theta$ (sometimes also step sizes) | a few steps of gradient descent on the support set | **MAML**, first-order MAML, **Reptile**, Meta-SGD | `metalib.MAML`, `metalib.Reptile` — notebooks 02, 03, 06 |
# | **model-based** | a network that *reads* the support set | one forward pass: the support set is the input (memory, attention, recurrence) | memory-augmented networks, SNAIL, neural processes | later notebooks |
#
# The families trade flexibility for speed: a metric-based learner adapts in one forward pass but only to
# classification-like tasks; an optimisation-based learner can adapt any differentiable model to any loss,
# at the cost of gradient steps (and, for MAML, second derivatives); a model-based learner is the most
# general and the hardest to train.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · Exercise: split a task
#
# The support and query sets of a task must be **disjoint** — the query set measures how well the adapted
# model generalises, so it must not have been seen during adaptation. Write `split_task(x, y, k)`: given
# a task's points `x, y` of shape `[n, 1]` (in random order), return `(x_s, y_s, x_q, y_q)` with `k`
# support points and the other `n − k` as query points. Run the cell: the check tells you what is wrong.

# %%
def split_task(x, y, k):
    # YOUR CODE HERE: return x_s, y_s, x_q, y_q (k support points, the rest query)
    raise NotImplementedError


check_split_task(split_task)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def split_task(x, y, k):
#     return x[:k], y[:k], x[k:], y[k:]
# ```
# Slicing x and y with the *same* indices keeps every (x, y) pair together, and `[:k]` / `[k:]` can
# never overlap. The points were drawn at random, so the first k are as random as any k.
# (`solution("split_task")` prints it too.)
# </details>

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · How to use the suite
#
# | notebook | what you do there |
# |---|---|
# | **00 welcome** (this one) | vocabulary, families, environment check |
# | **01 sinusoid tasks** | the task family of Finn et al.; why one network trained on all tasks cannot adapt from 5–10 points |
# | **02 MAML from scratch** | the inner step and the second-order meta-gradient in a few lines of `torch.func`, then `metalib.MAML`; FOMAML |
# | **03 Reptile and comparison** | Reptile; MAML, FOMAML, Reptile and pretraining on the same test tasks, as in the MAML paper's figure |
# | **04–08** | few-shot image classification on Omniglot and miniImageNet: the data and the evaluation protocol, ProtoNet, MAML / FOMAML / Reptile, miniImageNet, one table of everything |
# | later notebooks | the rest of each family |
#
# - **Run top to bottom.** Each notebook runs in one to two minutes on a laptop CPU in its default mode (the
#   banner under its title says what it needs and how long it took when measured): the expensive
#   meta-training is replaced by weights the project trained and ships (`metalib.pretrained(...)`,
#   checksum-verified; each notebook prints how they were made), after a short *live* training demo.
# - **The switch.** `FULL = True` at the top of a notebook — or `METALIB_FULL=1` in the environment before
#   starting Jupyter — trains the paper-length versions from scratch instead (minutes to hours).
# - **Exercises** end with a check such as `check_inner_step(inner_step)` that says what is wrong; the
#   notebooks in the repository show a reference solution in a collapsed *Solution* block below the exercise
#   (the student version, `python scripts/notebooks.py release --student DIR`, leaves out those blocks and
#   every pointer to them).
# - **Lecture mode.** Every notebook is also a slide deck (View → Cell toolbar → Slideshow shows each cell's
#   slide type; RISE presents it live, `python scripts/notebooks.py slides --out slides/` writes HTML slides).
# - **Widgets** (sliders) need a live kernel; a static figure follows each one.
# - **The code** in the cells is short on purpose: each idea is first written from scratch in a few lines,
#   then the `metalib` call that does the same is shown and checked against it. The heavy lifting lives in
#   `metalib/` and is tested (`python -m pytest`), notebooks included.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7 · Environment check

# %%
# NBVAL_IGNORE_OUTPUT
# versions, the device and the CPU differ from machine to machine, so the
# test run does not compare this cell's output with the stored one (the next cells check what must not vary).
from metalib.device import environment_report

for key, value in environment_report().items():
    print(f"{key:>15}: {value}")

# %%
for kind in lab.KINDS:  # loading verifies each file's sha256 against metalib/weights/MANIFEST.json
    model = lab.load(kind)
    print(f"{lab.WEIGHTS[kind]:<17} checksum OK, {sum(p.numel() for p in model.parameters()):,} parameters")

# %%
from metalib import data  # the few-shot datasets (needed from the classification notebooks on)

report = data.info(checksums=False)
for key, name in (("omniglot", "Omniglot"), ("mini-imagenet", "miniImageNet")):
    print(f"{name:<13} {'found' if report[key]['present'] else 'missing — see docs/data.md'}")

# %% [markdown]
# If a dataset is missing, the sinusoid notebooks (01–03) still run; `docs/data.md` says where to put the
# files (or point `METALIB_DATA` at a folder holding `omniglot/` and `mini-imagenet/`).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - Meta-learning trains on a *distribution of tasks*; each task has a support set (learn from it) and a
#   query set (be judged on it).
# - The inner loop adapts to one task; the outer loop improves what is shared across tasks.
# - Metric-based methods learn an embedding, optimisation-based methods learn an initialisation for gradient
#   descent, model-based methods learn a network that reads the support set.
#
# **Next: 01 · sinusoid tasks** — the toy problem of the MAML paper, and why a network trained on all tasks
# jointly is not enough.

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
# # 13 · Meta-reinforcement learning: MAML-RL on 2-D navigation, RL² on bandits
#
# *Notebook 13 of the metalib suite · about 30 minutes to read · needs: 02 (MAML), 11 (learning in the activations)*
#
# > **Runs in** about 15 s on a laptop CPU (default mode; measured 10 s of CPU time on one AMD EPYC core, kernel start included) · **needs**
# > `gymnasium` (requirements.txt) and the shipped policies · **FULL mode** retrains the MAML-RL, pretrained and RL²
# > policies here (about half an hour on a CPU) · the Meta-World section shows stored results; rerunning it needs the
# > optional `requirements-rl.txt`.
#
# **After this notebook you can**
# - write a family of RL tasks as `gymnasium` environments: the MAML paper's 2-D navigation (one goal per task) and
#   RL²'s Bernoulli bandits (one set of arm probabilities per task, a trial of $n$ pulls);
# - derive the policy-gradient (REINFORCE) estimator, say why a baseline keeps it unbiased, and compute rewards-to-go;
# - write MAML-RL's inner step — one REINFORCE step with a fitted linear baseline — and check it against `metalib.rl`;
# - read the MAML paper's 2-D navigation figure (return after 0–3 gradient steps: MAML vs pretrained vs random);
# - explain RL²: a recurrent policy whose hidden state *is* the fast learner, kept across the episodes of a trial and
#   reset between trials, compared with ε-greedy, UCB1, Thompson sampling and Gittins indices (for 10, 100 and 500
#   pulls);
# - read a Meta-World ML1 result: success on held-out goals before and after one adaptation step, and how its
#   protocol differs from the benchmark's.

# %%
# %matplotlib inline
import importlib.util
import matplotlib.pyplot as plt
import torch
from metalib.course import full_mode, plots, rl_lab, rl_widgets as rw
from metalib.course.exercises import solution  # noqa: F401 (solution(): the check's "Stuck?" hint)
from metalib.course.rl_lab import check_discounted_returns
from metalib.rl import envs, maml_rl, rl2

# ▶ THE SWITCH. False: the policies the project trained and ships (the notebook runs in well under a minute).
#   True — or METALIB_FULL=1 — retrains MAML-RL and the pretrained policy (300 meta-iterations each) and RL² (4,000
#   iterations per bandit setting) here: about half an hour on one CPU core.
FULL = full_mode()

plots.style()
torch.set_num_threads(1)  # small networks: one thread, and results that do not depend on the thread count
torch.manual_seed(0)
print("mode:", "FULL: training the policies in this notebook" if FULL else "default: shipped policies")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1 · Tasks are MDPs
#
# In supervised meta-learning a task was a dataset. In reinforcement learning a task is a **Markov decision
# process**: states $s$, actions $a$, dynamics $p(s'|s,a)$, a reward $r(s,a)$, a horizon $H$. A family of tasks shares
# the states and actions and differs in dynamics or rewards. The two families of this notebook, as `gymnasium`
# environments (`metalib.rl.envs`):
#
# | | **2-D navigation** (Finn et al. 2017, §5.3) | **Bernoulli bandits** (Duan et al. 2016, RL²) |
# |---|---|---|
# | a task | a goal $g \sim U[-0.5, 0.5]^2$ | $k$ arms, $p_i \sim U[0, 1]$ |
# | state, action | position $s \in \mathbb{R}^2$ (from $(0, 0)$); velocity $a$, clipped to $[-0.1, 0.1]$ | none; an arm |
# | reward | $-\lVert s_{t+1} - g \rVert$ (minus the distance) | 1 with probability $p_a$, else 0 |
# | episode | 100 steps, or until within 0.01 of the goal | one pull; a **trial** is $n$ pulls on the same bandit |
#
# The constants are those of the paper's code (`cbfinn/maml_rl`, `point_env_randgoal.py`); its text says "squared
# distance", its code the distance — we follow the code (`docs/references.md`).

# %%
env = envs.PointNavigation(goal=[0.25, -0.15])
obs, info = env.reset(seed=0)
print("start", obs.tolist(), "goal", info["goal"].tolist())
for a in ([1.0, -1.0], [5.0, 0.0], [0.5, -0.5]):             # the second is clipped to a velocity of 0.1
    obs, r, terminated, truncated, _ = env.step(a)
    print(f"action {a} -> position ({obs[0]:.3f}, {obs[1]:.3f}), reward {r + 0.0:.4f} = -distance to the goal"
          + (" (at the goal: the episode ends)" if terminated else ""))
bandit = envs.BernoulliBandit(k=3, probs=[0.2, 0.5, 0.9])
bandit.reset(seed=0)
print("ten pulls of arm 2 (p = 0.9):", [int(bandit.step(2)[1]) for _ in range(10)])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2 · The policy-gradient estimator
#
# A stochastic policy $\pi_\theta(a|s)$ makes a trajectory $\tau = (s_0, a_0, r_0, \dots)$ with probability
# $p_\theta(\tau) = p(s_0)\prod_t \pi_\theta(a_t|s_t)\,p(s_{t+1}|s_t,a_t)$. We want the gradient of the expected return
# $J(\theta) = \mathbb{E}_{\tau\sim p_\theta}[R(\tau)]$, $R = \sum_t r_t$. The dynamics are unknown — but only $\pi$ depends on
# $\theta$, and $\nabla p = p\,\nabla\log p$ (the **log-derivative trick**):
#
# $$\nabla_\theta J = \sum_\tau R(\tau)\,\nabla_\theta p_\theta(\tau) = \mathbb{E}_\tau\Big[R(\tau)\sum_t \nabla_\theta\log\pi_\theta(a_t|s_t)\Big],$$
#
# since $\log p_\theta(\tau) = \sum_t \log\pi_\theta(a_t|s_t) + $ terms without $\theta$. Two refinements keep it unbiased
# and cut its variance: an action cannot change the rewards *before* it, so $R$ can be replaced by the
# **reward-to-go** $G_t = \sum_{u \ge t}\gamma^{u-t} r_u$; and any **baseline** $b(s_t)$ that does not depend on $a_t$ can be
# subtracted, because $\mathbb{E}_{a\sim\pi}[\nabla\log\pi(a|s)] = \sum_a \nabla\pi(a|s) = \nabla 1 = 0$:
#
# $$\hat g = \frac{1}{N}\sum_{n=1}^{N}\sum_t \nabla_\theta\log\pi_\theta(a^n_t|s^n_t)\,\big(G^n_t - b(s^n_t)\big).$$
#
# The check below is on a one-step task where everything can be enumerated: a softmax policy over 3 arms with known
# means. Exactly, $\partial J/\partial\theta_a = \pi_a(\mu_a - J)$; the estimator averages 20,000 pulls (float64, seeded).

# %%
theta = torch.tensor([0.2, -0.3, 0.5], dtype=torch.float64, requires_grad=True)
mu = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
pi = torch.softmax(theta, 0)
exact = torch.autograd.grad((pi * mu).sum(), theta)[0]
gen = torch.Generator().manual_seed(0)
arms = torch.multinomial(pi.detach(), 20000, replacement=True, generator=gen)
rewards = (torch.rand(20000, generator=gen, dtype=torch.float64) < mu[arms]).double()
for name, b in (("no baseline", 0.0), ("baseline b = 0.6", 0.6)):
    logp = torch.log_softmax(theta, 0)[arms]
    est = torch.autograd.grad((logp * (rewards - b)).mean(), theta)[0]          # the estimator, by autograd
    # one sample's term: grad log softmax = onehot(a) - pi, times (r - b); its spread across samples
    per_sample = (torch.nn.functional.one_hot(arms, 3) - pi.detach()) * (rewards - b)[:, None]
    spread = per_sample.std(0).mean().item()
    print(f"{name:17s}: estimate {[round(x, 3) for x in est.tolist()]}  (per-sample spread {spread:.2f})")
print(f"{'exact':17s}: gradient {[round(x, 3) for x in exact.tolist()]}")

# %% [markdown]
# Both estimates sit near the exact gradient; the baseline leaves the mean alone and shrinks the spread of single
# samples. `tests/test_maml_rl.py` checks the library's estimator on a 3-step MDP against the gradient computed by
# enumerating every trajectory, and that an *action*-dependent baseline is caught as biased.
#
# ### Exercise: rewards-to-go
#
# Write `discounted_returns(rewards, gamma)`: for one trajectory `rewards [H]`, the tensor `G [H]` with
# $G_t = \sum_{u\ge t}\gamma^{u-t} r_u$. The check names the common mistakes: a running sum from the start, discounting
# from the episode's start ($\gamma^u$), leaving out $r_t$, the whole return at every step, no discount.

# %%
def discounted_returns(rewards, gamma):
    # YOUR CODE HERE: G[t] = rewards[t] + gamma * G[t + 1], from the last step back
    raise NotImplementedError


check_discounted_returns(discounted_returns)

# %% [markdown] tags=["solution"] slideshow={"slide_type": "fragment"}
# <details><summary><b>Solution</b> (click to open — try first!)</summary>
#
# ```python
# def discounted_returns(rewards, gamma):
#     G = torch.zeros_like(rewards)
#     running = 0.0
#     for t in reversed(range(len(rewards))):
#         running = rewards[t] + gamma * running
#         G[t] = running
#     return G
# ```
# One pass from the end: $G_t = r_t + \gamma G_{t+1}$. (`solution("discounted_returns")` prints it too.)
# </details>

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3 · MAML-RL: the inner step is one policy-gradient step
#
# MAML (notebook 02) carries over unchanged; only the loss changes. For task $\mathcal{T}_i$ (a goal) sample $K = 20$
# trajectories $\mathcal{D}_i$ with $\pi_\theta$ and step on the REINFORCE loss (the paper's eq. 4):
#
# $$\phi_i = \theta - \alpha\nabla_\theta\mathcal{L}_{\mathcal{T}_i}(\pi_\theta),\qquad
# \mathcal{L}_{\mathcal{T}_i}(\pi) = -\frac{1}{|\mathcal{D}_i|}\sum_{(s_t, a_t)\in\mathcal{D}_i}\log\pi(a_t|s_t)\,\hat A_t,\quad
# \hat A_t = \frac{G_t - b_i(s_t) - m}{\sigma},$$
#
# with $b_i$ the paper's **linear feature baseline**: a ridge regression of $G_t$ on
# $[s, s^2, t/100, (t/100)^2, (t/100)^3, 1]$ over $\mathcal{D}_i$, and the advantages normalised ($m$, $\sigma$: their mean and
# std over the batch), as in the paper's code. Then sample *new* trajectories with $\pi_{\phi_i}$ and minimise the same
# loss over $\theta$, through the inner step. The policy is a Gaussian MLP (2 × 100 ReLU, a learned log-std).
#
# The inner step, from scratch, on a fixed batch (float64), against `metalib.rl.maml_rl.inner_step`:

# %%
gen = torch.Generator().manual_seed(1)
params = {k: v.double() for k, v in maml_rl.init_policy((100, 100), generator=gen).items()}
goal = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
batch = maml_rl.rollout({k: v.unsqueeze(0) for k, v in params.items()}, goal, 20, generator=gen)   # [1, 20, 100, ...]

def my_inner_step(params, obs, actions, rewards, mask, alpha=0.5, gamma=0.99):
    H = obs.shape[1]
    G = rewards.new_zeros(rewards.shape)                            # rewards-to-go, from the end
    for t in reversed(range(H)):
        G[:, t] = rewards[:, t] + gamma * (G[:, t + 1] if t + 1 < H else 0) * mask[:, t]
    t_ = torch.arange(H, dtype=obs.dtype).expand(obs.shape[0], H)[..., None] / 100
    F = torch.cat([obs, obs ** 2, t_, t_ ** 2, t_ ** 3, torch.ones_like(t_)], -1)[mask.bool()]   # valid steps only
    y = G[mask.bool()]
    w = torch.linalg.solve(F.T @ F + 1e-5 * torch.eye(F.shape[1], dtype=F.dtype), F.T @ y)   # ridge regression
    adv = y - F @ w
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    h = torch.relu(obs[mask.bool()] @ p["w0"] + p["b0"])
    mean = torch.relu(h @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    logp = torch.distributions.Normal(mean, p["log_std"].exp()).log_prob(actions[mask.bool()]).sum(-1)
    loss = -(logp * adv).mean()
    grads = torch.autograd.grad(loss, list(p.values()))
    return {k: v - alpha * g for (k, v), g in zip(params.items(), grads)}

mine = my_inner_step(params, batch.obs[0], batch.actions[0], batch.rewards[0], batch.mask[0])
lib = maml_rl.inner_step({k: v.clone().requires_grad_() for k, v in params.items()}, batch, 0.5, create_graph=False)
diff = max((mine[k] - lib[k][0]).abs().max().item() for k in params)
print(f"from scratch vs metalib.rl.maml_rl.inner_step, float64: the same to 1e-10 in every parameter: {diff < 1e-10}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4 · The paper's figure: return after 0–3 policy-gradient steps
#
# Three starting points adapt to held-out goals with the same rule: sample 40 trajectories, take a REINFORCE step
# (α = 0.5, then 0.25), repeat — the protocol of the paper's test script. **MAML-RL** is meta-trained for exactly this;
# **pretrained** is one policy trained with plain policy gradient on random goals (the best *single* policy for the
# goal distribution); **random** is an untrained initialisation. The shipped runs (`scripts/train_maml_rl.py`, 300
# meta-iterations of 20 goals × 20 trajectories, outer step Adam instead of the paper's TRPO) measured, on 40 test goals:

# %%
policies, metas = rl_lab.load_navigation_policies()
if FULL:
    for label, maml in (("MAML", True), ("pretrained", False)):
        theta, _ = maml_rl.train(maml_rl.Config(maml=maml), log_every=50)
        policies[label] = {k: v.double() for k, v in theta.items()}
curves = rl_lab.recorded_curves(metas)
print("mean return on 40 test goals after 0, 1, 2, 3 steps (recorded by scripts/train_maml_rl.py):")
for label, c in curves.items():
    print(f"  {label:10s} " + "  ".join(f"{x:7.1f}" for x in c))
print(f"MAML-RL: {metas['MAML']['config']['iterations']} meta-iterations, {metas['MAML']['train_minutes']} min on one CPU core")

# %%
fig, ax = plots.subplots(width=5.5, height=3.6)
for (label, c), color in zip(curves.items(), ("C3", "C0", "0.5")):
    ax.plot(range(len(c)), c, "o-", color=color, label=label)
ax.set_xlabel("number of gradient steps")
ax.set_ylabel("average return (− Σ distance)")
ax.set_xticks(range(4))
ax.set_title("2-D navigation: the MAML paper's Figure 5 (left), reproduced")
ax.legend()
plt.show()

# %% [markdown]
# What the recorded curves say: at 0 steps MAML-RL is no better than the pretrained policy — it does not know the goal
# yet. After one step from 20 trajectories MAML-RL is ahead (−11.1 against −13.7), and after two (−5.7 against −7.3);
# at the third the pretrained policy has caught up (−4.3 against −5.2). The random initialisation barely moves
# (−71.6 to −53.3). The paper's figure shows a much larger gap between MAML and pretrained; in our runs the inner
# step, with advantages normalised per batch and α = 0.5, moves even a policy that was not meta-trained a long way
# towards the goal. Where the difference comes from (TRPO against Adam in the outer loop, the length of training,
# the pretrained policy's action noise) is not settled here.
#
# **Drag the goal** and watch one update: grey, the 20 trajectories the step learns from; dashed, the policy's mean path
# before; red, after. Switch to the pretrained policy to compare.

# %%
# NBVAL_IGNORE_OUTPUT
# widget: tested in the browser test (tests/browser)
explorer = rw.GoalExplorer(policies, goal_x=0.3, goal_y=-0.4, steps=1)
explorer.ui

# %% [markdown]
# The same figure, static (for a notebook viewed without a kernel):

# %%
explorer.fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5 · RL²: the learner is the hidden state
#
# MAML-RL learns with gradient steps at test time. **RL²** (Duan et al. 2016) learns with none: a recurrent policy
# (here a GRU with 64 units) reads, at each step, its previous action, reward and termination flag. Its hidden state is
# kept across the $n$ episodes of a **trial** — that is where what it learned about this task lives — and reset to zero
# between trials, when the task changes. The slow, outer learner is ordinary RL on the total reward of whole trials
# (here REINFORCE with a learned value baseline and an entropy bonus; the paper uses TRPO). On bandits, one episode is
# one pull, so RL² must learn an *exploration strategy*: `tests/test_rl2.py` checks that the state resets exactly at
# trial boundaries and nowhere else.
#
# Mean total reward per trial over 5,000 fresh bandits (`scripts/train_rl2.py`; RL² samples its policy), for two
# settings of RL²'s Table 1 (n = 10 pulls; k = 5 and 10 arms). Baselines: ε-greedy with ε = 0.1, UCB1 with c = 1,
# Thompson sampling with a Beta(1, 1) prior, greedy on the posterior mean, and **Gittins indices** (below; discount
# tuned on bandits of its own). The paper's own Table 1 could not be found (`docs/references.md`): no number here is
# the paper's.

# %%
rl2_policies = {}
for k in (5, 10):
    pol, meta = rl_lab.load_rl2(k, 10)
    if FULL:
        pol, _ = rl2.train_rl2(rl2.RL2Config(k=k, n=10, iterations=4000), log_every=500)
    rl2_policies[k] = pol
    table, info = rl_lab.bandit_table(k, 10)
    print(f"k = {k} arms, n = 10 pulls: mean total reward per trial (recorded, ± s.e.)")
    for name, (m, se) in table.items():
        label = f"gittins (γ {info['gittins_gamma']})" if name == "gittins" else name
        print(f"  {label:18s} {m:5.2f}" + (f" ± {se:.2f}" if se else "  (n × E[max p], the ceiling)"))

# %% [markdown]
# **Gittins indices.** Give each arm a number — its *index* — and pull the arm with the largest: for discounted
# rewards $\sum_t \gamma^t r_t$ over an endless trial, Gittins (1979) proved this Bayes-optimal when the index of an
# arm with posterior $\mathrm{Beta}(1 + a, 1 + b)$ is the reward $\lambda$ of a *known* arm that makes "retire to it
# forever" and "pull this arm once more, then decide again" equally good. `metalib.rl.bandits.gittins_indices`
# computes it by backward induction over the posterior states for a grid of $\lambda$ (the calibration method);
# `tests/test_gittins.py` checks it against the same equation solved by bisection and against the theorem itself (on
# two arms, the index policy's value equals the Bayes-optimal value from dynamic programming). An index is above
# the posterior mean: the excess is what pulling an uncertain arm is worth for what it teaches.

# %%
from metalib.rl import bandits  # noqa: E402

for gamma in (0.9, 0.99):
    G = bandits.gittins_indices(gamma, 200)
    print(f"γ = {gamma}: a fresh arm (mean 0.5) has index {G[0, 0]:.4f}; after 1 success {G[1, 0]:.4f} "
          f"(mean 0.667), after 1 failure {G[0, 1]:.4f} (mean 0.333)")

# %% [markdown]
# **Longer trials.** For n = 100 the RL² policies were fine-tuned from the n = 10 ones (1,500 iterations × 128
# trials; `python -m metalib.rl.bandit_runs`); for n = 500 only the baselines were run, Thompson sampling left out
# (CPU budget). The second line of each setting is a draft table found in RL²'s official code (`gen_figures.py`) —
# an earlier stage of the work, *not* the paper's Table 1 — printed as a cross-check of our Gittins row.

# %%
from metalib.course.paper_results import RL2_CODE_DRAFT  # noqa: E402

for k, n in ((5, 100), (10, 100), (5, 500), (10, 500)):
    table, info = rl_lab.bandit_table(k, n)
    cells = "  ".join(f"{name.split(' ')[0]} {m:.1f}" + (f"±{se:.1f}" if se else "") for name, (m, se) in table.items())
    print(f"k = {k:2d}, n = {n}: {cells}  (Gittins γ {info['gittins_gamma']})")
    print(f"{'':15s}official code's draft (not Table 1): Gittins {RL2_CODE_DRAFT['Gittins'][(k, n)]:.1f}, "
          f"RNN {RL2_CODE_DRAFT['RNN policy (RL²)'][(k, n)]:.1f}")

# %% [markdown]
# **Step through a trial**: the same bandit and the same pre-drawn outcomes for RL² (its most probable arm) and UCB1.
# UCB1 must try every arm once; RL² learned from thousands of trials how long exploring pays for 10 pulls.

# %%
# NBVAL_IGNORE_OUTPUT
# widget: tested in the browser test (tests/browser)
trial = rw.BanditTrialExplorer(rl2_policies[5], n=10, bandit=0, step=10)
trial.ui

# %%
trial.fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6 · Meta-World (optional)
#
# Meta-World (Yu et al. 2019) is the benchmark for robot meta-RL: ML1 `reach-v3` has 50 goal positions for training
# and 50 held-out test goals; the goal is hidden from the policy, and an episode succeeds if the hand comes within
# 5 cm of the goal at any step. Meta-World's own meta-test protocol (`metaworld.evaluation`): per test goal 10
# adaptation episodes of up to 500 steps, one adaptation step, then 3 evaluation episodes, over 10 rounds.
#
# Ours, at a CPU budget (`python -m metalib.rl.metaworld_tasks`: about 2 CPU-minutes here, RESULTS.md): MAML-RL with
# a linear Gaussian policy on the hand position, 60-step episodes, 4 adaptation episodes and one REINFORCE step, then
# one episode of the adapted policy's mean action on each of the 50 test goals; "before" is the meta-learned policy's
# mean action without adapting. The numbers below are stored with the shipped policy (`maml-rl-reach-v3`), so this
# cell needs no MuJoCo; rerunning needs `pip install -r requirements-rl.txt` (metaworld and MuJoCo's own wheel).

# %%
mw = rl_lab.metaworld_results()
for name, r in mw["results"].items():
    print(f"{name:12s} success on the {r['goals']} test goals: {100 * r['success_before']:.0f}% before, "
          f"{100 * r['success_after']:.0f}% after one adaptation step "
          f"(return {r['return_before']:.0f} -> {r['return_after']:.0f})")
print("trained:", mw["config"]["iterations"], "meta-iterations of", mw["config"]["meta_batch"], "goals ×",
      mw["config"]["n_traj"], "episodes;", mw["command"])

# %%
# NBVAL_IGNORE_OUTPUT
# (the line depends on whether the optional metaworld is installed)
if importlib.util.find_spec("metaworld") is None:
    print("Meta-World rerun skipped: MuJoCo/metaworld is not installed (pip install -r requirements-rl.txt).")
else:
    print("metaworld is installed: python -m metalib.rl.metaworld_tasks retrains and re-measures (~3 CPU-minutes).")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - An RL task is an MDP; a task family shares states and actions. `metalib.rl.envs` has the MAML paper's 2-D
#   navigation and RL²'s Bernoulli bandits as `gymnasium` environments.
# - The policy gradient is $\mathbb{E}[\sum_t\nabla\log\pi(a_t|s_t)(G_t - b(s_t))]$: the log-derivative trick, the
#   reward-to-go and a state-dependent baseline, all unbiased.
# - **MAML-RL** is MAML with that loss: one REINFORCE step (linear baseline, normalised advantages) in the inner loop,
#   meta-trained through it. On 2-D navigation it is ahead of a pretrained policy after one and two steps from 20
#   trajectories (a smaller gap than the paper's), and far ahead of a random initialisation.
# - **RL²** needs no gradient at test time: a GRU whose state persists within a trial and resets between trials
#   learns to explore bandits — close to the best hand-designed strategies for short trials; for 100 pulls our
#   CPU-budget RL² stays below greedy, Thompson sampling and the Gittins index rule (the Bayes-optimal index for
#   discounted rewards, computed here by calibration and checked against dynamic programming).
# - **Meta-World** ML1 `reach-v3`: the same MAML-RL on a simulated robot arm, measured on 50 held-out goals before
#   and after one adaptation step (optional: `requirements-rl.txt`).
#
# **Next:** `metalib.rl` has the pieces to try other task families (e.g. goal velocities) or other Meta-World tasks
# (`metalib.rl.metaworld_tasks.ML1Tasks("push-v3")`).

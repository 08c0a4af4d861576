"""Notebook 13's two apps (ipywidgets + matplotlib), drawing the tested computations of
:mod:`metalib.course.rl_lab`:

* :class:`GoalExplorer` — choose a goal (x, y sliders): the shipped MAML-RL (or pretrained) policy's
  trajectories before the update, the 20 sampled trajectories it learns from, and its path after 1-3
  REINFORCE steps;
* :class:`BanditTrialExplorer` — step through one bandit trial: RL²'s arm choices beside UCB1's on the
  same pre-drawn outcomes, and their running totals.

Both follow :class:`metalib.course.widgets.FigureApp`: ``update(**values)`` is the callback (tests call it)::

    gx = GoalExplorer(policies);  gx.update(goal_x=0.3, goal_y=-0.4, steps=2)
    bx = BanditTrialExplorer(rl2_policy, n=10);  bx.update(bandit=3, step=7)
"""
from __future__ import annotations

from typing import Any, Dict

import ipywidgets as W
import numpy as np
from matplotlib.patches import Rectangle
import torch

from . import rl_lab
from .widgets import FigureApp, check_range

_STYLE, _LAYOUT = {"description_width": "90px"}, dict(width="310px")


def _slider(kind: str, description: str, value, lo, hi, step, fmt: str = ".2f") -> W.ValueWidget:
    if kind == "int":
        return W.IntSlider(value=value, min=lo, max=hi, step=step, description=description, style=_STYLE,
                           layout=W.Layout(**_LAYOUT), continuous_update=True)
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, readout_format=fmt,
                         style=_STYLE, layout=W.Layout(**_LAYOUT), continuous_update=True)

__all__ = ["GoalExplorer", "BanditTrialExplorer"]


class GoalExplorer(FigureApp):
    """Left: the point's world ([-0.6, 0.6]²), the goal (star), the policy's sampled pre-update
    trajectories (grey), its mean-action path before (dashed) and after ``steps`` policy-gradient steps
    (solid). Right: the return of the mean-action path before/after, for MAML-RL and the pretrained policy.

    Args:
        policies: ``{"MAML", "pretrained", ...}: params`` (:func:`metalib.course.rl_lab.load_navigation_policies`).
        goal_x, goal_y, steps, policy: the starting values.
    """

    width, height = 11.0, 4.6
    RANGES = dict(goal_x=(-0.5, 0.5), goal_y=(-0.5, 0.5), steps=(1, 3))

    def __init__(self, policies: Dict[str, Dict[str, torch.Tensor]], goal_x: float = 0.3, goal_y: float = -0.4,
                 steps: int = 1, policy: str = "MAML", n_traj: int = 20, seed: int = 0) -> None:
        super().__init__()
        self.policies = {k: policies[k] for k in ("MAML", "pretrained") if k in policies}
        if "MAML" not in self.policies:
            raise ValueError("policies needs 'MAML' (rl_lab.load_navigation_policies() gives it)")
        self.n_traj, self.seed = n_traj, seed
        self.values = self._validate(dict(goal_x=goal_x, goal_y=goal_y, steps=steps, policy=policy))
        self.result: Dict[str, Dict[str, torch.Tensor]] = {}
        self.ax, self.ax_bar = self.fig.subplots(1, 2, width_ratios=[1.3, 1.0])
        self.sample_lines = [self.ax.plot([], [], color="0.75", lw=0.8)[0] for _ in range(n_traj)]
        (self.before,) = self.ax.plot([], [], "--", color="C0", lw=2, label="before the update (mean action)")
        (self.after,) = self.ax.plot([], [], "-", color="C3", lw=2.4, label="after the update (mean action)")
        (self.goal,) = self.ax.plot([], [], "*", color="k", ms=16, label="goal")
        self.ax.plot([0], [0], "o", color="k", ms=5)
        self.ax.add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, ls=":", color="0.5"))   # the goals' square
        self.ax.set_xlim(-0.6, 0.6)
        self.ax.set_ylim(-0.6, 0.6)
        self.ax.set_aspect("equal")
        self.ax.set_title("trajectories (grey: the 20 the update learns from)", fontsize=9)
        self.ax.legend(fontsize=7.5, loc="lower left")
        self.title = self.fig.suptitle("", fontsize=10)
        self.controls = {
            "goal_x": _slider("float", "goal x", self.values["goal_x"], -0.5, 0.5, 0.05, ".2f"),
            "goal_y": _slider("float", "goal y", self.values["goal_y"], -0.5, 0.5, 0.05, ".2f"),
            "steps": _slider("int", "PG steps", self.values["steps"], 1, 3, 1),
            "policy": W.ToggleButtons(options=list(self.policies), value=self.values["policy"]),
        }
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            if name == "policy":
                if v not in self.policies:
                    raise ValueError(f"policy must be one of {sorted(self.policies)}, got {v!r}")
                continue
            lo, hi = self.RANGES[name]
            out[name] = check_range(name, v, lo, hi, name == "steps")
        return out

    def _redraw(self) -> None:
        v = self.values
        goal = (v["goal_x"], v["goal_y"])
        self.result = {k: rl_lab.adapt_to_goal(p, goal, self.n_traj, steps=v["steps"], seed=self.seed)
                       for k, p in self.policies.items()}
        r = self.result[v["policy"]]
        for line, path in zip(self.sample_lines, r["samples"]):
            line.set_data(path[:, 0].numpy(), path[:, 1].numpy())
        self.before.set_data(r["before"][:, 0].numpy(), r["before"][:, 1].numpy())
        self.after.set_data(r["after"][:, 0].numpy(), r["after"][:, 1].numpy())
        self.goal.set_data([goal[0]], [goal[1]])
        self.ax_bar.clear()
        names = list(self.result)
        x = np.arange(len(names))
        self.ax_bar.bar(x - 0.18, [float(self.result[k]["return_before"]) for k in names], 0.36, color="C0",
                        label="before")
        self.ax_bar.bar(x + 0.18, [float(self.result[k]["return_after"]) for k in names], 0.36, color="C3",
                        label=f"after {v['steps']} step{'s' if v['steps'] > 1 else ''}")
        self.ax_bar.set_xticks(x, names)
        self.ax_bar.set_ylabel("return of the mean-action path (higher is better)")
        self.ax_bar.axhline(0, color="0.5", lw=0.8)
        self.ax_bar.legend(fontsize=7.5, loc="lower left")
        self.ax_bar.set_title("return over 100 steps: − Σ distance to the goal", fontsize=9)
        self.title.set_text(f"goal ({goal[0]:+.2f}, {goal[1]:+.2f}) · {v['policy']}: return "
                            f"{float(r['return_before']):.1f} → {float(r['return_after']):.1f} after "
                            f"{v['steps']} policy-gradient step{'s' if v['steps'] > 1 else ''} on {self.n_traj} trajectories")


class BanditTrialExplorer(FigureApp):
    """One trial on one bandit (``bandit`` picks a seeded one): the arms' success probabilities (bars), the
    arm RL² and UCB1 pull at each step up to ``step`` (filled: paid 1), and both running totals. Both play the
    same pre-drawn outcomes (:func:`metalib.course.rl_lab.bandit_outcomes`).

    Args:
        policy: a shipped RL² policy (:func:`metalib.course.rl_lab.load_rl2`); n: pulls per trial.
    """

    width, height = 11.0, 4.2

    def __init__(self, policy, n: int = 10, bandit: int = 0, step: int = 10, bandits: int = 20) -> None:
        super().__init__()
        self.policy, self.k, self.n, self.bandits = policy, policy.k, n, bandits
        self.values = self._validate(dict(bandit=bandit, step=step))
        self.ax_p, self.ax_t, self.ax_r = self.fig.subplots(1, 3, width_ratios=[0.7, 1.5, 0.9])
        self.title = self.fig.suptitle("", fontsize=10)
        self.controls = {"bandit": _slider("int", "bandit", self.values["bandit"], 0, bandits - 1, 1),
                         "step": _slider("int", "step", self.values["step"], 1, n, 1)}
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            hi = self.bandits - 1 if name == "bandit" else self.n
            out[name] = check_range(name, v, 0 if name == "bandit" else 1, hi, True)
        return out

    def play(self):
        """``(probs [k], {"RL²": (arms, rewards), "UCB1": (arms, rewards)})`` of the current bandit."""
        probs, outcomes = rl_lab.bandit_outcomes(self.k, self.n, seed=1000 + self.values["bandit"])
        arms, rew, _ = rl_lab.play_rl2(self.policy, outcomes)
        return probs, {"RL²": (arms, rew), "UCB1": rl_lab.play_rule(rl_lab.UCB1, outcomes)}

    def _redraw(self) -> None:
        s = self.values["step"]
        probs, runs = self.play()
        for ax in (self.ax_p, self.ax_t, self.ax_r):
            ax.clear()
        best = int(probs.argmax())
        self.ax_p.barh(range(self.k), probs.numpy(), color=["C2" if a == best else "0.7" for a in range(self.k)])
        self.ax_p.set_yticks(range(self.k), [f"arm {a}" for a in range(self.k)])
        self.ax_p.set_xlim(0, 1)
        self.ax_p.set_xlabel("P(reward = 1)")
        self.ax_p.set_title("the bandit (hidden from both)", fontsize=9)
        for i, (name, (arms, rew)) in enumerate(runs.items()):
            off = -0.15 if i == 0 else 0.15
            t = np.arange(1, s + 1)
            a, r = arms[:s].numpy(), rew[:s].numpy()
            c = f"C{3 if i == 0 else 0}"
            self.ax_t.plot(t, a + off, "-", color=c, lw=0.8, alpha=0.6)
            self.ax_t.scatter(t, a + off, s=60, marker="o", edgecolors=c, facecolors=[c if x else "white" for x in r],
                              label=name, zorder=3)
            self.ax_r.plot(np.arange(0, s + 1), np.concatenate([[0], np.cumsum(r)]), "o-", color=c, ms=3,
                           label=f"{name}: {int(r.sum())}")
        self.ax_t.set_yticks(range(self.k), [f"arm {a}" for a in range(self.k)])
        self.ax_t.set_xlim(0.5, self.n + 0.5)
        self.ax_t.set_ylim(-0.6, self.k - 0.4)
        self.ax_t.set_xlabel("pull (= episode) of the trial")
        self.ax_t.set_title("arm pulled (filled: it paid 1)", fontsize=9)
        self.ax_t.legend(fontsize=7.5, loc="upper right")
        self.ax_r.set_xlim(0, self.n)
        self.ax_r.set_ylim(0, self.n)
        self.ax_r.set_xlabel("pull")
        self.ax_r.set_ylabel("total reward so far")
        self.ax_r.legend(fontsize=7.5, loc="upper left")
        self.title.set_text(f"bandit {self.values['bandit']} (best arm {best}, p = {float(probs[best]):.2f}) · "
                            f"after {s} of {self.n} pulls: RL² {int(runs['RL²'][1][:s].sum())}, "
                            f"UCB1 {int(runs['UCB1'][1][:s].sum())}")

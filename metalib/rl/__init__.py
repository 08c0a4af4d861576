"""Meta-reinforcement learning: environments (:mod:`.envs`), policy-gradient pieces (:mod:`.pg`),
MAML-RL (:mod:`.maml_rl`), RL² (:mod:`.rl2`) and the bandit baselines (:mod:`.bandits`).

Nothing is imported here: ``import metalib`` never loads this package, and ``import metalib.rl``
loads neither gymnasium nor MuJoCo. Import the submodule you need (``from metalib.rl import envs``);
:mod:`.envs` (and the modules that roll out in it) need ``gymnasium`` (requirements.txt). Shipped policies:
:mod:`.weights`.
"""

r"""How far a trained policy is from the optimum, exactly, on a tabular env (Discrete observations
with a known transition table: gymnasium's Taxi, FrozenLake, CliffWalking).

  .venv/bin/python benchmarks/tabular_optimum.py --logdirs=runs/taxi_seed0,runs/taxi_seed1

For each run: V* by value iteration on the env's table `P` (undiscounted, episodic), the exact
value of the run's deterministic policy (LOGDIR/saved_model through tfppo.load, one action per
state, masked with the env's own action_mask(state) where it has one) by iterative policy
evaluation, both averaged over the env's initial-state distribution, and the share of start
states from which the policy is optimal. No sampling: the numbers are exact for the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def transition_table(env) -> tuple[dict, int, int, np.ndarray]:
    """(P, states, actions, initial-state distribution) of a gymnasium toy-text env."""
    inner = env.unwrapped
    start = getattr(inner, "initial_state_distrib", None)
    if start is None:
        start = inner.isd
    start = np.asarray(start, np.float64)
    return inner.P, inner.observation_space.n, inner.action_space.n, start


def evaluate(P, states: int, policy: np.ndarray | None, actions: int, sweeps: int = 10_000) -> np.ndarray:
    """V* (policy None: value iteration) or V^policy, undiscounted; terminal transitions end."""
    value = np.zeros(states)
    for _ in range(sweeps):
        q = np.zeros((states, actions))
        for s in range(states):
            for a in range(actions) if policy is None else (int(policy[s]),):
                q[s, a] = sum(p * (r + (0.0 if done else value[s2])) for p, s2, r, done in P[s][a])
        new = q.max(axis=1) if policy is None else q[np.arange(states), policy]
        if np.max(np.abs(new - value)) < 1e-9:
            return new
        value = new
    return value  # a policy that never ends an episode from some state: its value there diverges


def policy_actions(logdir: str, env, states: int) -> np.ndarray:
    import tfppo

    policy = tfppo.load(logdir)
    inner = env.unwrapped
    masks = None
    if hasattr(inner, "action_mask"):
        masks = np.stack([np.asarray(inner.action_mask(s), bool) for s in range(states)])
    observations = np.arange(states)
    return np.asarray(policy.act(observations, mask=masks)), policy.metadata["env"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logdirs", required=True, help="comma-separated tfppo run directories")
    parser.add_argument("--out", default="", help="also write the rows as JSON to this file")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    import gymnasium as gym

    rows = []
    for logdir in args.logdirs.split(","):
        with open(os.path.join(logdir, "flags.json"), encoding="utf-8") as f:
            flags = json.load(f)
        env = gym.make(flags["env"], **json.loads(flags.get("env_kwargs") or "{}"))
        P, states, actions, start = transition_table(env)
        optimal = evaluate(P, states, None, actions)
        chosen, env_id = policy_actions(logdir, env, states)
        achieved = evaluate(P, states, chosen, actions, sweeps=2_000)
        starts = start > 0
        row = {
            "logdir": logdir,
            "env": env_id,
            "optimal_return": float(start @ optimal),
            "policy_return": float(start @ achieved),
            "optimal_from_starts": float(np.mean(np.isclose(achieved[starts], optimal[starts], atol=1e-6))),
        }
        rows.append(row)
        print(
            f"{logdir}: {env_id} optimal {row['optimal_return']:.3f}, policy {row['policy_return']:.3f}, "
            f"optimal from {100 * row['optimal_from_starts']:.1f}% of start states"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

r"""The continuous-control suite: one shared preset on six MuJoCo envs, every seed listed, beside
the published PPO returns at 1M steps.

  .venv/bin/python benchmarks/mujoco_suite.py --seeds=0,1,2,3,4 --out=docs/benchmarks/mujoco_suite
  .venv/bin/python benchmarks/mujoco_suite.py --envs=HalfCheetah-v5 --specific=HalfCheetah-v5:halfcheetah

Each (env, seed) runs `experiments/PRESET.flags --env=ENV --seed=S` (PRESET: --preset, default
`hopper`, CleanRL's MuJoCo defaults; no --env when ENV is the preset's own) through
benchmarks/presets.py: --parallel processes at a time (default 1), finished runs reused, interrupted runs
resumed by the same command. `--specific=ENV:PRESET[:FLAGS],...` adds an env-specific preset's
runs (FLAGS as in presets.py: `--flag=v+--flag2=w`); with `--envs=` (empty) only those run.

results.md and results.json: per env and preset, every seed's final last-100 training return
(and the deterministic evaluation), mean, std, worst; the published anchors at 1M steps and the
best of them; the mean and the worst seed as a normalised score, (score - random) / (best anchor
- random), with the random policy's mean return measured here (`--random_episodes`, seeded);
the two targets (mean >= the best anchor, i.e. normalised >= 1; no seed below 0.6); and over the
suite the interquartile mean (IQM, rliable's: the middle 50% of all seed-level normalised scores).

The anchors were not measured alike: CleanRL's is a training return (exploration noise in every
action), rl-zoo's and TF-Agents' are deterministic evaluations of the final policy (the zoo's
benchmark plays 150k steps; TF-Agents evaluates greedily). So each run's final policy is also
played deterministically for `--eval_episodes` (150; seeds 50000..50149, `python -m
tfppo.evaluate`, kept in the run's directory as final_eval_N_sS.json and reused), and a second
table scores every anchor in its own measure: the training return against CleanRL, the
evaluation against rl-zoo and TF-Agents, each with the same two targets. The first table, the
training return against the best anchor whatever its measure, is the stricter one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import presets  # noqa: E402

from tfppo import plot  # noqa: E402

ENVS = (
    "HalfCheetah-v5",
    "Hopper-v5",
    "Swimmer-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
    "Pusher-v5",
)

# Published PPO returns at 1M env steps (older env versions; v5 keeps their rewards and dynamics
# up to fixed bugs). CleanRL: openrlbenchmark `ppo_continuous_action.py` tag pr-424, MuJoCo v4,
# 3 seeds, mean training episodic return (docs/benchmark/ppo_continuous_action.md); it lists no
# 1M result for Swimmer, Reacher or InvertedDoublePendulum. rl-zoo: rl-baselines3-zoo
# benchmark.md, v3, one tuned run, deterministic evaluation. TF-Agents: tf_agents/examples/ppo
# README, v2, mean of 3 runs' evaluations, Schulman 2017's settings.
ANCHORS = {
    "HalfCheetah-v5": {"CleanRL": 1442.64, "rl-zoo": 5819.10, "TF-Agents": 4239.0},
    "Hopper-v5": {"CleanRL": 2382.86, "rl-zoo": 2410.43, "TF-Agents": 2530.0},
    "Swimmer-v5": {"rl-zoo": 281.56, "TF-Agents": 46.87},
    "InvertedDoublePendulum-v5": {"TF-Agents": 9353.0},
    "Reacher-v5": {"TF-Agents": -7.71},
    "Pusher-v5": {"CleanRL": -40.38},
}
# What each source's number is: "training" (the last episodes' return while training, actions
# sampled) or "evaluation" (the final policy's deterministic actions; greedy in TF-Agents).
MEASURES = {"CleanRL": "training", "rl-zoo": "evaluation", "TF-Agents": "evaluation"}
WORST_SHARE = 0.6  # issue 18: no seed below 60% of the best anchor (normalised)
EVAL_SEED = 50_000  # the final evaluation's first episode seed: not a training or eval seed


def best_anchor(env: str) -> tuple[str, float]:
    """(source, return) of the highest published return for env."""
    return max(ANCHORS[env].items(), key=lambda item: item[1])


def normalised(score: float, random_return: float, anchor: float) -> float:
    """0 for the random policy, 1 for the anchor: comparable across envs of any reward scale."""
    return (score - random_return) / (anchor - random_return)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's, with fractional end weights)."""
    values = np.sort(np.asarray(values, np.float64))
    n = len(values)
    if n == 0:
        return math.nan
    low, high = 0.25 * n, 0.75 * n
    # Each sorted value covers [i, i+1) of n; weigh it by its overlap with [n/4, 3n/4).
    weights = np.clip(np.minimum(np.arange(1, n + 1), high) - np.maximum(np.arange(n), low), 0, 1)
    return float(np.sum(weights * values) / np.sum(weights))


def random_return(env_id: str, episodes: int, seed: int = 0) -> float:
    """Mean undiscounted return of uniformly random actions over `episodes` seeded episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def final_evaluation(logdir: str, episodes: int, seed: int = EVAL_SEED) -> float:
    """Mean return of the run's final policy over `episodes` deterministic episodes (seeds from
    `seed`), played by `tfppo.evaluate` and kept in the run's directory (reused when present)."""
    path = os.path.join(logdir, f"final_eval_{episodes}_s{seed}.json")
    if not os.path.isfile(path):
        command = [sys.executable, "-m", "tfppo.evaluate", f"--model={logdir}", f"--episodes={episodes}"]
        command += [f"--seed={seed}", f"--returns_out={path}"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise presets.RunFailed(
                f"the final evaluation of {logdir} failed (exit {done.returncode}): {last}"
            )
    with open(path, encoding="utf-8") as f:
        return float(json.load(f)["mean"])


def by_anchor(env: str, finals: list, evals: list | None, random: float) -> dict:
    """Every anchor of env scored in its own measure: {source: measure, anchor, normalised mean and
    worst seed, met}; an evaluation anchor without evaluations (`--eval_episodes=0`) is left out."""
    out = {}
    for source, anchor in ANCHORS[env].items():
        measure = MEASURES[source]
        scores = finals if measure == "training" else evals
        if scores is None:
            continue
        normalised_scores = [normalised(x, random, anchor) for x in scores]
        mean, worst = float(np.mean(normalised_scores)), float(min(normalised_scores))
        out[source] = {
            "measure": measure,
            "anchor": anchor,
            "mean": float(np.mean(scores)),
            "worst": float(min(scores)),
            "mean_normalised": mean,
            "worst_normalised": worst,
            "met": bool(mean >= 1.0 and worst >= WORST_SHARE),
        }
    return out


def preset_env(preset: str) -> str:
    from tfppo.flags import config_from_flagfile

    return config_from_flagfile(os.path.join(REPO, "experiments", f"{preset}.flags")).env


def preset_text(preset: str, env: str) -> str:
    """presets.py's "NAME[:--env=ENV][+FLAGS]" for a preset "NAME[:FLAGS]" on ENV: no --env when ENV
    is the preset's own."""
    name, _, flags = preset.partition(":")
    extra = ([] if preset_env(name) == env else [f"--env={env}"]) + [f for f in flags.split("+") if f]
    return name + (":" + "+".join(extra) if extra else "")


def diagnostics(logdir: str) -> dict:
    """What may separate a bad seed from a good one, from the run's metrics.jsonl: the policy's
    sigma at the end and its lowest, the value loss's peak and end, the clip fraction and KL
    over the last tenth of the updates, the final explained variance."""
    records = [r for r in plot.read_metrics(logdir) if "value_loss" in r]
    tail = records[-max(len(records) // 10, 1) :]

    def values(key, chosen):
        found = [r[key] for r in chosen if r.get(key) is not None and math.isfinite(r[key])]
        return found or [math.nan]

    return {
        "sigma_end": values("sigma_mean", records[-1:])[0],
        "sigma_lowest": min(values("sigma_min", records)),
        "value_loss_peak": max(values("value_loss", records)),
        "value_loss_end": values("value_loss", records[-1:])[0],
        "clip_fraction_end": float(np.mean(values("clip_fraction", tail))),
        "kl_end": float(np.mean(values("kl", tail))),
        "explained_variance_end": values("explained_variance", records[-1:])[0],
    }


def summarise(rows: list, randoms: dict) -> list:
    """One dict per (env, preset): the seeds' scores, their statistics, anchors and targets."""
    groups = {}
    for r in rows:
        groups.setdefault((r["env"], r["preset"]), []).append(r)
    out = []
    for (env, preset), chosen in groups.items():
        finals = [r["final_last100"] for r in chosen]
        evals = [r.get("final_eval") for r in chosen]
        evals = evals if all(e is not None for e in evals) else None
        anchors = by_anchor(env, finals, evals, randoms[env])
        source, anchor = best_anchor(env)
        scores = [normalised(f, randoms[env], anchor) for f in finals]
        out.append(
            {
                "env": env,
                "preset": preset,
                "seeds": [r["seed"] for r in chosen],
                "final_last100": finals,
                "eval_return": [r["eval_return"] for r in chosen],
                "mean": float(np.mean(finals)),
                "std": float(np.std(finals)),
                "worst": float(min(finals)),
                "random_return": randoms[env],
                "anchors": ANCHORS[env],
                "best_anchor": [source, anchor],
                "normalised": scores,
                "mean_normalised": float(np.mean(scores)),
                "worst_normalised": float(min(scores)),
                "mean_target_met": bool(np.mean(scores) >= 1.0),
                "worst_target_met": bool(min(scores) >= WORST_SHARE),
                "final_eval": evals,
                "by_anchor": anchors,
                # Every anchor met in its own measure (None: an evaluation anchor not measured).
                "anchors_met": all(a["met"] for a in anchors.values())
                if len(anchors) == len(ANCHORS[env])
                else None,
            }
        )
    return out


def write_results(rows: list, summary: list, out: str, command: str, shared: str | None) -> str:
    def num(value):
        return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"

    lines = [
        f"Command: `{command}`",
        "",
        "Score: the final last-100 training return (the deterministic evaluation in brackets). "
        "Normalised: (score - random) / (best anchor - random); the targets are a mean >= 1 and "
        f"no seed below {WORST_SHARE}.",
        "",
        "| env | preset | seeds | score per seed (eval) | mean ± std | worst | random | anchors at 1M | mean, normalised | worst, normalised | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        per_seed = ", ".join(
            f"{num(f)} ({num(e)})" for f, e in zip(s["final_last100"], s["eval_return"], strict=True)
        )
        anchors = ", ".join(f"{k} {num(v)}" for k, v in s["anchors"].items())
        met = [
            "mean met" if s["mean_target_met"] else "mean **short**",
            "worst met" if s["worst_target_met"] else "worst **short**",
        ]
        lines.append(
            f"| {s['env']} | {s['preset']} | {len(s['seeds'])} | {per_seed} | {num(s['mean'])} ± {num(s['std'])} "
            f"| {num(s['worst'])} | {num(s['random_return'])} | {anchors} | {s['mean_normalised']:.2f} "
            f"| {s['worst_normalised']:.2f} | {', '.join(met)} |"
        )
    if any(s["final_eval"] for s in summary):
        episodes = next(r["eval_episodes"] for r in rows if r.get("final_eval") is not None)  # one per run
        lines += [
            "",
            "Each anchor in its own measure: CleanRL's against the training return above, rl-zoo's and "
            "TF-Agents' against the deterministic evaluation of the final policy (the mean of "
            f"{episodes} episodes per seed); normalised mean and worst seed, the same two targets.",
            "",
            "| env | preset | evaluation per seed | mean ± std | worst | each anchor: measure, normalised mean, worst | every anchor met |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in (s for s in summary if s["final_eval"]):
            evals = s["final_eval"]
            anchors = "; ".join(
                f"{source} {num(a['anchor'])} ({a['measure']}): {a['mean_normalised']:.2f}, "
                f"{a['worst_normalised']:.2f}" + ("" if a["met"] else " **short**")
                for source, a in s["by_anchor"].items()
            )
            lines.append(
                f"| {s['env']} | {s['preset']} | {', '.join(num(e) for e in evals)} "
                f"| {num(float(np.mean(evals)))} ± {num(float(np.std(evals)))} | {num(min(evals))} "
                f"| {anchors} | {'**met**' if s['anchors_met'] else '**short**'} |"
            )
    # shared: the shared preset's name, None when only env-specific presets ran (--envs=).
    scores = [x for s in summary if s["preset"] == shared for x in s["normalised"]] if shared else []
    if scores:
        lines += [
            "",
            f"IQM of the normalised score over every env and seed of `{shared}`: **{iqm(scores):.2f}** "
            f"({len(scores)} runs).",
        ]
    lines += [
        "",
        "Every seed, worst first within each env and preset, with what may separate the bad seeds: "
        "sigma (mean at the end, lowest of any dimension during the run), the value loss (peak, end), "
        "the clip fraction and KL over the last tenth of the updates, the final explained variance.",
        "",
        "| env | preset | seed | score | sigma end | sigma lowest | value loss peak | value loss end | clip fraction | KL | explained variance |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        chosen = sorted(
            (r for r in rows if r["env"] == s["env"] and r["preset"] == s["preset"]),
            key=lambda r: r["final_last100"],
        )
        for r in chosen:
            lines.append(
                f"| {r['env']} | {r['preset']} | {r['seed']} | {num(r['final_last100'])} "
                + "".join(
                    f"| {r.get(key, math.nan):.3g} "
                    for key in (
                        "sigma_end",
                        "sigma_lowest",
                        "value_loss_peak",
                        "value_loss_end",
                        "clip_fraction_end",
                        "kl_end",
                        "explained_variance_end",
                    )
                )
                + "|"
            )
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(
            {"command": command, "runs": rows, "summary": summary, "iqm": iqm(scores) if scores else None},
            f,
            indent=2,
        )
    return os.path.join(out, "results.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--preset", default="hopper", help="the shared preset (experiments/NAME.flags)")
    parser.add_argument(
        "--specific", default="", help="env-specific presets: ENV:PRESET[:--flag=v+--flag2=w],..."
    )
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--random_episodes", type=int, default=20)
    parser.add_argument(
        "--eval_episodes",
        type=int,
        default=150,
        help="deterministic episodes of each run's final policy, for the evaluation anchors (0: none)",
    )
    parser.add_argument("--out", default="docs/benchmarks/mujoco_suite")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked: exit 2 with one line naming a bad env, preset or seed list."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.env_list = [e for e in args.envs.split(",") if e]
    unknown = [e for e in args.env_list if e not in ANCHORS]
    if unknown or not (args.env_list or args.specific):
        parser.exit(
            2, f"error: --envs: {unknown[0] if unknown else '(none)'} is not one of {', '.join(ENVS)}\n"
        )
    presets.check_seeds_and_parallel(parser, args)
    if args.eval_episodes < 0:
        parser.exit(2, f"error: --eval_episodes={args.eval_episodes} must be >= 0 (0: no final evaluation)\n")
    args.specific_list = []
    for item in (i for i in args.specific.split(",") if i):
        env, _, preset = item.partition(":")
        if env not in ANCHORS or not preset:
            parser.exit(
                2,
                f"error: --specific: {item!r} must be ENV:PRESET[:FLAGS] with ENV one of {', '.join(ENVS)}\n",
            )
        args.specific_list.append((env, preset))
    for preset in [args.preset, *(p.partition(":")[0] for _, p in args.specific_list)]:
        if not os.path.isfile(os.path.join(REPO, "experiments", f"{preset}.flags")):
            parser.exit(2, f"error: no experiments/{preset}.flags\n")
    return args


def main() -> None:
    args = parse_args()
    out = os.path.join(REPO, args.out)
    os.makedirs(out, exist_ok=True)
    jobs = [(env, args.preset) for env in args.env_list] + args.specific_list

    def run(job):
        env, preset, seed = job
        row = presets.run_one(preset_text(preset, env), seed, out, [])
        final = final_evaluation(row["logdir"], args.eval_episodes) if args.eval_episodes else None
        extra = dict(final_eval=final, eval_episodes=args.eval_episodes, **diagnostics(row["logdir"]))
        return dict(row, env=env, preset=preset, **extra)

    runs = [(env, preset, seed) for env, preset in jobs for seed in args.seed_list]
    rows = presets.run_all(run, runs, args.parallel)
    randoms = {env: random_return(env, args.random_episodes) for env in dict.fromkeys(e for e, _ in jobs)}
    summary = summarise(rows, randoms)
    command = "python benchmarks/mujoco_suite.py " + " ".join(sys.argv[1:])
    shared = args.preset if args.env_list else None  # --envs= runs no shared preset
    print(open(write_results(rows, summary, out, command, shared)).read())
    for env, preset in dict.fromkeys(jobs):
        chosen = [r for r in rows if r["env"] == env and r["preset"] == preset]
        label = presets.parse_preset(preset_text(preset, env))[1]
        plot.plot_runs(
            [r["logdir"] for r in chosen],
            os.path.join(out, f"{label}.png"),
            title=f"{env}, {preset.replace('+', ' ')} ({len(chosen)} seeds)",
            labels=[f"{env} {preset.replace('+', ' ')}"] * len(chosen),
        )


if __name__ == "__main__":
    main()

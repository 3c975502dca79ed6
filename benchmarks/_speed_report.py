"""The speed benchmark's figures and its results.md / results.json (pure functions of the runs).

A row is one training run; rates are random-policy measurements ("source" says which venv's
gymnasium stepped them); the summary holds, per preset and library, the mean rate, the share
of the random-policy rate, tfppo / library per seed and the time to the return threshold.
"""

from __future__ import annotations

import json
import math
import os

from _speed_presets import PRESETS

RETURN_WINDOW = 100  # episodes in the "last 100" mean, as in every library's own logger
LABELS = {
    "sb3": "SB3 PPO",
    "sb3_gsde": "SB3 PPO + gSDE (zoo preset)",
    "sb3_recurrent": "sb3-contrib RecurrentPPO",
    "cleanrl": "CleanRL",
    "tfagents": "TF-Agents PPOClipAgent",
    "tfppo": "tfppo",
    "tfppo_envpool": "tfppo --vector_mode=envpool",
    "tfppo_bf16": "tfppo --compute_dtype=bfloat16",
}
LIBRARY_ORDER = (
    "sb3_gsde",
    "sb3",
    "sb3_recurrent",
    "cleanrl",
    "tfagents",
    "tfppo",
    "tfppo_envpool",
    "tfppo_bf16",
)
# tfppo's extra runs with one flag more (speed_vs_sb3.py --envpool, --bf16): library -> the key
# of their ratios against each peer.
VARIANTS = {"tfppo_envpool": "envpool", "tfppo_bf16": "bf16"}
# Which random-policy measurement a library is set against: CleanRL steps gymnasium 0.29 in
# its own venv; the others step gymnasium 1.x envs like tfppo's.
# tfppo's EnvPool run is set against EnvPool's own rate (speed_vs_sb3.py --envpool).
RATE_SOURCE = {"cleanrl": "cleanrl", "tfppo_envpool": "envpool"}
# Issue 19's targets: tfppo / peer speed (and time to threshold in the same proportion).
TARGETS = {
    ("sb3", "cartpole"): 5.0,
    ("sb3", "pendulum"): 5.0,
    ("sb3", "hopper"): 3.0,
    ("cleanrl", None): 2.0,
    ("tfagents", None): 3.0,
}
RANDOM_SHARE_TARGETS = {"hopper": 0.6}  # env-bound presets: tfppo's share of the random-policy rate


def finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def target(library: str, preset: str) -> float | None:
    return TARGETS.get((library, preset), TARGETS.get((library, None)))


def result_row(preset_name: str, env: str, library: str, seed: int, records: list, timing: dict) -> dict:
    """One run's figures from its per-update records (wall_s counted from construction start)."""
    if not records:
        raise ValueError(f"{library} seed {seed}: no update was recorded")
    threshold = PRESETS[preset_name].threshold
    reached = next(
        (
            r
            for r in records
            if r["episodes"] >= RETURN_WINDOW
            and finite(r["episode_return_mean"]) is not None
            and r["episode_return_mean"] >= threshold
        ),
        None,
    )
    steps, total_s = timing["steps"], timing["total_s"]
    return {
        "preset": preset_name,
        "env": env,
        "library": library,
        "seed": seed,
        "steps": steps,
        "episodes": records[-1]["episodes"],
        "construct_s": timing["construct_s"],
        "first_update_s": records[0]["wall_s"],
        "total_s": total_s,
        "sps": steps / total_s,
        "reached_step": reached["global_step"] if reached else None,
        "reached_s": reached["wall_s"] if reached else None,
        "final_last100": finite(records[-1]["episode_return_mean"]),
        **timing.get("extra", {}),
    }


def per_seed(preset: str, rows: list, library: str, key: str) -> dict:
    return {r["seed"]: r[key] for r in rows if r["preset"] == preset and r["library"] == library}


def ratios(preset: str, rows: list, baseline: str, ours: str = "tfppo") -> list:
    """ours' sps / baseline's for every seed where both ran (runs next to each other in time)."""
    tfppo, other = per_seed(preset, rows, ours, "sps"), per_seed(preset, rows, baseline, "sps")
    return [tfppo[s] / other[s] for s in sorted(tfppo) if s in other]


def time_ratios(preset: str, rows: list, baseline: str, ours: str = "tfppo") -> list:
    """baseline's time to threshold / ours', per seed where both ran; None where either missed."""
    tfppo, other = per_seed(preset, rows, ours, "reached_s"), per_seed(preset, rows, baseline, "reached_s")
    return [
        other[s] / tfppo[s] if other[s] is not None and tfppo[s] is not None else None
        for s in sorted(tfppo)
        if s in other
    ]


def random_rate(preset: str, library: str, rates: list) -> float | None:
    source = RATE_SOURCE.get(library, "main")
    return mean([r["rate"] for r in rates if r["preset"] == preset and r["source"] == source])


def library_summary(preset: str, library: str, rows: list, rates: list) -> dict:
    runs = [r for r in rows if r["preset"] == preset and r["library"] == library]
    sps = mean([r["sps"] for r in runs])
    rate = random_rate(preset, library, rates)
    entry = {
        "preset": preset,
        "env": runs[0]["env"] if runs else PRESETS[preset].env,
        "library": library,
        "runs": len(runs),
        "sps_mean": sps,
        "sps": [r["sps"] for r in runs],
        "random_rate": rate,
        "fraction_of_random": sps / rate if sps and rate else None,
        "reached": sum(r["reached_s"] is not None for r in runs),
        "reached_s": [r["reached_s"] for r in runs],
        "reached_step": [r["reached_step"] for r in runs],
        "final_last100": [r["final_last100"] for r in runs],
        "first_update_s": [r["first_update_s"] for r in runs],
    }
    if library != "tfppo":
        entry["tfppo_ratio"] = ratios(preset, rows, library)
        entry["tfppo_time_ratio"] = time_ratios(preset, rows, library)
    if not library.startswith("tfppo"):
        for ours, key in VARIANTS.items():
            entry[f"{key}_ratio"] = ratios(preset, rows, library, ours=ours)
            entry[f"{key}_time_ratio"] = time_ratios(preset, rows, library, ours=ours)
    return entry


def summarise(presets: list, rows: list, rates: list) -> list:
    summary = []
    for preset in presets:
        for library in LIBRARY_ORDER:
            entry = library_summary(preset, library, rows, rates)
            if entry["runs"]:
                summary.append(entry)
    return summary


def target_checks(summary: list) -> list:
    """One check per (preset, peer with a target) and per random-share target, with its verdict."""
    checks = []
    for ours, key in (("tfppo", "tfppo"), *VARIANTS.items()):
        for entry in summary:
            goal = target(entry["library"], entry["preset"])
            if goal is None or not entry.get(f"{key}_ratio"):
                continue
            speed = mean(entry[f"{key}_ratio"])
            times = entry[f"{key}_time_ratio"]
            reached = [t for t in times if t is not None]
            checks.append(
                {
                    "preset": entry["preset"],
                    "what": f"{LABELS[ours]} / {LABELS[entry['library']]}",
                    "target": goal,
                    "speed": speed,
                    "speed_min": min(entry[f"{key}_ratio"]),
                    "speed_met": speed >= goal,
                    "time": times,
                    "time_met": bool(reached) and mean(reached) >= goal if reached else None,
                }
            )
    for entry in summary:
        goal = RANDOM_SHARE_TARGETS.get(entry["preset"])
        ours = entry["library"]
        if ours.startswith("tfppo") and goal is not None and entry["fraction_of_random"] is not None:
            rate = "EnvPool's random-policy rate" if ours == "tfppo_envpool" else "the random-policy rate"
            checks.append(
                {
                    "preset": entry["preset"],
                    "what": f"{LABELS[ours]}'s share of {rate}",
                    "target": goal,
                    "speed": entry["fraction_of_random"],
                    "speed_min": None,
                    "speed_met": entry["fraction_of_random"] >= goal,
                    "time": [],
                    "time_met": None,
                }
            )
    return checks


def fmt(value, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def fmt_list(values: list, spec: str = ".0f", none: str = "not reached") -> str:
    return ", ".join(fmt(v, spec, none) for v in values)


def verdict(met) -> str:
    return {True: "met", False: "**missed**", None: "-"}[met]


def summary_line(entry: dict) -> str:
    ratio = entry.get("tfppo_ratio", [])
    ratio_cell = f"{fmt(mean(ratio), '.2f')} ({fmt_list(ratio, '.2f')})" if ratio else "-"
    cells = [
        LABELS[entry["library"]],
        entry["env"],
        f"{fmt(entry['sps_mean'])} ({fmt_list(entry['sps'])})",
        fmt(entry["fraction_of_random"], ".1%"),
        ratio_cell,
        f"{entry['reached']}/{entry['runs']}",
        fmt_list(entry["reached_s"]),
        fmt_list(entry["reached_step"]),
        fmt_list(entry["final_last100"], ".1f", "-"),
    ]
    return "| " + " | ".join(cells) + " |"


def rate_lines(preset: str, rates: list) -> list:
    lines = []
    for source, label in (
        ("main", "tfppo's venv (set against tfppo, SB3, TF-Agents)"),
        ("cleanrl", "CleanRL's venv"),
        ("envpool", "EnvPool in tfppo's venv (set against tfppo --vector_mode=envpool)"),
    ):
        found = [r for r in rates if r["preset"] == preset and r["source"] == source]
        if found:
            env, gym = found[0]["env"], found[0].get("gymnasium", "?")
            lines.append(
                f"- {label}: {env}, gymnasium {gym}: {fmt(mean([r['rate'] for r in found]))} env steps/s "
                f"(per seed: {fmt_list([r['rate'] for r in found])})."
            )
    return lines


def preset_section(name: str, summary: list, rates: list, rows: list) -> list:
    preset = PRESETS[name]
    steps = sorted({r["steps"] for r in rows if r["preset"] == name})
    threshold = f"{preset.threshold:g}"
    envs = f"{preset.num_envs} env{'s' if preset.num_envs != 1 else ''}"
    lines = [
        f"## {name}: {preset.env} (threshold {threshold}, {envs}, "
        f"{'/'.join(map(str, steps))} env steps per run)",
        "",
        f"Random-policy rate ({envs}, random actions; gymnasium's SyncVectorEnv unless the line names EnvPool):",
        "",
        *rate_lines(name, rates),
        "",
        "| library | env | env steps/s: mean (per seed) | share of random-policy rate "
        "| tfppo / library: mean (per seed) "
        f"| reached {threshold} | time to {threshold}, s | steps to {threshold} | final last-100 return |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [summary_line(entry) for entry in summary if entry["preset"] == name]
    return lines + [""]


def targets_section(summary: list) -> list:
    lines = [
        "## Issue 19's targets",
        "",
        "Speed: the mean over seeds of tfppo / library (lowest seed in brackets). Time to threshold: "
        "library's time / tfppo's, per seed (`-`: one of the two did not reach it); met when the mean "
        "over the seeds where both reached it is at least the target.",
        "",
        "| preset | ratio | target | speed: mean (min) | speed | time to threshold, per seed | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in target_checks(summary):
        share = "share" in c["what"]
        speed = (
            fmt(c["speed"], ".1%") if share else f"{fmt(c['speed'], '.2f')} ({fmt(c['speed_min'], '.2f')})"
        )
        goal = fmt(c["target"], ".0%") if share else f">= {c['target']:g}x"
        times = fmt_list(c["time"], ".2f", "-") if c["time"] else "-"
        lines.append(
            f"| {c['preset']} | {c['what']} | {goal} | {speed} | {verdict(c['speed_met'])} | {times} "
            f"| {verdict(c['time_met'])} |"
        )
    return lines + [""]


def runs_table(rows: list) -> list:
    lines = [
        "## Every run, in the order they ran",
        "",
        "| preset | library | env | seed | env steps | construction, s | first update done, s | total, s "
        "| env steps/s | reached at step | reached at, s | final last-100 return |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {LABELS[r['library']]} | {r['env']} | {r['seed']} | {r['steps']} "
            f"| {r['construct_s']:.2f} | {r['first_update_s']:.1f} | {r['total_s']:.1f} | {r['sps']:.0f} "
            f"| {fmt(r['reached_step'], 'd', 'not reached')} | {fmt(r['reached_s'], '.1f', '-')} "
            f"| {fmt(r['final_last100'], '.1f')} |"
        )
    return lines + [""]


def versions_lines(meta: dict, presets: list) -> list:
    flags = meta["tfppo_flags"]
    tfppo_flags = "; ".join(f"{p}: `{' '.join(flags[p])}`" for p in presets if p in flags) or "-"
    dirty = f" with uncommitted changes in {', '.join(meta['dirty'])}" if meta["dirty"] else ""
    lines = [
        f"- tfppo: commit {meta['commit']}{dirty}, run from `{meta['tfppo_dir']}`; tensorflow "
        f"{meta['tensorflow']}, tfppo's default `--intra_op_threads=1`. Flags: {tfppo_flags}."
    ]
    versions = meta.get("versions", {})
    if "sb3" in versions:
        v = versions["sb3"]
        contrib = f", sb3-contrib {v['sb3_contrib']}" if v.get("sb3_contrib") else ""
        lines.append(
            f"- SB3: stable-baselines3 {v['stable_baselines3']}{contrib}, torch {v['torch']}, {v['torch_threads']} "
            f"torch thread(s), gymnasium {v.get('gymnasium', '?')}; .venv-sb3."
        )
    if "cleanrl" in versions:
        v = versions["cleanrl"]
        lines.append(
            f"- CleanRL: scripts from `{meta['cleanrl_dir']}` (commit {meta['cleanrl_commit']}), unmodified; "
            f"torch {v['torch']}, {v['torch_threads']} torch thread(s), gymnasium {v['gymnasium']}; .venv-cleanrl."
        )
    if "tfagents" in versions:
        v = versions["tfagents"]
        lines.append(
            f"- TF-Agents: tf-agents {v['tf_agents']}, tensorflow {v['tensorflow']}, "
            f"intra-op threads {v['intra_op_threads']}, gymnasium {v['gymnasium']}; .venv-tfagents."
        )
    return lines


def header(meta: dict, presets: list) -> list:
    note = [meta["note"], ""] if meta.get("note") else []
    return [
        "# Training speed: tfppo vs Stable-Baselines3, CleanRL and TF-Agents PPO",
        "",
        f"Command: `{meta['command']}`",
        "",
        *note,
        f"- Run started {meta['started']} on {meta['cpus']} CPUs; load average {meta['load_start']:.2f} at the "
        f"start, {meta['load_end']:.2f} at the end (one training process of this benchmark at a time).",
        *versions_lines(meta, presets),
        "- Env steps/s = env steps / (construction of the vector env and the model + training); "
        "imports and end-of-run work (tfppo's checkpoint, SavedModel and plot) are not timed.",
        "- The libraries alternate seed by seed (random-policy rates, then SB3, CleanRL, TF-Agents, tfppo); "
        "tfppo / library is taken per seed between neighbouring runs; for SB3 against the plain Gaussian / "
        "categorical policy (no gSDE).",
        f"- Time and steps to threshold: the first update after which the mean undiscounted return of the last "
        f"{RETURN_WINDOW} training episodes was >= the threshold ({RETURN_WINDOW} episodes finished at least); "
        "time counted from construction start. Per-seed values in the order of --seeds "
        f"({', '.join(map(str, meta['seeds']))}).",
        "",
    ]


def write_outputs(out: str, meta: dict, presets: list, rows: list, rates: list) -> str:
    meta["load_end"] = os.getloadavg()[0]
    summary = summarise(presets, rows, rates)
    lines = header(meta, presets)
    for name in presets:
        if any(r["preset"] == name for r in rows):
            lines += preset_section(name, summary, rates, rows)
    lines += targets_section(summary)
    text = "\n".join(lines + runs_table(rows))
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    results = {
        "meta": meta,
        "summary": summary,
        "targets": target_checks(summary),
        "random_policy_rates": rates,
        "runs": rows,
    }
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return text

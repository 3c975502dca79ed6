"""SavedModel export: one artifact that serves actions with TensorFlow alone.

The exported module tracks only the variables (not the Keras models, whose own signatures
would need tfp and Keras at load time) and exposes tf.functions with fixed signatures
whose inputs and outputs are plain tensors (B free):

  action(observation[, mask])         -> {"action"}: the deterministic action, clipped to bounds
  sample(observation[, mask], seed)   -> {"action", "log_prob"}: a stochastic (raw) action
  distribution(observation[, mask])   -> {"logits"} and/or {"loc", "scale"} (masked logits)
  value(observation)                  -> {"value"}
  metadata()                          -> {"json"}: versions, env, spaces, flags, training figures

Actions: Discrete [B] int32, Box [B, A], MultiDiscrete [B, len(nvec)] int32; hybrid actions come
as {"action_type" [B] int32, "parameters" [B, P]} instead of "action". Observations are raw:
normalisation statistics are inside. A model trained with action masks requires `mask`
([B, W] bool; MultiDiscrete: the per-dimension masks side by side). Load and call it with
`tf.saved_model.load(path).action(observation)`; see the README.

Command line: `python -m tfppo.export --logdir=RUN [--out=DIR]` exports a run's latest
checkpoint (default out: RUN/saved_model_from_checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import tensorflow as tf

from tfppo import distributions, rundir
from tfppo.envs import EnvSpec


def metadata(config, spec: EnvSpec, env_record: dict, extra: dict) -> dict:
    """The model's metadata; env_record: the run's env.json (tfppo.envs.Probe.record)."""
    import gymnasium
    import tensorflow_probability as tfp

    import tfppo
    from tfppo.envs import spec_to_dict

    return {
        "tfppo_version": tfppo.__version__,
        "tensorflow_version": tf.__version__,
        "tensorflow_probability_version": tfp.__version__,
        "gymnasium_version": gymnasium.__version__,
        "env": config.env,
        "env_source": env_record.get("source"),
        "observation_space": env_record.get("observation_space", ""),
        "action_space": env_record.get("action_space", ""),
        "action_kind": spec.action.kind,
        "observation_shape": list(spec.observation_shape),
        "has_mask": spec.has_mask,
        "spec": spec_to_dict(spec),
        "flags": config.to_dict(),
        **extra,
    }


def named_action(spec, action, clip: bool) -> dict[str, tf.Tensor]:
    """The action as named tensors: {"action"}, or {"action_type", "parameters"} for hybrid.

    clip: Box actions and hybrid parameters clipped to their bounds (what the env receives).
    """
    if spec.kind == "hybrid":
        parameters = action[:, 1:]
        if clip:
            parameters = tf.clip_by_value(parameters, spec.low, spec.high)
        return {"action_type": tf.cast(action[:, 0], tf.int32), "parameters": parameters}
    if spec.kind == "box" and clip:
        action = tf.clip_by_value(action, spec.low, spec.high)
    return {"action": action}


class ExportedPolicy(tf.Module):
    def __init__(self, actor, critic, spec: EnvSpec, meta: dict, asset_dir: str, normalization=None):
        super().__init__(name="tfppo_policy")
        # Track the variables only; the Keras models stay in the closures below.
        self.actor_variables = list(actor.variables)
        self.critic_variables = list(critic.variables)
        self.metadata_json = tf.Variable(json.dumps(meta, sort_keys=True), trainable=False, name="metadata")
        path = os.path.join(asset_dir, "metadata.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        self.metadata_asset = tf.saved_model.Asset(path)
        action = spec.action
        observation = tf.TensorSpec((None,) + spec.observation_shape, tf.float32, name="observation")
        inputs = [observation]
        if spec.has_mask:
            inputs.append(tf.TensorSpec((None, action.mask_width), tf.bool, name="mask"))

        def normalize(observation):
            if normalization is None:
                return observation
            mean, scale, clip = (tf.constant(x) for x in normalization)
            return tf.clip_by_value((observation - mean) * scale, -clip, clip)

        def dist(observation, mask=None):
            return distributions.from_params(action, actor.params(normalize(observation)), mask)

        def action_fn(observation, mask=None):
            return named_action(action, distributions.mode(action, dist(observation, mask)), clip=True)

        def sample_fn(observation, mask=None, seed=None):
            distribution = dist(observation, mask)
            stateless_seed = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
            sampled = distribution.sample(seed=stateless_seed)
            return {**named_action(action, sampled, clip=False), "log_prob": distribution.log_prob(sampled)}

        def distribution_fn(observation, mask=None):
            params = dict(actor.params(normalize(observation)))
            if "logits" in params:
                params["logits"] = distributions.masked_logits(params["logits"], mask)
            return params

        seed_spec = tf.TensorSpec((), tf.int64, name="seed")
        if spec.has_mask:
            sample_wrapper = lambda observation, mask, seed: sample_fn(observation, mask, seed)
        else:
            sample_wrapper = lambda observation, seed: sample_fn(observation, None, seed)
        self.action = tf.function(action_fn, input_signature=inputs)
        self.sample = tf.function(sample_wrapper, input_signature=inputs + [seed_spec])
        self.distribution = tf.function(distribution_fn, input_signature=inputs)
        self.value = tf.function(
            lambda observation: {"value": critic(normalize(observation))}, input_signature=[observation]
        )
        self.metadata = tf.function(lambda: {"json": self.metadata_json.read_value()}, input_signature=[])


def export_agent(agent, path: str, meta: dict) -> str:
    """A SavedModel of an Agent's current policy (tfppo.agent), normalisation inside."""
    constants = agent.normalizers.observation_constants()
    return export(agent.actor, agent.critic, agent.spec, meta, path, constants)


def export(actor, critic, spec: EnvSpec, meta: dict, path: str, normalization=None) -> str:
    """Writes the SavedModel to `path` (a new directory) and returns it.

    normalization: None, or (mean [D], 1 / std [D], clip) applied to every raw observation.
    """
    if os.path.exists(path) and os.listdir(path):
        raise FileExistsError(f"{path} already exists; export writes only to a new directory")
    with tempfile.TemporaryDirectory() as asset_dir:
        module = ExportedPolicy(actor, critic, spec, meta, asset_dir, normalization)
        signatures = {
            name: getattr(module, name).get_concrete_function()
            for name in ("action", "sample", "distribution", "value", "metadata")
        }
        tf.saved_model.save(module, path, signatures=signatures)
    return path


def load_metadata(path: str) -> dict:
    with open(os.path.join(path, "assets", "metadata.json"), encoding="utf-8") as f:
        return json.load(f)


def export_checkpoint(logdir: str, out: str, checkpoint: str = "", torso=None, critic_torso=None) -> str:
    """Rebuilds a run's networks from its run directory (no env), restores a checkpoint and exports it."""
    from tfppo import agent as agent_lib  # Not at the top: agent -> networks -> ... is heavy.
    from tfppo.config import ConfigError

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConfigError(f"--out={out!r} already holds files; choose a new directory")
    agent, record = agent_lib.from_run(logdir, checkpoint, torso, critic_torso)
    state = agent.state
    figures = {
        "global_step": int(state.global_step.numpy()),
        "episodes": int(state.episodes.numpy()),
        "checkpoint": checkpoint or tf.train.latest_checkpoint(rundir.path(logdir, rundir.CHECKPOINT_DIR)),
    }
    return export_agent(agent, out, metadata(agent.config, agent.spec, record, figures))


def main(argv) -> int:
    from absl import flags

    from tfppo.config import ConfigError

    flag_values = flags.FlagValues()
    flags.DEFINE_string(
        "logdir", None, "A tfppo run directory (with flags.json and checkpoints/).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "checkpoint", "", "A checkpoint prefix; default the latest in LOGDIR.", flag_values=flag_values
    )
    flags.DEFINE_string(
        "out", "", "Where to write; default LOGDIR/saved_model_from_checkpoint.", flag_values=flag_values
    )
    try:
        flag_values(argv)
        if not flag_values.logdir:
            raise ConfigError("--logdir is required: the run to export")
        out = flag_values.out or os.path.join(flag_values.logdir, "saved_model_from_checkpoint")
        print(export_checkpoint(flag_values.logdir, out, flag_values.checkpoint))
    except (flags.Error, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    """The console script tfppo-export."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()

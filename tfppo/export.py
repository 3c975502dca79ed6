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

`serving_default` is `action` (TF Serving and `saved_model_cli run` call it by default). The
variables saved are the tf.Variables under the Keras ones, so the SavedModel also loads in the
session-style (TF1 / C++) loader TF Serving uses. A non-finite observation never gives a masked
or out-of-range discrete action (NaN logits rank below every valid one); a Box action computed
from NaN is NaN.

Command line: `python -m tfppo.export --logdir=RUN [--out=PATH] [--format=F]` exports a run's
latest checkpoint as a SavedModel (default), TF Serving's OUT/1/ layout, TFLite or ONNX
(tfppo.convert); `--saved_model=DIR` converts an existing export instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import tensorflow as tf

from tfppo import distributions, memory, networks
from tfppo.envs import EnvSpec
from tfppo.observations import ObservationSpec, export_inputs


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
        "inputs": export_inputs(spec.observation),
        "has_mask": spec.has_mask,
        # --recurrent: the signatures take "recurrent_state" [B, state_size] and return
        # "next_recurrent_state"; initial_state(batch_size) gives zeros (docs/recurrent.md).
        "recurrent": config.recurrent,
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
            parameters = clip_keeping_nan(parameters, spec.low, spec.high)
        return {"action_type": tf.cast(action[:, 0], tf.int32), "parameters": parameters}
    if spec.kind == "box" and clip:
        action = clip_keeping_nan(action, spec.low, spec.high)
    return {"action": action}


def clip_keeping_nan(values, low, high):
    """Clipped to [low, high], NaN kept NaN in every runtime (TFLite's min/max would drop it)."""
    return tf.where(tf.math.is_nan(values), values, tf.clip_by_value(values, low, high))


# Logits are kept inside [-LOGIT_LIMIT, LOGIT_LIMIT] and NaN becomes -LOGIT_LIMIT, above the
# masked logits' dtype.min: whatever the observation (NaN, inf), the mode and samples are valid.
LOGIT_LIMIT = 3e38


def finite_logits(logits: tf.Tensor) -> tf.Tensor:
    """[B, W] logits with NaN and +-inf replaced by finite values a mask still overrides."""
    limit = tf.constant(LOGIT_LIMIT, tf.float32)
    return tf.where(tf.math.is_nan(logits), -limit, tf.clip_by_value(logits, -limit, limit))


def deterministic_action(spec, params: dict, mask) -> tf.Tensor:
    """The mode from the actor's parameters in plain TensorFlow ops (no tfp: the TFLite and ONNX
    converters accept them). Same values as distributions.mode(spec, from_params(...)).

    Returns [B] int32 (discrete), [B, A] (box), [B, len(nvec)] int32, or [B, 1 + P] (hybrid).
    A mask row with no valid action fails the SavedModel's assertion; TFLite and ONNX drop
    assertions, so such a row gives action -1 there (never a masked action).
    """
    if spec.kind == "box":
        return params["loc"]
    if spec.kind == "binary":
        return tf.cast(params["logits"] > 0, tf.int32)
    logits = distributions.masked_logits(params["logits"], mask)
    # Slices, not tf.split: TFLite has no SplitV for bool masks.
    sizes = spec.nvec if spec.kind == "multi_discrete" else (spec.mask_width,)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    parts = [logits[:, start : start + size] for start, size in zip(starts, sizes, strict=True)]
    masks = [
        None if mask is None else mask[:, start : start + size]
        for start, size in zip(starts, sizes, strict=True)
    ]
    choices = []
    for part, part_mask in zip(parts, masks, strict=True):
        choice = tf.argmax(part, axis=-1, output_type=tf.int32)
        if part_mask is not None:
            choice = tf.where(tf.reduce_any(part_mask, axis=-1), choice, -1)
        choices.append(choice)
    if spec.kind == "discrete":
        return choices[0]
    if spec.kind == "multi_discrete":
        return tf.stack(choices, axis=-1)
    return tf.concat([tf.cast(choices[0], tf.float32)[:, None], params["loc"]], axis=-1)


def signature(body, specs: list[tf.TensorSpec]):
    """A tf.function of `body(*args)` whose parameters are named after `specs` (observation,
    mask, ... or a Dict observation's keys): callable positionally and by keyword, live and
    after tf.saved_model.load (which binds keywords by the traced function's parameter names)."""
    names = [spec.name for spec in specs]
    source = f"def named({', '.join(names)}):\n    return body({', '.join(names)})\n"
    scope = {"body": body}
    exec(source, scope)  # noqa: S102  (names are export_inputs' identifiers, checked there)
    return tf.function(scope["named"], input_signature=specs, autograph=False)


def pack_inputs(spec: ObservationSpec, parts) -> tf.Tensor:
    """The exported inputs (export_inputs: one tensor per component, in the env's own shape) as
    the stored observation the networks take (tfppo.observations.ObservationSpec.pack in-graph)."""
    dtype = tf.as_dtype(spec.storage_dtype)
    single = spec.single
    if single is not None and single.kind in ("vector", "image"):
        return tf.cast(parts[0], dtype)
    pieces = []
    for component, part in zip(spec.components, parts, strict=True):
        if component.kind in ("discrete", "multi_discrete") and any(component.start):
            part = part - tf.constant(component.start, part.dtype)
        pieces.append(tf.reshape(tf.cast(part, dtype), [tf.shape(part)[0], component.size]))
    return tf.concat(pieces, axis=-1)


def tf_variables(model) -> list[tf.Variable]:
    """The tf.Variables under a Keras 3 model's variables.

    Tracking the Keras wrappers saves each variable twice (the wrapper and its tf.Variable);
    tf.saved_model.load copes, the session-style loader TF Serving uses fails with "Could not
    find variable ...". The traced functions read the inner tf.Variables, so export those.
    """
    return [getattr(v, "_value", v) for v in model.variables]


class ExportedPolicy(tf.Module):
    def __init__(self, actor, critic, spec: EnvSpec, meta: dict, asset_dir: str, normalization=None):
        super().__init__(name="tfppo_policy")
        # Track the variables only; the Keras models stay in the closures below.
        self.actor_variables = tf_variables(actor)
        self.critic_variables = tf_variables(critic)
        self.state_size = state_size = sum(memory.state_sizes(actor, critic))
        meta = {**meta, "state_size": state_size}  # 0: feed-forward; else the width of "recurrent_state"
        self.metadata_json = tf.Variable(json.dumps(meta, sort_keys=True), trainable=False, name="metadata")
        path = os.path.join(asset_dir, "metadata.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        self.metadata_asset = tf.saved_model.Asset(path)
        action = spec.action
        observation_inputs = [
            tf.TensorSpec((None, *i["shape"]), tf.as_dtype(i["dtype"]), name=i["name"])
            for i in export_inputs(spec.observation)
        ]
        count = len(observation_inputs)
        inputs = list(observation_inputs)
        if spec.has_mask:
            inputs.append(tf.TensorSpec((None, action.mask_width), tf.bool, name="mask"))
        state_input = (
            [tf.TensorSpec((None, state_size), tf.float32, name="recurrent_state")] if state_size else []
        )
        inputs += state_input

        def split(args):
            """(the stored observation, the mask or None, the recurrent state or None) from a
            signature's positional inputs."""
            mask = args[count] if spec.has_mask else None
            state = args[len(inputs) - 1] if state_size else None
            return pack_inputs(spec.observation, args[:count]), mask, state

        def split_state(state):
            return memory.split_state(state, actor, critic) if state_size else (None, None)

        def next_state(observation, actor_state, critic_state):
            """The state after this observation: {"next_recurrent_state": [B, S]}, or {} for a feed-forward policy."""
            if not state_size:
                return {}
            parts = [actor_state]
            if memory.state_sizes(actor, critic)[1]:
                parts.append(critic.value_and_state(normalize(observation), critic_state)[1])
            return {"next_recurrent_state": tf.concat(parts, axis=-1)}

        def normalize(observation):
            if normalization is None:
                return observation
            mean, scale, clip = (tf.constant(x) for x in normalization)
            return tf.clip_by_value((observation - mean) * scale, -clip, clip)

        def checked(observation, mask):
            """The mask [B, W] with its batch size checked: a [2, W] mask must not broadcast over
            [1, D] observations. The assertion names the problem; the reshape fails the same call
            in TFLite and ONNX, whose converters drop assertions."""
            if mask is None:
                return None
            batch = tf.shape(observation)[0]
            tf.debugging.assert_equal(
                tf.shape(mask)[0], batch, message="mask and observation batch sizes differ"
            )
            return tf.reshape(mask, [batch, action.mask_width])

        def params(observation, state):
            """(the distribution's parameters, the next state: {} or {"next_recurrent_state": ...})."""
            actor_state, critic_state = split_state(state)
            params, actor_state = actor.params_and_state(normalize(observation), actor_state)
            params = dict(params)
            params.pop("latent", None)  # gSDE's features: the export samples the marginal Normal
            if "logits" in params:
                params["logits"] = finite_logits(params["logits"])
            return params, next_state(observation, actor_state, critic_state)

        def action_fn(observation, mask, state):
            mask = checked(observation, mask)
            values, following = params(observation, state)
            return {
                **named_action(action, deterministic_action(action, values, mask), clip=True),
                **following,
            }

        def sample_fn(observation, mask, state, seed):
            mask = checked(observation, mask)
            values, following = params(observation, state)
            distribution = distributions.from_params(action, values, mask)
            stateless_seed = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
            sampled = distribution.sample(seed=stateless_seed)
            log_prob = distribution.log_prob(sampled)
            return {**named_action(action, sampled, clip=False), "log_prob": log_prob, **following}

        def distribution_fn(observation, mask, state):
            mask = checked(observation, mask)
            values, following = params(observation, state)
            if "logits" in values:
                values["logits"] = distributions.masked_logits(values["logits"], mask)
            return {**values, **following}

        def value_fn(*args):
            observation = pack_inputs(spec.observation, args[:count])
            critic_state = split_state(args[count] if state_size else None)[1]
            return {"value": critic(normalize(observation), critic_state)}

        seed_spec = tf.TensorSpec((), tf.int64, name="seed")
        self.action = signature(lambda *args: action_fn(*split(args)), inputs)
        self.sample = signature(lambda *args: sample_fn(*split(args[:-1]), args[-1]), inputs + [seed_spec])
        self.distribution = signature(lambda *args: distribution_fn(*split(args)), inputs)
        self.value = signature(value_fn, observation_inputs + state_input)
        self.metadata = tf.function(lambda: {"json": self.metadata_json.read_value()}, input_signature=[])
        if state_size:  # the state of new episodes, for a batch of batch_size

            def initial_state(batch_size):
                return {"recurrent_state": tf.zeros(tf.stack([batch_size, state_size]), tf.float32)}

            self.initial_state = signature(initial_state, [tf.TensorSpec((), tf.int32, name="batch_size")])


SIGNATURES = ("action", "sample", "distribution", "value", "metadata")


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
    # --compute_dtype=bfloat16 trains the torso in bfloat16; the SavedModel computes in float32
    # (its weights are float32), so it runs on any CPU and converts to TFLite and ONNX.
    with tempfile.TemporaryDirectory() as asset_dir, networks.float32_compute(actor, critic):
        module = ExportedPolicy(actor, critic, spec, meta, asset_dir, normalization)
        names = SIGNATURES + (("initial_state",) if module.state_size else ())
        signatures = {name: getattr(module, name).get_concrete_function() for name in names}
        # TF Serving and `saved_model_cli run` without a signature name call serving_default.
        signatures["serving_default"] = signatures["action"]
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
    try:
        agent, record = agent_lib.from_run(logdir, checkpoint, torso, critic_torso)
    except ConfigError:
        raise
    except (tf.errors.OpError, ValueError, AssertionError) as error:  # A truncated or foreign checkpoint.
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ConfigError(
            f"checkpoint {checkpoint or 'latest in ' + logdir!r} cannot be restored: {first.strip()}"
        ) from None
    state = agent.state
    figures = {
        "global_step": int(state.global_step.numpy()),
        "episodes": int(state.episodes.numpy()),
        "checkpoint": agent.restored,
    }
    return export_agent(agent, out, metadata(agent.config, agent.spec, record, figures))


def main(argv) -> int:
    from absl import flags

    from tfppo import convert
    from tfppo.config import ConfigError

    flag_values = flags.FlagValues()
    convert.define_flags(flag_values)
    if any(arg in ("--help", "--helpfull", "-h") for arg in argv[1:]):
        print(f"usage: python -m tfppo.export --logdir=RUN | --saved_model=DIR [flags]\n{flag_values}")
        return 0
    try:
        flag_values(argv)
        print(convert.export_from_flags(flag_values))
    except (flags.Error, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    """The console script tfppo-export."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()

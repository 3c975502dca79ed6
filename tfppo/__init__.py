"""tfppo: Proximal Policy Optimization in TensorFlow 2 / Keras with tfp distributions.

The library's face, imported lazily so `import tfppo` (and every `--help`) stays instant:

    from tfppo import Config, train, load
    summary = train(Config(total_timesteps=50_000), env=MyEnv, logdir="runs/mine")
    policy = load("runs/mine")
    action = policy.act(observation)

See docs/api.md.
"""

import os

# TensorFlow's C++ start-up lines (cuInit on CPU-only machines, oneDNN notices) are noise for
# a user; set TF_CPP_MIN_LOG_LEVEL yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

# name -> (module, attribute): resolved on first use (PEP 562).
_EXPORTS = {
    "Config": ("tfppo.config", "Config"),
    "ConfigError": ("tfppo.config", "ConfigError"),
    "train": ("tfppo.api", "train"),
    "StopAtReturn": ("tfppo.api", "StopAtReturn"),
    "load": ("tfppo.saved_policy", "load"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfppo' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

"""tfppo: Proximal Policy Optimization in TensorFlow 2 / Keras with tfp distributions."""

import os

# TensorFlow's C++ start-up lines (cuInit on CPU-only machines, oneDNN notices) are noise for
# a user; set TF_CPP_MIN_LOG_LEVEL yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

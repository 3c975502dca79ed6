"""Every flagfile in experiments/ runs; the example envs learn beyond random play (tiny budgets)."""

import dataclasses
import glob
import os

import pytest
import tensorflow as tf
from absl.testing import parameterized

from tests.helpers import REPO, make_tempdir
from tfppo import trainer
from tfppo.flags import config_from_flagfile

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "experiments", "*.flags")))
# CleanRL's Atari presets: one update of 8 x 128 frames costs ~10-20 s on a 2-core CPU (the
# Nature CNN's 16 minibatch steps), so the default run cuts their batch; `-m slow` runs them whole.
HEAVY = tuple(path for path in FLAGFILES if os.path.basename(path).startswith("atari_"))


def tempdir(test):
    return os.path.join(make_tempdir(test), "run")


class PresetTest(tf.test.TestCase, parameterized.TestCase):
    def test_there_are_presets(self):
        self.assertGreaterEqual(len(FLAGFILES), 10)

    @parameterized.named_parameters((os.path.basename(path)[: -len(".flags")], path) for path in FLAGFILES)
    def test_preset_runs_one_update(self, path):
        config = config_from_flagfile(path)
        if path in HEAVY:  # the flags and networks as they are, a smaller batch
            config = dataclasses.replace(config, num_envs=2, num_steps=32, num_minibatches=1)
        self.run_one_update(config)

    # The mark under the parameterisation: absl's generated cases copy it (above, they did not).
    @parameterized.named_parameters((os.path.basename(path)[: -len(".flags")], path) for path in HEAVY)
    @pytest.mark.slow
    def test_heavy_preset_runs_one_whole_update(self, path):
        self.run_one_update(config_from_flagfile(path))

    def test_derived_presets_are_their_base_preset_with_exactly_these_flags(self):
        # docs/mujoco.md reports swimmer_gsde's, the halfcheetah_sb3 presets' and
        # inverted_double_pendulum_kl's seeds (docs/recurrent.md pendulum_novel_lstm_gsde's,
        # docs/action_spaces.md pendulum_gsde_tuned's) from runs of the base flagfile with these flags.
        gsde = {"sigma": "gsde", "sde_sample_freq": 4, "gsde_full_std": True, "sigma_min": 1e-6}
        sb3 = {"joint_grad_norm": True, "vf_coef": 0.58096, "dense_init": "torch"}
        kl = {"target_kl": 0.03, "actor_lr": 4e-5, "critic_lr": 4e-5, "anneal_lr": True}
        idp = {
            "env": "InvertedDoublePendulum-v5",
            "target_kl": 0.03,
            "sigma": "state_dependent",
            "num_envs": 4,
            "norm_obs": False,
            "gamma": 0.995,
        }
        tuned = {
            "num_steps": 512,
            "actor_epochs": 15,
            "critic_epochs": 15,
            "sigma_init": 0.5,
            "clip_epsilon": 0.1,
            "actor_lr": 7e-4,
            "critic_lr": 7e-4,
        }
        for preset, base, flags in (
            ("swimmer_gsde", "swimmer", gsde),
            ("pendulum_gsde_tuned", "pendulum_gsde", tuned),
            ("pendulum_gsde", "pendulum", gsde),
            ("pendulum_novel_lstm_gsde", "pendulum_novel_lstm", gsde),
            ("halfcheetah_sb3", "halfcheetah", sb3),
            ("halfcheetah_sb3_kl", "halfcheetah_sb3", kl),
            ("inverted_double_pendulum_kl", "hopper", idp),
        ):
            expected = config_from_flagfile(os.path.join(REPO, "experiments", f"{base}.flags"), **flags)
            got = config_from_flagfile(os.path.join(REPO, "experiments", f"{preset}.flags"))
            self.assertEqual(got, expected, msg=preset)

    def run_one_update(self, config):
        one_update = dataclasses.replace(
            config, total_timesteps=config.batch_size, max_episodes=0, eval_episodes=0
        )
        summary = trainer.train(one_update, tempdir(self))
        self.assertEqual(summary["global_step"], config.batch_size)
        self.assertEqual(summary["updates"], 1)


class ExampleEnvLearningTest(tf.test.TestCase):
    """Short runs; random play scores ~0.26 (masked grid), ~34 (multi-discrete), 0% success (hybrid)."""

    def learn(self, name, **overrides):
        config = config_from_flagfile(
            os.path.join(REPO, "experiments", f"{name}.flags"), eval_episodes=0, **overrides
        )
        return trainer.train(config, tempdir(self))

    def test_masked_grid(self):
        self.assertGreater(self.learn("masked_grid", total_timesteps=16_384)["episode_return_mean"], 0.45)

    def test_masked_multidiscrete(self):
        self.assertGreater(
            self.learn("masked_multidiscrete", total_timesteps=16_384)["episode_return_mean"], 40.0
        )

    def test_hybrid_moving(self):
        self.assertGreater(self.learn("hybrid_moving", total_timesteps=49_152)["success_rate"], 0.6)


if __name__ == "__main__":
    tf.test.main()

"""A module that raises on import: `--env=tests.broken_env_module:Any-v0` must fail in one line."""

raise RuntimeError("this env module is broken on purpose")

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase inherits a `test_session` context manager that pytest collects and skips.
    items[:] = [item for item in items if item.name != "test_session"]

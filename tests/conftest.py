"""Test setup: 8 simulated CPU devices (set before jax is imported anywhere) and a prepared embedded dataset."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory) -> str:
    """A TFDS data_dir holding the prepared embedded digits (built once per test session / xdist worker)."""
    from convnets.data import pipeline
    from experiments import quickstart

    data_dir = str(tmp_path_factory.mktemp('tfds'))
    config = quickstart.get_config()
    config.data.data_dir = data_dir
    pipeline.get_builder(config.data)
    return data_dir

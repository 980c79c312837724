"""Test setup: 8 simulated CPU devices (set before jax is imported anywhere) and a prepared embedded dataset."""

import os
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# JAX's persistent compilation cache, shared by xdist workers and the CLI subprocesses of the tests: most tests
# compile the same few tiny programs, and compilation dominates their run time. Cached executables are the
# ones a fresh compile would produce, so results (bitwise determinism included) are unaffected.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(tempfile.gettempdir(), 'convnets-tests-jax-cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

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


@pytest.fixture(scope='session')
def imagenet_dir(tmp_path_factory) -> tuple[str, str]:
    """(data_dir, manual_dir) of a tiny ImageNet prepared by TFDS's real imagenet2012 builder from fake tars."""
    from ml_collections import ConfigDict

    from convnets.data import pipeline
    from tests import fake_imagenet

    root = tmp_path_factory.mktemp('imagenet')
    data_dir, manual_dir = str(root / 'tfds'), str(root / 'manual')
    fake_imagenet.write_manual_dir(manual_dir)
    pipeline.get_builder(ConfigDict({'name': 'imagenet2012', 'data_dir': data_dir, 'manual_dir': manual_dir,
                                     'download': True}))
    return data_dir, manual_dir


@pytest.fixture(scope='session')
def voc_dir(tmp_path_factory) -> tuple[str, str]:
    """(data_dir, manual_dir) of a tiny VOC 2007 prepared by TFDS's real voc builder from fake official tars."""
    from ml_collections import ConfigDict

    from convnets.data import pipeline
    from tests import fake_voc

    root = tmp_path_factory.mktemp('voc')
    data_dir, manual_dir = str(root / 'tfds'), str(root / 'manual')
    fake_voc.write_manual_dir(manual_dir)
    with fake_voc.registered(manual_dir):
        pipeline.get_builder(ConfigDict({'name': 'voc/2007', 'data_dir': data_dir, 'manual_dir': manual_dir,
                                         'download': True}))
    return data_dir, manual_dir


@pytest.fixture(scope='session')
def scenes_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with the first 32 scenes of each split of the embedded detection dataset, prepared by its
    real builder (the whole dataset takes ~8 s; the tests need a few batches)."""
    import tensorflow_datasets as tfds

    from convnets.data import digit_scenes

    data_dir = str(tmp_path_factory.mktemp('tfds_scenes'))
    config = tfds.download.DownloadConfig(max_examples_per_split=32)
    digit_scenes.ConvnetsDigitScenes(data_dir=data_dir).download_and_prepare(download_config=config)
    return data_dir


@pytest.fixture(scope='session')
def voc_proposals(voc_dir, tmp_path_factory) -> str:
    """A selective search proposal cache (convnets.data.make_proposals) of the fake VOC 2007's trainval and test
    (sides >= 4 px: the fake images are 40-72 px)."""
    from convnets.data import make_proposals

    out = str(tmp_path_factory.mktemp('voc_proposals'))
    for split in ('train+validation', 'test'):
        make_proposals.run_selective_search('voc/2007', split, out, data_dir=voc_dir[0], manual_dir=voc_dir[1],
                                            min_side=4)
    return out


@pytest.fixture(scope='session')
def voc0712_dir(tmp_path_factory) -> tuple[str, str, str]:
    """(data_dir, manual_dir, proposals_dir) of the 07+12 union `convnets_voc0712` prepared from fake official tars
    (VOC 2007 trainval and test, VOC 2012 trainval), with proposal caches of its two splits."""
    from ml_collections import ConfigDict

    from convnets.data import make_proposals, pipeline
    from tests import fake_voc

    root = tmp_path_factory.mktemp('voc0712')
    data_dir, manual_dir, out = str(root / 'tfds'), str(root / 'manual'), str(root / 'proposals')
    fake_voc.write_manual_dir(manual_dir)
    fake_voc.write_manual_dir(manual_dir, year='2012')
    with fake_voc.registered(manual_dir):
        pipeline.get_builder(ConfigDict({'name': 'convnets_voc0712', 'data_dir': data_dir, 'manual_dir': manual_dir,
                                         'download': True}))
    for split in ('trainval', 'test'):
        make_proposals.run_selective_search('convnets_voc0712', split, out, data_dir=data_dir, min_side=4)
    return data_dir, manual_dir, out


@pytest.fixture(scope='session')
def moving_digits_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with the first 16 clips of each split of the embedded video dataset `convnets_moving_digits`,
    prepared by its real builder (the whole dataset takes ~3 s; the tests need a few batches)."""
    import tensorflow_datasets as tfds

    from convnets.data import moving_digits

    data_dir = str(tmp_path_factory.mktemp('tfds_moving_digits'))
    config = tfds.download.DownloadConfig(max_examples_per_split=16)
    moving_digits.ConvnetsMovingDigits(data_dir=data_dir).download_and_prepare(download_config=config)
    return data_dir


@pytest.fixture(scope='session')
def ucf101_dir(tmp_path_factory) -> str:
    """A TFDS data_dir holding a fake `ucf101/ucf101_1` written by TFDS's own ucf101 builder (tests/fake_ucf101.py:
    12 train and 6 test videos of 16-40 frames at 30x40)."""
    from tests import fake_ucf101

    return fake_ucf101.prepare(str(tmp_path_factory.mktemp('tfds_ucf101')))

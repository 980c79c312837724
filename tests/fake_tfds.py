"""Fake copies of TFDS datasets prepared the TFDS way: the dataset's own registered builder (its features, splits,
configs and version) writes a few random examples (TFDS's RandomFakeGenerator, which follows the features: image
sizes, label ranges) instead of downloading. Any process then finds the dataset prepared under the data_dir, as
after `tfds build NAME`, so `python -m convnets.main --config.data.data_dir=DIR` runs on it unchanged."""

from __future__ import annotations

import types

import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking


def prepare(name: str, data_dir: str, sizes: dict[str, int]) -> str:
    """Prepares `name` (e.g. 'celeb_a', 'lsun/bedroom') in `data_dir` with `sizes[split]` random examples per split;
    returns `data_dir`."""
    real = tfds.builder(name, data_dir=data_dir)
    cls = type(real)

    def split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in sizes}

    def generate_examples(self, split):
        fake = mocking.RandomFakeGenerator(self.info.features, num_examples=sizes[split],
                                           seed=sorted(sizes).index(split))
        yield from enumerate(fake)

    def body(namespace):
        namespace.update(name=cls.name, _split_generators=split_generators, _generate_examples=generate_examples)

    fake_cls = types.new_class(f'Fake{cls.__name__}', (cls,), {'skip_registration': True}, body)
    config = {'config': real.builder_config.name} if real.builder_config else {}
    fake_cls(data_dir=data_dir, **config).download_and_prepare()
    return data_dir

"""Input-pipeline benchmark: images/s (total and per core) of each ImageNet preprocessing chain, fused decode on/off.

  python benchmarks/input_pipeline.py [--chains=googlenet,resnet,...] [--images=256] [--threads=1]
      [--source=tfds,memory] [--seconds=4] [--batch=32] [--tiny]

Chains are the specs the experiment files spell (``data.train_preprocess`` / ``data.eval_preprocess`` of
experiments/alexnet.py, vgg16.py (scale jitter 256-512), googlenet.py and resnet50.py). GoogLeNet's photometric
distortions and mean subtraction run on the devices (``data.device_preprocess``): 'googlenet' is the host part,
'googlenet_all_host' the whole chain on the host, and 'googlenet_device' the device ops' images/s on JAX's default
device (batches of 224x224 already there). Plus 'decode' (the full
JPEG decode alone, then a 32x32 centre crop so that the batches have one shape, for reference). The JPEGs are
synthetic but ILSVRC-like: ImageNet's common sizes (500x375, 375x500, 500x333, 400x500, ... and some larger),
smooth colour fields with texture, 4:2:0 at quality 90, about 110 KB each (the ILSVRC-2012 train average); their
mean size is printed.

Sources:
  tfds    the real path: the JPEGs are written as the ILSVRC-2012 tars, prepared by TFDS's imagenet2012 builder in
          a temporary directory, and read by ``convnets.data.pipeline.train_batches`` (record reading, shuffle
          buffer, TFDS parsing, preprocessing, batching), the chain under test as ``data.train_preprocess``.
  memory  the chain alone: encoded JPEGs held in memory, mapped by a tf.data pipeline with the same options.
Each figure is measured with a private tf.data pool of ``--threads`` threads (``data.threads``); per core =
images/s / threads (``--threads=0``: tf.data's shared pool, divided by the machine's cores), and per CPU-s =
images / CPU seconds of the process (all its threads), which stays the per-core rate on a loaded machine.
'fused' runs with ``data.fuse_decode=True`` (the default; only specs starting with ``decode|inception_crop``
change), 'unfused' with False. ``--tiny`` is a seconds-long smoke run (few small images, short timings) for tests.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app, flags, logging
from ml_collections import ConfigDict

from convnets.data import ops, pipeline

FLAGS = flags.FLAGS
flags.DEFINE_list('chains', ['all'], "Chains to measure ('all', or names printed by --list).")
flags.DEFINE_integer('images', 256, 'Distinct synthetic JPEGs (cycled through while measuring).')
flags.DEFINE_integer('threads', 1, 'tf.data private thread pool size (0: tf.data default, all cores).')
flags.DEFINE_list('source', ['tfds', 'memory'], "'tfds' (the real pipeline over a prepared dataset), 'memory'.")
flags.DEFINE_float('seconds', 4.0, 'Measuring time per figure (after a warm-up).')
flags.DEFINE_integer('batch', 32, 'Batch size of the measured pipeline.')
flags.DEFINE_bool('tiny', False, 'Smoke run: 8 small JPEGs, 0.2 s per figure.')
flags.DEFINE_bool('list', False, 'Print the chains and their specs, then exit.')

# ImageNet's most common (height, width): about 3/4 of ILSVRC-2012 has a 500-pixel long side.
SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (400, 500), (500, 400), (281, 500), (500, 500),
         (480, 640), (768, 1024))
SYNSETS = ('n01440764', 'n01443537', 'n01484850', 'n01491361')  # First ImageNet classes (TFDS checks the names).


def _recipes() -> dict:
    from experiments import alexnet, googlenet, resnet50, vgg16

    return {name: module.get_config() for name, module in
            (('alexnet', alexnet), ('vgg', vgg16), ('googlenet', googlenet), ('resnet', resnet50))}


def chains() -> dict[str, str]:
    """Name -> preprocessing spec, as the experiment files spell them; for a recipe with device ops
    (``data.device_preprocess``), '<name>' is its host part and '<name>_all_host' the whole chain on the host."""
    # The full decode alone (a 32x32 crop of it makes batches of one shape), for reference.
    out = {'decode': 'decode(3)|center_crop(32)'}
    for name, config in _recipes().items():
        out[name] = config.data.train_preprocess
        if config.data.device_preprocess:
            out[f'{name}_all_host'] = f'{config.data.train_preprocess}|{config.data.device_preprocess}'
        out[f'{name}_eval'] = config.data.eval_preprocess
    return out


def device_chains() -> dict[str, str]:
    """Recipe name -> its ``data.device_preprocess`` (the recipes that have one)."""
    return {name: c.data.device_preprocess for name, c in _recipes().items() if c.data.device_preprocess}


def device_rate(spec: str, batch: int, size: int, seconds: float) -> float:
    """Images/s of the device ops ``spec`` on a [batch, size, size, 3] batch on JAX's default device (jitted)."""
    import jax

    from convnets.data import device_ops

    fn = jax.jit(device_ops.batch_fn(spec))
    rng = np.random.default_rng(0)
    batch_ = {'image': jax.device_put(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)),
              'device_seed': jax.device_put(rng.integers(0, 2**32, (batch, 2), dtype=np.uint32))}
    jax.block_until_ready(fn(batch_))
    count, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(batch_))
        count += batch
        if time.perf_counter() - start >= seconds and count >= 3 * batch:
            return count / (time.perf_counter() - start)


def make_jpegs(n: int, seed: int = 0, tiny: bool = False) -> list[bytes]:
    """``n`` ILSVRC-like JPEGs: a smooth random colour field plus band-limited texture, quality 90, 4:2:0."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (int(rng.integers(40, 90)), int(rng.integers(40, 90))) if tiny else SIZES[i % len(SIZES)]
        field = tf.image.resize(rng.uniform(0, 255, (4, 5, 3)), (h, w), 'bicubic')
        # Texture at half resolution (band-limited, like photographs), scaled to give ~110 KB at 500x375.
        texture = tf.image.resize(rng.normal(0, 30, ((h + 1) // 2, (w + 1) // 2, 3)), (h, w))
        pixels = tf.cast(tf.clip_by_value(field + texture, 0, 255), tf.uint8)
        out.append(tf.io.encode_jpeg(pixels, quality=90).numpy())
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def prepare_imagenet(root: str, jpegs: list[bytes]) -> ConfigDict:
    """Writes the JPEGs as ILSVRC2012_img_train.tar (+ a small val tar), prepares them with TFDS; the data config."""
    manual = os.path.join(root, 'manual')
    os.makedirs(manual)
    with tarfile.open(os.path.join(manual, 'ILSVRC2012_img_train.tar'), 'w') as train:
        for c, synset in enumerate(SYNSETS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode='w') as class_tar:
                for i, data in enumerate(jpegs[c::len(SYNSETS)]):
                    _add(class_tar, f'{synset}_{i}.JPEG', data)
            _add(train, f'{synset}.tar', inner.getvalue())
    with tarfile.open(os.path.join(manual, 'ILSVRC2012_img_val.tar'), 'w') as val:
        for i, data in enumerate(jpegs[:4]):
            _add(val, f'ILSVRC2012_val_{i + 1:08d}.JPEG', data)
    from experiments import imagenet

    data = imagenet.get_config().data
    data.data_dir, data.manual_dir = os.path.join(root, 'tfds'), manual
    pipeline.get_builder(data)  # Prepares the dataset.
    return data


def _rate(batches: Iterator, batch: int, seconds: float) -> tuple[float, float]:
    """(images/s, images per CPU-second of this process) of ``batches`` over about ``seconds``, after two warm-up
    batches. The second is the per-core rate whatever else loads the machine (the CPU time of every thread of the
    process: tf.data's and the Python loop's)."""
    for _ in range(2):
        next(batches)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        next(batches)
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 3 * batch:
            return count / elapsed, count / max(time.process_time() - cpu, 1e-9)


def _data(base: ConfigDict, spec: str, fused: bool, threads: int) -> ConfigDict:
    data = ConfigDict(base.to_dict())
    data.train_preprocess, data.threads, data.fuse_decode = spec, threads, fused
    return data


def tfds_batches(base: ConfigDict, spec: str, fused: bool, threads: int, batch: int) -> Iterator:
    """The real training stream (``pipeline.train_batches``) with ``spec`` as its train preprocessing."""
    return pipeline.train_batches(_data(base, spec, fused, threads), global_batch_size=batch, seed=0)


def memory_batches(jpegs: list[bytes], spec: str, fused: bool, threads: int, batch: int) -> Iterator:
    """The chain alone over in-memory JPEGs, decoded first as the pipeline does unless the spec fuses the decode."""
    from experiments import default

    chain = ops.parse(spec, fuse_decode=fused)
    decode = None if ops.fused_decodes(spec, fused) else ops.get('decode', 3)

    def fn(i: tf.Tensor, encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        seed = tf.stack([tf.constant(0, tf.int64), i])
        features = {'image': encoded, 'label': tf.constant(0)}
        if decode is not None:
            features = decode(features, seed)
        return {'image': tf.cast(chain(features, seed)['image'], tf.float32)}

    ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch, drop_remainder=True)
    options = pipeline.options(_data(default.get_config().data, spec, fused, threads))
    return ds.prefetch(2).with_options(options).as_numpy_iterator()


def _selected(names: list[str], known: dict[str, str]) -> dict[str, str]:
    if names == ['all']:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise app.UsageError(f'unknown chains {unknown}; choose from {", ".join(known)} or all')
    return {n: known[n] for n in names}


def run(selected: dict[str, str], sources: list[str], images: int, threads: int, seconds: float, batch: int,
        tiny: bool, echo: Callable[[str], None] = print) -> list[dict]:
    """Measures every (chain, source, fused) and prints one line each; returns the rows."""
    jpegs = make_jpegs(images, tiny=tiny)
    cores = threads or os.cpu_count()
    echo(f'{len(jpegs)} JPEGs, mean {np.mean([len(j) for j in jpegs]) / 1024:.0f} KB; tf.data threads: '
         f'{threads or "default"} (per core = images/s / {cores}; per CPU-s = images / CPU seconds the process '
         f'used, the per-core rate under any load); batch {batch}; {seconds:g} s per figure; load average '
         f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
    rows = []
    with tempfile.TemporaryDirectory() as root:
        base = None
        if 'tfds' in sources:
            t = time.perf_counter()
            base = prepare_imagenet(root, jpegs)
            echo(f'prepared the TFDS imagenet2012 train split ({len(jpegs)} images) in {time.perf_counter() - t:.1f} s')
        for name, spec in selected.items():
            variants = (True, False) if ops.fused_decodes(spec) else (True,)
            for source in sources:
                for fused in variants:
                    if source == 'tfds':
                        batches = tfds_batches(base, spec, fused, threads, batch)
                    else:
                        batches = memory_batches(jpegs, spec, fused, threads, batch)
                    rate, per_cpu_s = _rate(batches, batch, seconds)
                    label = ('fused' if fused else 'unfused') if len(variants) == 2 else 'no fusion'
                    rows.append({'chain': name, 'source': source, 'decode': label, 'images_s': rate,
                                 'per_core': rate / cores, 'per_cpu_s': per_cpu_s})
                    echo(f'{name:15s} {source:6s} {label:9s} {rate:8.1f} images/s {rate / cores:8.1f} per core '
                         f'{per_cpu_s:8.1f} per CPU-s')
    for name, spec in device_chains().items():
        if name in selected or f'{name}_all_host' in selected:
            import jax

            size = 32 if tiny else 224
            rate = device_rate(spec, batch, size, seconds)
            rows.append({'chain': f'{name}_device', 'source': jax.default_backend(), 'decode': 'jax',
                         'images_s': rate, 'per_core': None, 'per_cpu_s': None})
            echo(f'{name + "_device":15s} {jax.default_backend():6s} jax       {rate:8.1f} images/s of {size}x{size} '
                 f'on {jax.devices()[0].device_kind}: data.device_preprocess {spec!r}')
    echo('specs: ' + '; '.join(f'{n}: {s}' for n, s in selected.items()))
    return rows


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TFDS logs every dataset it builds: one per figure.
    tfds.disable_progress_bar()
    known = chains()
    if FLAGS.list:
        for name, spec in known.items():
            print(f'{name:15s} {spec}')
        return
    sources = [s for s in FLAGS.source if s]
    if not sources or set(sources) - {'tfds', 'memory'}:
        raise app.UsageError(f"--source must name 'tfds' and/or 'memory', got {FLAGS.source}")
    if FLAGS.images < (8 if FLAGS.tiny else FLAGS.batch):
        raise app.UsageError(f'--images={FLAGS.images} is fewer than a batch ({FLAGS.batch})')
    batch, seconds = (4, 0.2) if FLAGS.tiny else (FLAGS.batch, FLAGS.seconds)
    run(_selected(FLAGS.chains, known), sources, FLAGS.images, FLAGS.threads, seconds, batch, FLAGS.tiny)


if __name__ == '__main__':
    app.run(main)

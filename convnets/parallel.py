"""Devices, meshes and data-parallel execution: the only module that knows how work is spread over devices.

Main path: `jax.jit(jax.shard_map(step))` over a 1-D mesh with axis 'data' — the train state is replicated
(PartitionSpec()), each device sees its slice of the global batch (PartitionSpec('data')), and the state is donated.
Alternative: `jax.pmap` with the state broadcast in (in_axes=None) and out (out_axes=None), which must give the same
result (tests/test_parallel.py).

Gradient reduction differs between the two, and getting it wrong silently scales the gradient by the device count:
under shard_map with check_vma=True, a replicated (device-invariant) parameter used in a per-device computation is
implicitly `pvary`-ed, whose transpose is a `psum`; so the gradient of `pmean(local_loss)` is already the global-mean
gradient and must not be reduced again. Under pmap nothing is implicit: each device differentiates its local loss and
the gradients are `pmean`-ed explicitly. `LOSS_IS_GLOBAL` tells the step function which of the two it runs under.

Also here, because both must happen before anything touches a device or compiles: joining a multi-host job
(`initialize_distributed`) and turning on JAX's persistent compilation cache (`enable_compilation_cache`); and
moving batches onto the devices ahead of the step (`device_prefetch`).
"""

import collections
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = 'data'
KINDS = ('shard_map', 'pmap')
# Under shard_map the step differentiates the device-averaged loss; under pmap it averages local gradients.
LOSS_IS_GLOBAL = {'shard_map': True, 'pmap': False}

_distributed_initialized = False

CACHE_DIR_ENV = 'JAX_COMPILATION_CACHE_DIR'
# Cache every program that takes at least this long to compile: the train and eval steps of every model (LeNet-5's
# take ~0.1-0.3 s on a CPU, ResNet-50's ~10 s), not the many tiny eager ops (a few ms each, as fast to recompile as
# to read back). The environment variables JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS and
# JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES, when set, win over these.
CACHE_MIN_COMPILE_SECS = 0.05
CACHE_MIN_ENTRY_BYTES = 0


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-process (multi-host) job. The ONE place `jax.distributed.initialize` is called.

    Call before anything touches a device. Arguments fall back to the environment variables
    CONVNETS_COORDINATOR_ADDRESS, CONVNETS_NUM_PROCESSES and CONVNETS_PROCESS_ID; with none of them set, JAX
    auto-detects the cluster (Cloud TPU, SLURM, ...). On CPU, collectives across processes go through gloo.
    """
    global _distributed_initialized
    if _distributed_initialized:
        return
    env = os.environ
    coordinator_address = coordinator_address or env.get('CONVNETS_COORDINATOR_ADDRESS')
    if num_processes is None and env.get('CONVNETS_NUM_PROCESSES'):
        num_processes = int(env['CONVNETS_NUM_PROCESSES'])
    if process_id is None and env.get('CONVNETS_PROCESS_ID'):
        process_id = int(env['CONVNETS_PROCESS_ID'])
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    _distributed_initialized = True
    logging.info('jax.distributed: process %d of %d, %d local / %d global devices', jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def compilation_cache_dir(directory: str | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """Where `enable_compilation_cache(directory)` puts the cache (an absolute path), or None for no cache."""
    if directory is None:
        directory = environ.get(CACHE_DIR_ENV)
        if directory is None:
            base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
            directory = os.path.join(base, 'convnets', 'jax')
    return os.path.abspath(os.path.expanduser(directory)) if directory else None


def enable_compilation_cache(directory: str | None = None) -> str | None:
    """Turns JAX's persistent compilation cache on (or off); returns the directory used, None when off.

    `directory`: None -> $JAX_COMPILATION_CACHE_DIR if set (an empty value turns the cache off), else the
    per-user $XDG_CACHE_HOME/convnets/jax or ~/.cache/convnets/jax; '' -> off. A restart or a second run with the
    same shapes then reads its compiled programs back instead of compiling them again (a cached executable is the
    one a fresh compile would produce: results are unchanged). Call before the first compilation: JAX fixes the
    cache when it first compiles. Entries are never evicted (JAX evicts only with the `filelock` package and
    jax_compilation_cache_max_size); deleting the directory is always safe.
    """
    directory = compilation_cache_dir(directory)
    if directory is None:
        jax.config.update('jax_enable_compilation_cache', False)
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ValueError(f'Cannot create the compilation cache directory {directory} ({e.strerror}): pass a writable '
                         f'--compilation_cache_dir, or --nocompilation_cache to run without it.') from e
    jax.config.update('jax_enable_compilation_cache', True)
    jax.config.update('jax_compilation_cache_dir', directory)
    if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
        jax.config.update('jax_persistent_cache_min_compile_time_secs', CACHE_MIN_COMPILE_SECS)
    if 'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES' not in os.environ:
        jax.config.update('jax_persistent_cache_min_entry_size_bytes', CACHE_MIN_ENTRY_BYTES)
    logging.info('Persistent compilation cache: %s', directory)
    return directory


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
    """Raises a ValueError that says what to change when the batch cannot be split evenly."""
    n = mesh.devices.size
    if global_batch_size <= 0 or global_batch_size % n:
        lower = max(n, global_batch_size // n * n)
        raise ValueError(
            f'{what}={global_batch_size} is the GLOBAL batch and must be a positive multiple of the number of '
            f'devices ({n}). Use e.g. --config.{what}={lower} or {lower + n}.')


class Parallel:
    """Runs per-device step functions over a mesh, as shard_map (default) or pmap."""

    def __init__(self, mesh: Mesh, kind: str = 'shard_map'):
        if kind not in KINDS:
            raise ValueError(f"Unknown parallel={kind!r}; valid: {', '.join(KINDS)}.")
        self.mesh = mesh
        self.kind = kind
        self.loss_is_global = LOSS_IS_GLOBAL[kind]
        self._local_devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]

    def shard_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """This process's slice of the global batch -> what the compiled step takes.

        shard_map: one global `jax.Array` per field, split over the mesh. pmap: the local numpy arrays reshaped
        to [local devices, per-device batch, ...].
        """
        if self.kind == 'shard_map':
            sharding = NamedSharding(self.mesh, P(AXIS))
            return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
        n = len(self._local_devices)
        return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:]) for k, v in local_batch.items()}

    def put_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """`shard_batch`, with the transfer to the devices started now (asynchronously) under pmap too."""
        batch = self.shard_batch(local_batch)
        if self.kind == 'shard_map':
            return batch  # Already device arrays.
        # [local devices, per-device batch, ...], one row per device: what pmap splits its mapped axis into.
        sharding = NamedSharding(Mesh(np.array(self._local_devices), (AXIS,)), P(AXIS))
        return jax.device_put(batch, sharding)

    def device_batches(self, local_batches: Iterable[Mapping[str, np.ndarray]], prefetch: int,
                       transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                       ) -> Iterator[dict[str, Any]]:
        """The compiled step's batches, each put on the devices `prefetch` batches ahead of its step (0: when it
        is taken, as `shard_batch`), so that host-to-device transfers overlap the steps before it; `transform`
        (a jitted per-example function, e.g. `data.device_preprocess`) is dispatched on each batch once it is
        there."""
        if prefetch < 0:
            raise ValueError(f'data.device_prefetch={prefetch}: the number of batches put on the devices ahead of '
                             f'the step must be >= 0 (0: none).')
        place = self.put_batch if prefetch else self.shard_batch
        put = place if transform is None else (lambda b: transform(place(b)))
        return device_prefetch(local_batches, put, prefetch)

    def compile(self, fn: Callable, *, donate: bool = True) -> Callable:
        """`fn(state, batch) -> (state_or_other, metrics)`, written per device, run over the whole mesh.

        The state (first argument) and every output are replicated; the batch is split over devices.
        """
        if self.kind == 'shard_map':
            mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P())
            return jax.jit(mapped, donate_argnums=(0,) if donate else ())
        return jax.pmap(fn, axis_name=AXIS, in_axes=(None, 0), out_axes=None, devices=list(self.mesh.devices.flat))


_T = TypeVar('_T')


def device_prefetch(items: Iterable[Any], put: Callable[[Any], _T], depth: int) -> Iterator[_T]:
    """`put(item)` for each item, in order, with `depth` items put ahead of the one yielded.

    A queue in the caller's thread (no background thread: the order of reads, and so the data stream, stays that
    of the iterator). The iterator runs `depth` items ahead of the consumer; the consumer's position (e.g. the step
    a checkpoint records) is the number of items yielded, never the number read.
    """
    queue: collections.deque[_T] = collections.deque()
    for item in items:
        queue.append(put(item))
        if len(queue) > depth:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def compile_per_example(fn: Callable, mesh: Mesh) -> Callable:
    """`fn(state, batch) -> per-example outputs`, run over the mesh; the outputs stay split over the batch axis."""
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS)))


def gather_to_host(x: jax.Array) -> np.ndarray:
    """A batch-split output of `compile_per_example` as one numpy array holding every process's rows (in process
    order), on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

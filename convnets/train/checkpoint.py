"""Checkpoints in the workdir: orbax CheckpointManager with a save cadence, retention, integrity, resume, preemption.

Safety: orbax writes each checkpoint into a temporary directory and renames it only once every file is written
(on GCS, where rename is not atomic, a commit marker plays that role), so a run killed mid-save leaves at worst a
temporary directory that the next training start deletes; the last complete checkpoint stays the latest.

Each checkpoint carries a small JSON `meta` item: the architecture (the task and the config sections that fix the
state's shapes), the run-defining config (batch size, optimiser, data stream: see `convnets.tasks.base.Task`), the
step, a SHA-256 digest of every array of the saved state, the state's structure, the loop's bookkeeping (best
evaluation, reference metrics), and a digest of the meta item itself. Restoring verifies both digests: a
checkpoint whose files were damaged after the save (a flipped byte, a truncated file, missing metadata) is never
used. It is moved to `<workdir>/checkpoints_damaged/` with a warning naming the step and the reason, and the
newest intact checkpoint is restored instead; with none left, a `DamagedCheckpointError` says so.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

# orbax names a checkpoint in progress '<step>.orbax-checkpoint-tmp[-<timestamp>]' until it is complete.
TMP_MARKER = '.orbax-checkpoint-tmp'
DAMAGED_DIR = 'checkpoints_damaged'

# The state is replicated: one device writes each array whole. Orbax's default on CPU ("replica-parallel" saves)
# slices every array among its replicas with an eager program per (array shape, device): 22 XLA compilations at
# the first save of LeNet-5 on 2 devices (11 shapes), 8 per distinct shape of a model on 8 devices.
ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
                                        override=True)


class IncompatibleCheckpointError(ValueError):
    """The workdir holds checkpoints of a different task, model or run than the config asks for."""


class DamagedCheckpointError(RuntimeError):
    """No intact checkpoint is left in the workdir."""


def state_digest(state: Any) -> str:
    """SHA-256 over every array of `state` (path, dtype, shape and bytes), identical on every process.

    Replicated multi-process arrays are read from this process's first shard, which holds the whole value.
    """
    h = hashlib.sha256()
    for path, value in jax.tree_util.tree_flatten_with_path(host_arrays(state))[0]:
        h.update(f'{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape}|'.encode())
        h.update(value.tobytes())
    return h.hexdigest()


def host_arrays(state: Any) -> Any:
    """`state` with every array copied to this host once (contiguous numpy; a no-op on numpy leaves).

    Replicated multi-process arrays are read from this process's first shard, which holds the whole value.
    """
    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)
        return np.ascontiguousarray(np.asarray(leaf))

    return jax.tree.map(one, state)


def structure(state: Any) -> list[str]:
    """'path shape dtype' of every array: what a restore needs to match (works on abstract states too)."""
    return [f'{jax.tree_util.keystr(path)} {tuple(leaf.shape)} {np.dtype(leaf.dtype).name}'
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]]


def _nets(state: Any) -> dict[str, Any]:
    return dict(getattr(state, 'nets', None) or {})


def net_variables(net: Any) -> dict[str, Any]:
    """What a network passes on to another run (`config.init_from`): its parameters and BatchNorm statistics."""
    return {'params': net.params, 'batch_stats': net.batch_stats}


_NET_VARIABLE = re.compile(r"^\.nets\['(?P<net>[^']+)'\]\.(?P<kind>params|batch_stats)(?P<path>(?:\['[^']+'\])+) "
                           r"\((?P<shape>[\d, ]*)\) (?P<dtype>\w+)$")


def _net_variables_target(entries: list[str], device: jax.Device) -> dict[str, Any]:
    """The abstract `{'nets': {name: {'params': ..., 'batch_stats': ...}}}` of a checkpoint, from the structure
    list of its meta item (so another run's checkpoint can be read without its config)."""
    sharding = jax.sharding.SingleDeviceSharding(device)
    tree: dict[str, Any] = {}
    for entry in entries:
        m = _NET_VARIABLE.match(entry)
        if m is None:
            continue
        node = tree.setdefault('nets', {}).setdefault(m['net'], {}).setdefault(m['kind'], {})
        *parents, leaf = re.findall(r"\['([^']+)'\]", m['path'])
        for p in parents:
            node = node.setdefault(p, {})
        shape = tuple(int(d) for d in m['shape'].replace(' ', '').split(',') if d)
        node[leaf] = jax.ShapeDtypeStruct(shape, np.dtype(m['dtype']), sharding=sharding)
    for net in tree.get('nets', {}).values():
        net.setdefault('params', {})
        net.setdefault('batch_stats', {})
    return tree


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the meta item's canonical JSON (without the digest itself): a damaged meta must not pass for a
    checkpoint of another run or architecture."""
    body = {k: v for k, v in meta.items() if k != 'meta_digest'}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _json(value: Any) -> Any:
    """The JSON form (tuples become lists), as it reads back from a checkpoint."""
    return json.loads(json.dumps(value))


def config_changes(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = '') -> dict[str, tuple[Any, Any]]:
    """{'a.b': (old, new)} for every leaf that differs between two nested JSON dicts."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out |= config_changes(old, new, f'{prefix}{key}.')
        elif old != new:
            out[f'{prefix}{key}'] = (old, new)
    return out


class Checkpointer:
    """Save / restore the train state under `<workdir>/checkpoints/<step>`.

    `keep`: how many of the newest checkpoints to keep; 0 keeps all. `read_only` (evaluation, visualisation):
    nothing is created, deleted or moved, so it can run beside a training run of the same workdir.
    """

    def __init__(self, workdir: str, *, keep: int, architecture: dict[str, Any], run: dict[str, Any] | None = None,
                 read_only: bool = False):
        if keep < 0:
            raise ValueError(f'keep_checkpoints={keep}: use a positive number of checkpoints to keep, or 0 to keep '
                             f'all of them.')
        self.workdir = epath.Path(workdir)
        self.directory = self.workdir / 'checkpoints'
        self.architecture = _json(architecture)
        self.run = _json(run or {})
        self.read_only = read_only
        if not read_only:
            self._remove_interrupted_saves()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=not read_only,
                                               read_only=read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'meta'))

    def _remove_interrupted_saves(self) -> None:
        """Deletes the temporary directories of saves that a kill interrupted (process 0 only, before any save).

        Done synchronously here rather than by orbax's background clean-up so that nothing else touches the
        file system while the run starts. (The workdir lock guarantees no other run is saving here.)
        """
        if jax.process_index() != 0 or not self.directory.exists():
            return
        for path in self.directory.iterdir():
            if TMP_MARKER in path.name:
                logging.warning('Removing %s, left by a save that did not finish.', path)
                path.rmtree()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON meta item of checkpoint `step`."""
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

    def check_compatible(self, meta: dict[str, Any], step: int, *, allow_run_changes: bool
                         ) -> dict[str, tuple[Any, Any]]:
        """Raises IncompatibleCheckpointError if checkpoint `step` was written for another architecture, or for
        another run (batch size, optimiser, data stream) unless `allow_run_changes`; returns the run changes."""
        arch = config_changes(meta.get('architecture') or {}, self.architecture)
        if arch:
            raise IncompatibleCheckpointError(
                f'The workdir {self.workdir} holds a checkpoint (step {step}) of another architecture: '
                f'{_describe(arch)}. Its state cannot be restored into this model: use a new --workdir, or delete '
                f'{self.directory} to start over.')
        changes = config_changes(meta.get('run') or {}, self.run)
        if changes and not allow_run_changes:
            raise IncompatibleCheckpointError(
                f'The workdir {self.workdir} holds a checkpoint (step {step}) of a run with other settings: '
                f'{_describe(changes)}. Resuming would mix two runs. Use a new --workdir, or continue anyway with '
                f'--config.resume_with_changes=True (recorded in results.json).')
        return changes

    def restore(self, abstract_state: Any, *, allow_run_changes: bool = False
                ) -> tuple[Any, dict[str, Any], dict[str, tuple[Any, Any]]]:
        """The newest intact checkpoint restored into the shapes, dtypes and shardings of `abstract_state`.

        Returns (state, meta, run changes). Damaged checkpoints are set aside (see the module docstring);
        IncompatibleCheckpointError if the newest intact one belongs to another architecture or run.
        """
        damaged: list[str] = []
        for step in reversed(self.all_steps()):
            try:
                meta = self.meta(step)
            except Exception as e:  # noqa: BLE001 - any failure to read means the checkpoint cannot be trusted.
                damaged.append(self._set_aside(step, f'its meta item cannot be read ({_short(e)})'))
                continue
            if meta.get('meta_digest') != meta_digest(meta):
                damaged.append(self._set_aside(step, 'its meta item differs from the checksum saved with it'))
                continue
            changes = self.check_compatible(meta, step, allow_run_changes=allow_run_changes)
            self._check_structure(meta, step, abstract_state)
            try:
                state = self.manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))['state']
            except Exception as e:  # noqa: BLE001
                damaged.append(self._set_aside(step, f'its state cannot be restored ({_short(e)})'))
                continue
            expected = meta.get('digest')
            if expected is None:
                damaged.append(self._set_aside(step, 'it has no checksum (written by an older version?)'))
                continue
            if state_digest(state) != expected:
                damaged.append(self._set_aside(step, 'its arrays differ from the checksum saved with them'))
                continue
            if damaged:
                logging.warning('Restoring step %d, the newest intact checkpoint, instead.', step)
            logging.info('Restored checkpoint at step %d from %s (checksum verified)', step, self.directory)
            return state, meta, changes
        raise DamagedCheckpointError(
            f'No intact checkpoint in {self.directory}: {"; ".join(damaged)}. Delete {self.directory} (and '
            f'{self.workdir / DAMAGED_DIR}) to start over, or use a new --workdir.')

    def restore_net_variables(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Each network's `{'params', 'batch_stats'}` (host arrays) from the newest intact checkpoint, read without
        knowing the config that wrote it (`config.init_from`), and that checkpoint's meta item.

        Only the networks' variables are read (not the optimiser state); they are verified against the per-network
        checksums saved with them. Damaged checkpoints are skipped (never moved: this workdir is another run's).
        """
        damaged: list[str] = []
        for step in reversed(self.all_steps()):
            try:
                meta = self.meta(step)
            except Exception as e:  # noqa: BLE001
                damaged.append(f'step {step}: its meta item cannot be read ({_short(e)})')
                continue
            if meta.get('meta_digest') != meta_digest(meta) or 'net_digests' not in meta:
                damaged.append(f'step {step}: its meta item fails its checksum or has no per-network checksums')
                continue
            target = _net_variables_target(meta.get('structure') or [], jax.local_devices()[0])
            try:
                restore_args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding), target)
                restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
                    item=target, restore_args=restore_args, partial_restore=True)))['state']['nets']
            except Exception as e:  # noqa: BLE001
                damaged.append(f'step {step}: its networks cannot be restored ({_short(e)})')
                continue
            nets = {name: {k: jax.tree.map(np.asarray, v) for k, v in net.items()} for name, net in restored.items()}
            bad = [n for n, v in nets.items() if state_digest(v) != meta['net_digests'].get(n)]
            if bad:
                damaged.append(f'step {step}: the arrays of {", ".join(bad)} differ from their checksums')
                continue
            for note in damaged:
                logging.warning('Skipping damaged checkpoint in %s: %s', self.directory, note)
            return nets, meta
        raise DamagedCheckpointError(f'No intact checkpoint in {self.directory}: {"; ".join(damaged) or "none"}.')

    def _check_structure(self, meta: dict[str, Any], step: int, abstract_state: Any) -> None:
        """IncompatibleCheckpointError when the state to restore has other arrays than the checkpoint (a setting
        that changes the state, such as ema_decay or momentum, was changed with resume_with_changes)."""
        saved, wanted = set(meta.get('structure') or []), set(structure(abstract_state))
        if saved and saved != wanted:
            diff = [f'only in the checkpoint: {x}' for x in sorted(saved - wanted)[:3]]
            diff += [f'only in this config: {x}' for x in sorted(wanted - saved)[:3]]
            raise IncompatibleCheckpointError(
                f'The checkpoint at step {step} in {self.directory} holds other arrays than this config builds '
                f'({len(saved ^ wanted)} differ; {"; ".join(diff)}), so it cannot be resumed even with '
                f'resume_with_changes. Use a new --workdir, or undo the change.')

    def _set_aside(self, step: int, reason: str) -> str:
        """Moves a damaged checkpoint out of the manager's sight (process 0 of a training run); returns a note."""
        note = f'checkpoint step {step} is damaged: {reason}'
        if self.read_only:
            logging.warning('%s. Skipping it (read-only: left in place).', note)
            return note
        target = self.workdir / DAMAGED_DIR / f'{step}-{int(time.time())}'
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        logging.warning('%s. Moved to %s.', note, target)
        self.manager.reload()
        return note

    def save(self, step: int, state: Any, *, force: bool = False, extra: dict[str, Any] | None = None) -> bool:
        """Saves `state` (asynchronously) with the meta item; `extra`: JSON-able bookkeeping stored beside it."""
        host = host_arrays(state)  # one device-to-host copy for both checksums
        meta = _json({'architecture': self.architecture, 'run': self.run, 'step': int(step),
                      'digest': state_digest(host), 'structure': structure(state),
                      'net_digests': {name: state_digest(net_variables(net)) for name, net in _nets(host).items()},
                      **(extra or {})})
        meta['meta_digest'] = meta_digest(meta)
        saved = self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                                 meta=ocp.args.JsonSave(meta)), force=force)
        if saved:
            logging.info('Saving checkpoint at step %d to %s', step, self.directory)
        return saved

    def wait(self) -> None:
        """Blocks until asynchronous saves are durable."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ', '.join(f'{k} was {old!r}, now {new!r}' for k, (old, new) in changes.items())


def _short(e: Exception) -> str:
    text = f'{type(e).__name__}: {e}'.splitlines()[0]
    return text if len(text) < 200 else text[:197] + '...'


class PreemptionWatcher:
    """Turns SIGTERM (preemption notice) into a request to save and stop at a step all processes agree on.

    Single process: our own SIGTERM handler sets a flag. Multi-process: JAX's preemption sync manager (started by
    jax.distributed.initialize) receives the signal and picks a step at which every process stops together.
    """

    def __init__(self):
        self._flag = threading.Event()
        self._multi = jax.process_count() > 1
        self._previous = None
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        logging.warning('SIGTERM received: will save a checkpoint and stop after the current step.')
        self._flag.set()

    def requested(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils
            return multihost_utils.reached_preemption_sync_point(step)
        return self._flag.is_set()

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

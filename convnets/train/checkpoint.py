"""Checkpoints in the workdir: orbax CheckpointManager with a save cadence, retention, resume and preemption.

Safety: orbax writes each checkpoint into a temporary directory and renames it only once every file is written
(on GCS, where rename is not atomic, a commit marker plays that role), so a run killed mid-save leaves at worst a
temporary directory that the next start ignores and deletes; the last complete checkpoint stays the latest.
Each checkpoint carries a small JSON `meta` item: the architecture (the task and the config sections that fix the
state's shapes, used to refuse resuming a different model), the step, and the loop's bookkeeping (best evaluation).
"""

import json
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

# orbax names a checkpoint in progress '<step>.orbax-checkpoint-tmp[-<timestamp>]' until it is complete.
TMP_MARKER = '.orbax-checkpoint-tmp'


class IncompatibleCheckpointError(ValueError):
    """The workdir holds checkpoints of a different task or model than the config asks for."""


class Checkpointer:
    """Save / restore the train state under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, *, keep: int, architecture: dict[str, Any]):
        self.directory = epath.Path(workdir) / 'checkpoints'
        # JSON turns tuples into lists; keep (and compare) it in JSON form.
        self.architecture = json.loads(json.dumps(architecture))
        self._remove_interrupted_saves()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'meta'))

    def _remove_interrupted_saves(self) -> None:
        """Deletes the temporary directories of saves that a kill interrupted (process 0 only, before any save).

        Done synchronously here rather than by orbax's background clean-up so that nothing else touches the
        file system while the run starts.
        """
        if jax.process_index() != 0 or not self.directory.exists():
            return
        for path in self.directory.iterdir():
            if TMP_MARKER in path.name:
                logging.warning('Removing %s, left by a save that did not finish.', path)
                path.rmtree()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON meta item of the latest (or given) checkpoint; {} if there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return {}
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

    def check_compatible(self) -> None:
        """Raises IncompatibleCheckpointError if the latest checkpoint was written for another architecture."""
        step = self.latest_step()
        if step is None:
            return
        saved = self.meta(step).get('architecture')
        if saved != self.architecture:
            differ = sorted(k for k in set(saved or {}) | set(self.architecture)
                            if (saved or {}).get(k) != self.architecture.get(k))
            raise IncompatibleCheckpointError(
                f'The workdir {self.directory.parent} holds a checkpoint (step {step}) of another architecture '
                f'({", ".join(f"{k}: {(saved or {}).get(k)}" for k in differ)}), but the config asks for '
                f'{", ".join(f"{k}: {self.architecture.get(k)}" for k in differ)}. Use a new --workdir, or delete '
                f'{self.directory} to start over.')

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores into the shapes, dtypes and shardings of `abstract_state` (e.g. from jax.eval_shape)."""
        step = self.latest_step() if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
        logging.info('Restored checkpoint at step %d from %s', step, self.directory)
        return restored['state']

    def save(self, step: int, state: Any, *, force: bool = False, extra: dict[str, Any] | None = None) -> bool:
        """Saves `state` (asynchronously) with the meta item; `extra`: JSON-able bookkeeping stored beside it."""
        meta = {'architecture': self.architecture, 'step': int(step), **(extra or {})}
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

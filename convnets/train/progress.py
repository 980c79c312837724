"""Progress reporting: log lines with examples/s and ETA (compile, eval and checkpoint time excluded) and
TensorBoard event files in the workdir. Any metric names a task returns are logged as they come."""

import contextlib
import time
from collections.abc import Iterator, Mapping

import numpy as np
from absl import logging


class Throughput:
    """Measures steady-state training speed in examples/s (images, clips, ... whatever a batch row is).

    `start(step)` is called once the first (compiling) step has completed, so compilation is excluded; time spent
    inside `with throughput.excluded():` (evaluation, checkpointing) is not counted either.
    """

    def __init__(self, global_batch_size: int, total_steps: int):
        self.batch = global_batch_size
        self.total_steps = total_steps
        self._start: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None
        self._excluded = 0.0

    def _now(self) -> float:
        return time.perf_counter() - self._excluded

    def start(self, step: int) -> None:
        self._start = self._last = (step, self._now())

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self._excluded += time.perf_counter() - t

    def examples_per_second(self, step: int, since_last: bool = False) -> float:
        """Average since `start`, or since the previous call with since_last=True."""
        if self._start is None:
            return float('nan')
        ref = self._last if since_last else self._start
        now = self._now()
        if since_last:
            self._last = (step, now)
        dt = now - ref[1]
        return (step - ref[0]) * self.batch / dt if dt > 0 and step > ref[0] else float('nan')

    def eta_seconds(self, step: int, examples_per_s: float) -> float:
        if not np.isfinite(examples_per_s) or examples_per_s <= 0:
            return float('nan')
        return (self.total_steps - step) * self.batch / examples_per_s


def format_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return '?'
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class MetricWriter:
    """TensorBoard scalars under `<workdir>/tensorboard` (process 0 only; others write nothing)."""

    def __init__(self, workdir: str, enabled: bool):
        self._writer = None
        if enabled:
            import tensorflow as tf  # tf.summary is the TensorBoard event writer; tf is already our data stack.
            self._writer = tf.summary.create_file_writer(f'{workdir}/tensorboard')

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        import tensorflow as tf
        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(name, float(value), step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def format_metrics(metrics: Mapping[str, float]) -> str:
    """'loss 0.1234  top1 0.9688  lr 0.05': every metric, in the order the task returned them."""
    return '  '.join(f'{k} {v:.4g}' for k, v in metrics.items())


def log_train(step: int, total: int, metrics: Mapping[str, float], examples_per_s: float, eta_s: float) -> None:
    logging.info('step %d/%d  %s  %.1f ex/s  eta %s', step, total, format_metrics(metrics), examples_per_s,
                 format_eta(eta_s))

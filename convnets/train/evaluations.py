"""The evaluations of a run, from `config.evals`: when each runs, what it returns, where its numbers go.

Each entry `config.evals.<name>` has a `type` (one of the task's evaluators), `every` (an interval, '' for none),
`at_end` (run once when training ends and in --mode=eval) and `results_key` (its key in results.json and its
TensorBoard prefix); the other fields belong to its type. Evaluators are built (and compiled) on first use; every
later run of an evaluator, periodic or final, reuses its compiled programs (eval batches are padded to whole
batches, so the last one is no new shape): a 30-step quickstart run with 3 evaluations compiles one predict and one
score program (benchmarks/time_to_first_step.py --count_programs).

The metric that the plateau schedule and the "best" bookkeeping watch is `config.optimizer.plateau_metric`,
'<evaluator name>/<metric>', lower is better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from jax.sharding import Mesh
from ml_collections import ConfigDict

from convnets.tasks.base import EvalContext, Evaluator, Task
from convnets.train import intervals
from convnets.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class Watched:
    """The evaluator and metric named by `config.optimizer.plateau_metric` (lower is better)."""

    evaluator: str
    metric: str

    @property
    def name(self) -> str:
        return f'{self.evaluator}/{self.metric}'


class Evaluations:
    """The configured evaluators of one run."""

    def __init__(self, task: Task, config: ConfigDict, mesh: Mesh, nets: Mapping[str, nn.Module],
                 steps_per_epoch: int, workdir: str | None = None):
        self._task, self._config, self._mesh, self._nets = task, config, mesh, nets
        self._workdir = workdir
        self.entries: dict[str, ConfigDict] = dict(config.evals.items())
        self.every: dict[str, int] = {}
        seen: dict[str, str] = {}
        for name, ev in self.entries.items():
            if ev.type not in task.evaluators:
                raise ValueError(f'evals.{name}.type={ev.type!r} is not an evaluator of task {config.task!r}; '
                                 f'valid: {", ".join(task.evaluators) or "none"}.')
            self.every[name] = intervals.to_steps(ev.every, steps_per_epoch, what=f'evals.{name}.every')
            if ev.results_key in seen or ev.results_key in RESERVED_KEYS:
                other = f'evals.{seen[ev.results_key]}' if ev.results_key in seen else 'the loop'
                raise ValueError(f'evals.{name}.results_key={ev.results_key!r} is already used by {other}: give '
                                 f'each evaluator its own key (reserved: {", ".join(RESERVED_KEYS)}).')
            seen[ev.results_key] = name
        self.watched = self._watched(config)
        self._built: dict[str, Evaluator] = {}

    def _watched(self, config: ConfigDict) -> Watched | None:
        spec = config.optimizer.plateau_metric
        plateau = config.optimizer.schedule == 'plateau'
        name, _, metric = spec.partition('/')
        if not spec or name not in self.entries or not metric:
            if plateau:
                raise ValueError(
                    f"optimizer.plateau_metric={spec!r} must name '<evaluator>/<metric>' of a periodic evaluator "
                    f"for the plateau schedule; evaluators: {', '.join(self.entries) or 'none'}.")
            return None  # Nothing to watch: no "best" bookkeeping.
        if plateau and not self.every[name]:
            raise ValueError(f'The plateau schedule watches evals.{name}, which never runs during training: set '
                             f"--config.evals.{name}.every (e.g. '1 epoch').")
        return Watched(name, metric)

    def results_keys(self) -> list[str]:
        """Where the final evaluations' numbers go in results.json."""
        return [ev.results_key for ev in self.entries.values() if ev.at_end]

    def due(self, step: int, *, last: bool) -> list[str]:
        """The evaluators to run after `step` (periodic ones whose interval divides it; at_end ones at the end)."""
        return [name for name, ev in self.entries.items()
                if (self.every[name] and step % self.every[name] == 0) or (last and ev.at_end)]

    def at_end(self) -> list[str]:
        return [name for name, ev in self.entries.items() if ev.at_end]

    def run(self, name: str, state: TrainState) -> dict[str, float]:
        if name not in self._built:
            ctx = EvalContext(config=self._config, name=name, mesh=self._mesh, nets=self._nets,
                              workdir=self._workdir)
            self._built[name] = self._task.evaluators[self.entries[name].type](ctx, self.entries[name])
        return self._built[name](state)


# results.json keys the loop writes itself; evaluators cannot use them.
RESERVED_KEYS = ('step', 'train', 'best', 'train_examples_per_s', 'num_params', 'num_devices', 'num_processes',
                 'wall_seconds_this_run', 'config')


def improved(best: dict[str, Any] | None, value: float) -> bool:
    return best is None or value < best['value']

"""Tasks: what differs between classification, detection, video and GANs (see `convnets.tasks.base`).

`get(config.task)` returns the task: a module of this package by its name (`'classification'`), or any importable
module path (`'tests.test_tasks'`); the module defines `TASK`.
"""

from __future__ import annotations

import importlib
import pkgutil

from convnets.tasks.base import EvalContext, Optimizer, Task, build_model

__all__ = ['EvalContext', 'Optimizer', 'Task', 'build_model', 'get', 'names']


def names() -> list[str]:
    """The tasks this package defines."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != 'base')


def get(name: str) -> Task:
    """The task named `name`; ValueError naming the valid tasks otherwise."""
    module_name = name if '.' in name else f'convnets.tasks.{name}'
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise ValueError(f'Unknown task {name!r}: use one of {", ".join(names())}, or an importable module path '
                             f'whose module defines TASK.') from None
        raise
    task = getattr(module, 'TASK', None)
    if not isinstance(task, Task):
        raise ValueError(f'Task module {module_name} must define TASK, an instance of convnets.tasks.Task.')
    return task

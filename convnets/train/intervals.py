"""Intervals in epochs or steps: `'2 epochs'`, `'0.5 epoch'`, `'500 steps'`, `'500'` (steps), `''` (never).

Recipes state cadences (evaluation, checkpoints, logging) in the unit the paper uses; epochs hold for any batch size,
where a step count such as 10,009 is one ImageNet epoch only at batch 128.
"""

import math
import re

_PATTERN = re.compile(r'^\s*(?P<value>\d+(\.\d*)?|\.\d+)\s*(?P<unit>steps?|epochs?)?\s*$')


def to_steps(interval: str, steps_per_epoch: int, *, what: str = 'interval') -> int:
    """The interval in steps (>= 1), or 0 for '' / '0' (never). ValueError with the accepted forms otherwise.

    Epochs are rounded to the nearest step (at least 1): '1 epoch' at 1,437 examples and batch 32 is 44 steps.
    """
    if not isinstance(interval, str):
        interval = str(interval)
    if not interval.strip():
        return 0
    match = _PATTERN.match(interval)
    if not match:
        raise ValueError(f"{what}={interval!r} is not an interval: write e.g. '2 epochs', '0.5 epoch', '500 steps' "
                         f"or '500' (steps); '' or '0' for never.")
    value, unit = float(match['value']), match['unit'] or 'steps'
    if value == 0:
        return 0
    if unit.startswith('step'):
        if value != int(value):
            raise ValueError(f'{what}={interval!r}: a number of steps must be whole.')
        return int(value)
    return max(1, math.floor(value * steps_per_epoch + 0.5))

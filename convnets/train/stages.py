"""Multi-stage experiments: several runs of the one training loop, in order, in one workdir, resumed like any run.

Faster R-CNN's 4-step alternating training (Ren et al. 2015, sec. 3.2) is the model: (1) an RPN from ImageNet
weights; (2) a Fast R-CNN from ImageNet weights on step 1's proposals; (3) the RPN re-initialised from the detector
with the shared convolutions frozen; (4) the Fast R-CNN head fine-tuned with the shared convolutions frozen.
py-faster-rcnn's tools/train_faster_rcnn_alt_opt.py runs the four solvers one after another, passing each stage the
path of an earlier one's final caffemodel (stage-1 Fast R-CNN: ImageNet; stage-2 RPN: the stage-1 Fast R-CNN;
stage-2 Fast R-CNN: the stage-2 RPN) or of its proposal file, and ships a copy of the last stage's model; here
'stage:' references pass those paths and the last stage is what the run reads. Nothing here knows a task: GAN
pretraining or video fine-tuning stage the same way. (Files a later stage needs, such as an RPN's proposals, are
written by an `at_end` evaluator of the earlier stage into its workdir: results.json, which marks a stage finished,
is written after its final evaluations.)

Config (experiments/default.py):
  stages          names of the stages in run order; () is an ordinary one-stage run. A name is a simple path
                  component of letters, digits, '_' and '-' (ml_collections sorts keys, hence the explicit order).
  stage_configs   per stage name, a partial config tree merged recursively into the base config for that stage
                  (a stage without an entry runs the base config). A leaf must already exist in the base config
                  (so that a misspelt field is an error, not a silently ignored setting) unless its parent is new or
                  empty in the base (a new evaluator entry under `evals`, a `model_overrides` field). Command-line
                  switches reach a stage's field through `--config.stage_configs.<stage>.<field>=...` (the field
                  must be one the experiment's stage entry sets); `--config.<field>=...` changes every stage that
                  does not set the field itself.

References: a string value 'stage:<name>' or 'stage:<name>/<rest>' anywhere in a stage's merged config means
`<workdir>/<name>[/<rest>]`, e.g. `init_from='stage:rpn1'` (the newest checkpoint of stage rpn1) or
`data.proposals_dir='stage:rpn1/proposals'`. Only earlier stages may be named. Resolution replaces the value inside
its ml_collections FieldReference, so strings built lazily from the field (experiments/detection.py writes the
`load_proposals` op of both preprocessing specs from `data.proposals_dir`) follow it.

Layout: `<workdir>/<stage>/` is an ordinary workdir (checkpoints, TensorBoard events, results.json) run with the
stage's merged config (its `stages` emptied), so --mode=eval, --mode=detect and --mode=visualize work on it as on any
run; `convnets.main` picks the last stage unless `--stage=NAME` names another. `<workdir>/results.json` holds every
stage's results under 'stages' and the last stage's keys at the top level ('step', its evaluations, 'config'), so
scripts and sweeps read a staged run like any other; 'staged_config' is the whole experiment.

Resume: `run` validates every stage's config before anything trains (a typo in stage 4 fails before stage 1 starts),
then calls `loop.train_and_evaluate` for each stage in order. A finished stage (results.json at its final step) is
not retrained (the loop returns its results.json as it is); an unfinished one resumes from its newest intact
checkpoint; a later stage's `init_from` only matters when that stage has no checkpoint yet. A preemption request
stops the runner after the stage's checkpoint (None is returned); rerunning the same command continues there. A
WorkdirLock on the top workdir keeps two runners from interleaving (each stage also locks its own workdir). Changing
an earlier stage (say, a longer schedule) continues that stage but does not retrain the later ones, whose
checkpoints came from its old weights: delete their directories to retrain them.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
from etils import epath
from ml_collections import ConfigDict, FieldReference

from convnets import tasks
from convnets.train import loop
from convnets.train.workdir_lock import WorkdirLock

PREFIX = 'stage:'
_NAME = re.compile(r'[A-Za-z0-9_-]+')


def names(config: ConfigDict) -> tuple[str, ...]:
    """The stage names in run order, checked: unique simple path components, and every stage_configs key listed."""
    order = tuple(config.get('stages') or ())
    entries = config.get('stage_configs')
    entries = list(entries.keys()) if entries is not None else []
    bad = [n for n in order if not isinstance(n, str) or not _NAME.fullmatch(n)]
    if bad:
        raise ValueError(f'stages={order!r}: {", ".join(map(repr, bad))} is not a valid stage name; use letters, '
                         f'digits, "_" and "-" (each stage is a subdirectory of the workdir).')
    duplicates = sorted({n for n in order if order.count(n) > 1})
    if duplicates:
        raise ValueError(f'stages={order!r} names {", ".join(duplicates)} more than once; give each stage its own '
                         f'name.')
    unknown = [k for k in entries if k not in order]
    if unknown:
        raise ValueError(f'stage_configs has entries for {", ".join(unknown)}, which config.stages '
                         f'({", ".join(order) or "empty"}) does not list: add them to --config.stages (in run order) '
                         f'or fix the names.')
    return order


def is_staged(config: ConfigDict) -> bool:
    return bool(names(config))


def stage_workdir(workdir: str, name: str) -> str:
    """Where stage `name` of the staged run in `workdir` keeps its checkpoints and results."""
    return os.path.join(workdir, name)


def stage_config(config: ConfigDict, name: str, workdir: str) -> ConfigDict:
    """The config stage `name` runs with: the base config with `stage_configs[name]` merged in, 'stage:' references
    resolved against `workdir`, and `stages` / `stage_configs` emptied, so that the loop sees an ordinary run."""
    order = names(config)
    if name not in order:
        raise ValueError(f'Unknown stage {name!r}; the stages of this config are {", ".join(order) or "none"}.')
    # One deep copy of the whole tree keeps the FieldReferences linked inside it (lazy strings follow their fields).
    c = copy.deepcopy(config)
    overrides = (c.get('stage_configs') or {}).get(name)
    with c.unlocked():
        c.stages = ()
        c.stage_configs = ConfigDict()
        if overrides is not None:
            _merge(c, overrides, f'stage_configs.{name}', '')
        _resolve(c, workdir, name, order, '')
    c.lock()
    return c


def _merge(base: ConfigDict, overrides: ConfigDict, where: str, prefix: str) -> None:
    """Merges `overrides` into `base` recursively (raw fields: FieldReferences stay references)."""
    for key in overrides.keys():
        path = prefix + key
        if path in ('stages', 'stage_configs'):
            raise ValueError(f'{where}.{path}: a stage cannot set the stages themselves; list stages in '
                             f'config.stages and their settings in config.stage_configs.')
        value = overrides._fields[key]  # Raw: a FieldReference is kept, not read.
        current = base._fields.get(key)
        if isinstance(value, ConfigDict) and isinstance(current, ConfigDict):
            _merge(current, value, where, path + '.')
            continue
        if key not in base._fields and not _open(base, value):
            close = difflib.get_close_matches(key, list(base.keys()), n=1)
            hint = f'did you mean {prefix}{close[0]}? ' if close else ''
            section = prefix.rstrip('.') or 'the top level'
            raise ValueError(f'{where}.{path}: the base config has no field {path}; {hint}({section} has: '
                             f'{", ".join(sorted(base.keys()))}). Fix the name, or add the field to the base config '
                             f'(the value every other stage uses).')
        try:
            base[key] = copy.deepcopy(value) if isinstance(value, ConfigDict) else value
        except TypeError as e:
            raise ValueError(f'{where}.{path}: {e}') from None


def _open(section: ConfigDict, value: Any) -> bool:
    """Whether a stage may add a new key to `section`: an empty section (model_overrides) takes anything; a
    collection whose entries are all sections (evals) takes a new section (another evaluator entry)."""
    entries = list(section._fields.values())
    return not entries or (isinstance(value, ConfigDict) and all(isinstance(e, ConfigDict) for e in entries))


def _target(value: str, workdir: str, stage: str, order: Sequence[str], path: str) -> str:
    """The directory a 'stage:<name>[/<rest>]' value of stage `stage` means; only earlier stages may be named."""
    name, _, rest = value[len(PREFIX):].partition('/')
    earlier = order[:order.index(stage)]
    if name not in earlier:
        why = ('names the stage itself' if name == stage else 'names a later stage' if name in order else
               f'names no stage (the stages are {", ".join(order)})')
        raise ValueError(f'{path}={value!r} in stage {stage!r} {why}; a stage can only use an earlier one '
                         f'({", ".join(map(repr, earlier)) if earlier else "none: it is the first stage"}).')
    # Absolute, so that the same workdir spelt relative to another directory resolves alike (the resolved strings
    # may be run-defining settings, e.g. a preprocessing spec that loads the proposals, checked on resume).
    base = workdir if '://' in workdir else os.path.abspath(workdir)
    return os.path.join(base, name, rest) if rest else os.path.join(base, name)


def _resolve(c: ConfigDict, workdir: str, stage: str, order: Sequence[str], prefix: str,
             seen: set[int] | None = None) -> None:
    """Replaces every 'stage:...' string of `c` by its path, in place (inside FieldReferences where there is one)."""
    seen = set() if seen is None else seen

    def fix(value: Any, path: str) -> Any:
        if isinstance(value, str) and value.startswith(PREFIX):
            return _target(value, workdir, stage, order, path)
        if isinstance(value, tuple | list):
            items = [fix(v, f'{path}[{i}]') for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
        return value

    def fix_reference(ref: FieldReference, path: str) -> None:
        if id(ref) in seen:
            return
        seen.add(id(ref))
        # A computed reference (ops) follows its operands: resolve those, never the computed value.
        operands = [ref._value] + [a for op in ref._ops for a in op.args]
        if ref._ops or isinstance(ref._value, FieldReference):
            for operand in operands:
                if isinstance(operand, FieldReference):
                    fix_reference(operand, path)
            return
        fixed = fix(ref._value, path)
        if fixed is not ref._value:
            ref.set(fixed)

    for key in list(c.keys()):
        path = prefix + key
        raw = c._fields[key]
        if isinstance(raw, ConfigDict):
            _resolve(raw, workdir, stage, order, path + '.', seen)
        elif isinstance(raw, FieldReference):
            fix_reference(raw, path)
        else:
            fixed = fix(raw, path)
            if fixed is not raw:
                c[key] = fixed


def configs(config: ConfigDict, workdir: str) -> dict[str, ConfigDict]:
    """Every stage's config, in run order, each validated by its task (nothing is built or trained)."""
    out = {}
    for name in names(config):
        c = stage_config(config, name, workdir)
        try:
            task = tasks.get(c.task)
            task.validate(c)
            task.build_nets(c)
        except (ValueError, KeyError) as e:
            raise ValueError(f'stage {name!r}: {e}') from e
        out[name] = c
    return out


def select(config: ConfigDict, workdir: str, stage: str | None = None) -> tuple[ConfigDict, str]:
    """The config and workdir that reading a run (--mode=eval / detect / visualize) uses: for a staged config, the
    stage `stage` (default: the last one); for an ordinary config, `config` and `workdir` themselves."""
    order = names(config)
    if not order:
        if stage:
            raise ValueError(f'--stage={stage}: this config has no stages (config.stages is empty); drop --stage.')
        return config, workdir
    name = stage or order[-1]
    if name not in order:
        raise ValueError(f'--stage={name}: no such stage; the stages of this config are {", ".join(order)}.')
    return stage_config(config, name, workdir), stage_workdir(workdir, name)


def run(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
        ) -> dict[str, Any] | None:
    """Trains every stage of `config` in order in `<workdir>/<stage>` (finished stages kept, an unfinished one
    resumed) and writes `<workdir>/results.json`. Returns those results, or None if a stage was preempted."""
    per_stage = configs(config, workdir)  # Every stage checked before anything trains.
    if (epath.Path(workdir) / 'checkpoints').is_dir():  # epath: also on gs://
        raise ValueError(f'{workdir} holds the checkpoints of a one-stage run; a staged run keeps each stage in '
                         f'<workdir>/<stage>: use another --workdir.')
    with WorkdirLock(workdir):
        results: dict[str, dict[str, Any]] = {}
        for name, c in per_stage.items():
            done = loop.train_and_evaluate(c, stage_workdir(workdir, name), devices=devices)
            if done is None:  # Preempted after a checkpoint: rerunning the same command resumes this stage.
                return None
            results[name] = done
        last = results[next(reversed(results))]
        combined = {**last, 'stages': results, 'stage_order': list(results),
                    'staged_config': config.to_dict()}
        if jax.process_index() == 0:
            loop._write_json(workdir, 'results.json', combined)  # The loop's atomic write.
    return combined

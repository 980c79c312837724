"""`python -m convnets.weights.import`: a released weight file -> step 0 of a workdir of this project.

  python -m convnets.weights.import --from=torchvision --model=resnet50 --file=resnet50-0676ba61.pth --workdir=DIR

The checkpoint is an ordinary one: `python -m convnets.main --config=experiments/pretrained.py:<from>_<model>
--workdir=DIR --mode=eval` evaluates it (with the preprocessing the weights expect), `--mode=visualize` draws it,
and `--config.init_from=DIR` starts another run (fine-tuning, detection) from it. --config picks another
experiment (it must build the same network); by default experiments/pretrained.py:<from>_<model>. The checkpoint's
meta item records the source, the file's SHA-256 and the preprocessing ('pretrained').
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from convnets import cli_errors

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined only when it runs, so that importing the module defines none)."""
    flags.DEFINE_string('from', None, 'Where the weights come from: torchvision or keras.')
    flags.DEFINE_string('model', None, 'The source\'s network name, e.g. resnet50, vgg16_bn, googlenet.')
    flags.DEFINE_string('file', None, 'The released weight file (.pth, .safetensors, .npz or .h5).')
    flags.DEFINE_string('workdir', None, 'A new workdir for the checkpoint.')
    config_flags.DEFINE_config_file(
        'config', None, 'Experiment config (default: experiments/pretrained.py:<from>_<model>).', lock_config=True)
    flags.DEFINE_bool('verbose_errors', False, 'Show the full traceback of every error (also: CONVNETS_TRACEBACK=1).')
    flags.mark_flags_as_required(['from', 'model', 'file', 'workdir'])



def run(framework: str, name: str, file: str, workdir: str, config=None) -> dict:
    """Imports `file` as the `framework` network `name` into `workdir`; returns a summary."""
    import jax
    import jax.numpy as jnp

    from convnets.train import init_from
    from convnets.weights import importer, mapping, sources
    from experiments import pretrained

    source = sources.get(framework, name)
    if not os.path.isfile(file):
        raise FileNotFoundError(f'No weight file at {file}. {source.where_to_get(file)}')
    config = config if config is not None else pretrained.get_config(source.key)
    if config.model.name != source.model['name']:
        raise ValueError(f'The {framework} {name} weights fit our model {source.model["name"]!r}, but the config '
                         f'builds {config.model.name!r}: use experiments/pretrained.py:{source.key}.')
    fields = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
    model = importer.build_model(source, **fields)
    size = fields.get('input_size', 224)
    variables = importer.load_file(source, file, model, (1, size, size, 3))
    digest = importer.sha256(file)
    example = {'image': jax.ShapeDtypeStruct((size, size, 3), jnp.float32),
               'label': jax.ShapeDtypeStruct((), jnp.int32)}
    meta = init_from.save_initial_state(config, workdir, {'model': variables}, example,
                                   extra={'pretrained': source.record(file, digest)})
    n = sum(v.size for v in mapping.flatten(variables.get('params', {})).values())
    logging.info('Imported %s %s (%s parameters) from %s into %s', framework, name, f'{n:,}', file, workdir)
    return {'workdir': workdir, 'step': meta['step'], 'source': source.key, 'num_params': int(n), 'sha256': digest,
            'preprocessing': source.preprocessing.name, 'published_top1': source.top1}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')

    def body() -> None:
        print(json.dumps(run(FLAGS['from'].value, FLAGS.model, FLAGS.file, FLAGS.workdir, FLAGS.config)), flush=True)

    cli_errors.run_reporting_errors(body)


if __name__ == '__main__':
    define_flags()
    app.run(main, flags_parser=cli_errors.parse_flags)

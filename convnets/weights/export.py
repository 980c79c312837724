"""`python -m convnets.weights.export`: a checkpoint of this project -> a torchvision state dict.

  python -m convnets.main ... --workdir=DIR                      # train (or import) a network with a torchvision twin
  python -m convnets.weights.export --config=experiments/resnet50.py --config.model.stride_on=3x3 --workdir=DIR \\
      --file=resnet50.safetensors

The file holds the tensors under torchvision's names and layouts (BatchNorm counters as 0), so that
`model.load_state_dict(safetensors.torch.load_file(FILE))` loads it into torchvision's builder of the same name
(`--to` names it; by default the torchvision network whose mapping fits the config's model) and results can be
checked in either framework. The evaluated weights are written: the Polyak average when the run keeps one.
Formats: .safetensors or .npz.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from convnets import cli_errors

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined only when it runs, so that importing the module defines none)."""
    config_flags.DEFINE_config_file('config', None, 'The experiment config the workdir was trained with.',
                                    lock_config=True)
    flags.DEFINE_string('workdir', None, 'The workdir whose newest checkpoint is exported.')
    flags.DEFINE_string('file', None, 'Output file (.safetensors or .npz).')
    flags.DEFINE_string('to', None, 'The torchvision network name (default: the one whose model fits the config).')
    flags.DEFINE_string('net', 'model', 'The network of the train state to export.')
    flags.DEFINE_bool('verbose_errors', False, 'Show the full traceback of every error (also: CONVNETS_TRACEBACK=1).')
    flags.mark_flags_as_required(['config', 'workdir', 'file'])



def twin(model_name: str) -> str:
    """The torchvision network whose weights fit our registered model `model_name`."""
    from convnets.weights import sources
    matches = [n for n in sources.names('torchvision') if sources.get('torchvision', n).model['name'] == model_name]
    if not matches:
        fitting = sorted({sources.get('torchvision', n).model['name'] for n in sources.names('torchvision')})
        raise ValueError(f'Model {model_name!r} has no torchvision twin to export to; these do: {", ".join(fitting)}.')
    return matches[0]


def run(config, workdir: str, file: str, to: str | None = None, net: str = 'model') -> dict:
    """Exports network `net` of `workdir`'s newest checkpoint to `file`; returns a summary."""
    import jax

    from convnets.train import loop
    from convnets.weights import files, importer, sources

    source = sources.get('torchvision', to or twin(config.model.name))
    nets, state = loop.restore_for_inference(config, workdir)
    if net not in state.nets:
        raise ValueError(f'--net={net!r}: the checkpoint holds networks {", ".join(state.nets)}.')
    variables = jax.tree.map(jax.device_get, dict(state.nets[net].eval_variables))
    tensors = importer.export_tensors(source, variables)
    files.write(file, tensors)
    logging.info('Wrote %d tensors of torchvision %s to %s', len(tensors), source.name, file)
    return {'file': file, 'torchvision': source.name, 'tensors': len(tensors), 'step': int(state.step)}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')

    def body() -> None:
        print(json.dumps(run(FLAGS.config, FLAGS.workdir, FLAGS.file, FLAGS.to, FLAGS.net)), flush=True)

    cli_errors.run_reporting_errors(body)


if __name__ == '__main__':
    define_flags()
    app.run(main, flags_parser=cli_errors.parse_flags)

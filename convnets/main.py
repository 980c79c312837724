"""Entry point: `python -m convnets.main --config=experiments/<paper>.py --workdir=DIR [--mode=train|eval]`.

Any config field can be overridden, e.g. `--config.batch_size=256 --config.optimizer.learning_rate=0.05`.
Multi-host: pass --distributed (or --coordinator_address/--num_processes/--process_id, or the CONVNETS_* environment
variables, see convnets.parallel.initialize_distributed); JAX is then initialised before any device is touched.

Mistakes are reported in a few lines on stderr that name the file or field and the fix, without a traceback
(`convnets.cli_errors`): status 2 for a bad command line, 1 for an error the project raises on purpose while
running. --verbose_errors (or CONVNETS_TRACEBACK=1) shows the traceback of every error.
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from convnets import cli_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (experiments/*.py).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard events and results.json.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'visualize'],
                  'train (resumes automatically), eval (latest checkpoint), or visualize (latest checkpoint: filters, '
                  'feature maps, occlusion, top-9 with DeconvNet projections; see config.visualize).')
flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed (multi-host); auto-detects the cluster.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for --distributed.')
flags.DEFINE_integer('num_processes', None, 'Number of processes, for --distributed.')
flags.DEFINE_integer('process_id', None, 'This process index, for --distributed.')
flags.DEFINE_bool('verbose_errors', False, 'Show the full traceback of every error (also: CONVNETS_TRACEBACK=1).')
flags.mark_flags_as_required(['config', 'workdir'])


def _quiet_library_info(record) -> bool:
    """Drops orbax's and TFDS's INFO chatter (several lines per checkpoint) from the progress log."""
    noisy = ('/orbax/', '/tensorflow_datasets/', '/etils/')
    return record.levelno > 20 or not any(part in record.pathname for part in noisy)


def _wants_distributed() -> bool:
    return bool(FLAGS.distributed or FLAGS.coordinator_address or os.environ.get('CONVNETS_COORDINATOR_ADDRESS'))


def _run() -> None:
    logging.get_absl_handler().addFilter(_quiet_library_info)
    # Imported here so that --helpshort stays fast, and so that jax.distributed can be initialised before any
    # module touches a device.
    from convnets import parallel
    if _wants_distributed():
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    import tensorflow as tf
    tf.config.set_visible_devices([], 'GPU')  # tf.data is only the input pipeline; keep accelerators for JAX.

    from convnets.train import loop
    config = FLAGS.config
    logging.info('Config:\n%s', config)
    if FLAGS.mode == 'visualize':
        from convnets.visualize import report
        written = report.visualize(config, FLAGS.workdir)
        print(json.dumps({'index': str(written['index']), 'files': len(written['files'])}), flush=True)
        return
    if FLAGS.mode == 'train':
        results = loop.train_and_evaluate(config, FLAGS.workdir)
    else:
        results = loop.evaluate_checkpoint(config, FLAGS.workdir)
    if results is None:
        # Preempted after a durable checkpoint. Exit at once: tearing down the input pipeline's threads can block
        # (seen with several processes), and the scheduler's grace period is short.
        logging.flush()
        os._exit(0)
    # One line for scripts: the step and the numbers of every final evaluation (config.evals, by results_key).
    keys = [ev.results_key for ev in config.evals.values() if ev.at_end and ev.results_key in results]
    print(json.dumps({'step': results['step'], **{k: results[k] for k in keys}}), flush=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    cli_errors.run_reporting_errors(_run)


if __name__ == '__main__':
    app.run(main, flags_parser=cli_errors.parse_flags)

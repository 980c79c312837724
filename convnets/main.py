"""Entry point: `python -m convnets.main --config=experiments/<paper>.py --workdir=DIR [--mode=train|eval|...]`.

--mode=generate --num_samples=N writes N samples of a GAN run's latest checkpoint to <workdir>/generate/ (samples.npz
and grid.png; see convnets.visualize.samples).

--mode=detect --images=DIR_OR_GLOB runs a detection run's latest checkpoint on your own JPEG / PNG files and writes
detections.json and pictures with labelled boxes to --detect_out (default <workdir>/detect; see convnets.detect).

A staged config (config.stages, e.g. Faster R-CNN's 4-step training) trains every stage in order in
<workdir>/<stage> (see convnets.train.stages); eval, visualize and detect read its last stage, or --stage=NAME.

Any config field can be overridden, e.g. `--config.batch_size=256 --config.optimizer.learning_rate=0.05`.
Compiled programs are kept in a persistent cache (--compilation_cache_dir, default ~/.cache/convnets/jax;
--nocompilation_cache turns it off), so that a restart with the same shapes starts in seconds.
Multi-host: pass --distributed (or --coordinator_address/--num_processes/--process_id, or the CONVNETS_* environment
variables, see convnets.parallel.initialize_distributed); JAX is then initialised before any device is touched.

Mistakes are reported in a few lines on stderr that name the file or field and the fix, without a traceback
(`convnets.cli_errors`): status 2 for a bad command line, 1 for an error the project raises on purpose while
running. --verbose_errors (or CONVNETS_TRACEBACK=1) shows the traceback of every error.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from convnets import cli_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (experiments/*.py).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard events and results.json.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'visualize', 'detect', 'generate'],
                  'train (resumes automatically), eval (latest checkpoint), visualize (latest checkpoint: filters, '
                  'feature maps, occlusion, top-9 with DeconvNet projections; clip frames and 3D filters for video '
                  'models; see config.visualize), detect (latest checkpoint of a detection run on the files of '
                  '--images), or generate (--num_samples samples of a GAN run\'s latest checkpoint).')
flags.DEFINE_multi_string('images', None, '--mode=detect: a directory (its *.jpg, *.jpeg, *.png), an image file or a '
                          'quoted glob pattern ("photos/*.jpg", ** for subdirectories); may be repeated.')
flags.DEFINE_string('detect_out', None, '--mode=detect: where detections.json and the pictures go '
                    '(default <workdir>/detect).')
flags.DEFINE_float('detect_score_threshold', None, "--mode=detect: keep detections scoring above this (default: the "
                   "config's detection evaluator, score_threshold).")
flags.DEFINE_integer('detect_max_detections', None, "--mode=detect: at most this many per image (default: the "
                     "config's detection evaluator, max_detections).")
flags.DEFINE_float('detect_draw_threshold', None, '--mode=detect: draw detections scoring at least this in the '
                   'pictures (default 0.5; the JSON keeps every detection).')
flags.DEFINE_integer('num_samples', 64, '--mode=generate: how many samples the GAN generator draws.')
flags.DEFINE_string('stage', None, '--mode=eval, visualize or detect on a staged config (config.stages): the stage '
                    'read (default: the last one). --mode=train runs every stage in order.')
flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed (multi-host); auto-detects the cluster.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for --distributed.')
flags.DEFINE_integer('num_processes', None, 'Number of processes, for --distributed.')
flags.DEFINE_integer('process_id', None, 'This process index, for --distributed.')
flags.DEFINE_string('compilation_cache_dir', None, "JAX's persistent compilation cache, which lets a restart or a "
                    'second run with the same shapes skip compiling (default: $JAX_COMPILATION_CACHE_DIR, else '
                    "$XDG_CACHE_HOME/convnets/jax or ~/.cache/convnets/jax; '' turns it off).")
flags.DEFINE_bool('compilation_cache', True, 'Use the persistent compilation cache (--nocompilation_cache: compile '
                  'everything afresh and write nothing).')
flags.DEFINE_bool('verbose_errors', False, 'Show the full traceback of every error (also: CONVNETS_TRACEBACK=1).')
flags.mark_flags_as_required(['config', 'workdir'])


def _hide_keras() -> None:
    """TensorFlow (here only tf.data) imports Keras eagerly, and with it scikit-learn, SciPy and matplotlib: ~2 s
    of CPU at every start. Hidden while TensorFlow is imported (when the config file is read, or in `_run`), which
    then skips it; `_show_keras` makes it importable again (tf.keras loads it lazily on first use)."""
    sys.modules.setdefault('keras', None)


def _show_keras() -> None:
    if 'keras' in sys.modules and sys.modules['keras'] is None:
        del sys.modules['keras']


def _quiet_library_info(record) -> bool:
    """Drops orbax's and TFDS's INFO chatter (several lines per checkpoint) from the progress log."""
    noisy = ('/orbax/', '/tensorflow_datasets/', '/etils/')
    return record.levelno > 20 or not any(part in record.pathname for part in noisy)


def _wants_distributed() -> bool:
    return bool(FLAGS.distributed or FLAGS.coordinator_address or os.environ.get('CONVNETS_COORDINATOR_ADDRESS'))


def _run(extra_images: list[str]) -> None:
    logging.get_absl_handler().addFilter(_quiet_library_info)
    # Imported here so that --helpshort stays fast, and so that jax.distributed can be initialised before any
    # module touches a device.
    from convnets import parallel
    # Before anything compiles (JAX fixes its cache at the first compilation).
    parallel.enable_compilation_cache(FLAGS.compilation_cache_dir if FLAGS.compilation_cache else '')
    if _wants_distributed():
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    import tensorflow as tf
    _show_keras()
    tf.config.set_visible_devices([], 'GPU')  # tf.data is only the input pipeline; keep accelerators for JAX.

    from convnets.train import loop, stages
    config, workdir = FLAGS.config, FLAGS.workdir
    logging.info('Config:\n%s', config)
    staged_training = FLAGS.mode == 'train' and stages.is_staged(config)
    if FLAGS.mode == 'train' and FLAGS.stage:
        raise ValueError(f'--stage={FLAGS.stage} selects the stage that --mode=eval, visualize or detect reads; '
                         f'--mode=train runs every stage in order (finished ones are kept): drop --stage.')
    if not staged_training:  # The stage read (default: the last), or the config itself for an ordinary run.
        config, workdir = stages.select(config, workdir, FLAGS.stage)
    if FLAGS.mode == 'detect':
        from convnets import detect
        images = [*(FLAGS.images or ()), *extra_images]
        if not images:
            raise ValueError('--mode=detect needs --images=DIR_OR_GLOB (a directory of JPEG / PNG files, a file, or a '
                             'quoted glob pattern).')
        found = detect.detect_images(config, workdir, images,
                                     out_dir=FLAGS.detect_out, score_threshold=FLAGS.detect_score_threshold,
                                     max_detections=FLAGS.detect_max_detections,
                                     draw_threshold=FLAGS.detect_draw_threshold)
        print(json.dumps({'step': found['step'], 'json': found['json'], 'images': len(found['images']),
                          'detections': sum(len(r['detections']) for r in found['images'])}), flush=True)
        return
    if FLAGS.mode == 'generate':
        from convnets.visualize import samples
        written = samples.generate_from_checkpoint(config, workdir, FLAGS.num_samples, seed=config.seed)
        print(json.dumps(written), flush=True)
        return
    if FLAGS.mode == 'visualize':
        from convnets.visualize import report
        written = report.visualize(config, workdir)
        print(json.dumps({'index': str(written['index']), 'files': len(written['files'])}), flush=True)
        return
    if staged_training:
        results = stages.run(config, workdir)
        config = stages.stage_config(config, stages.names(config)[-1], workdir)  # The last stage's evaluations.
    elif FLAGS.mode == 'train':
        results = loop.train_and_evaluate(config, workdir)
    else:
        results = loop.evaluate_checkpoint(config, workdir)
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
        if FLAGS.mode != 'detect':
            raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
        # Files after --mode=detect: --images=photos/*.jpg without quotes, expanded by the shell into more files.
    cli_errors.run_reporting_errors(lambda: _run(argv[1:]))


if __name__ == '__main__':
    _hide_keras()
    app.run(main, flags_parser=cli_errors.parse_flags)

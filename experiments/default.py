"""Shared defaults for every experiment: the user-facing config schema.

Each experiment file calls `default.get_config()` and sets only what its paper fixes. Every field here can be
overridden from the command line, e.g. `--config.optimizer.learning_rate=0.05`; the config is locked, so a
misspelt field is an error rather than a silently ignored setting.

Schema
  seed                     PRNG seed for initialisation, dropout and data order/augmentation.
  model.name               a name from `convnets.models.list_models()`; every other `model.*` field is passed
                           to the model's constructor.
  data.*                   TFDS dataset, splits, preprocessing op strings (see `convnets.data.ops`).
  batch_size               GLOBAL batch size (all devices of all processes together).
  num_train_steps          > 0 to fix the step count; otherwise derived from `num_epochs`.
  optimizer.*              SGD with momentum, weight decay and a learning-rate schedule (`convnets.train.optim`).
  log_every_steps, eval_every_steps, checkpoint_every_steps, keep_checkpoints
  evaluation.*             the final test protocol: views (multi-scale / flips), model overrides (dense).
  parallel                 'shard_map' (main path: jax.jit(jax.shard_map(...))) or 'pmap'.
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    """Returns the defaults; experiments override fields of this."""
    c = config_dict.ConfigDict()
    c.seed = 0

    c.model = config_dict.ConfigDict()
    c.model.name = 'lenet5'

    c.data = config_dict.ConfigDict()
    c.data.name = 'convnets_digits'
    c.data.data_dir = config_dict.placeholder(str)  # None: TFDS default (~/tensorflow_datasets).
    c.data.manual_dir = config_dict.placeholder(str)  # For datasets needing manual downloads (ImageNet).
    c.data.download = True
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.data.train_preprocess = 'decode|value_range(0, 1)'
    c.data.eval_preprocess = 'decode|value_range(0, 1)'
    c.data.shuffle_buffer = 10_000
    c.data.cache = False
    # 'global_order': batches are identical for any number of processes; 'tfds_split': less I/O per process.
    c.data.process_split = 'global_order'
    c.data.prefetch = 2

    c.batch_size = 128
    c.eval_batch_size = 0  # 0: same as batch_size.
    c.num_epochs = 10.0
    c.num_train_steps = -1  # > 0 overrides num_epochs.

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 0.0
    c.optimizer.weight_decay_on = 'all'  # 'all' parameters, or 'kernels' (no biases/BN/subsampling coefs).
    c.optimizer.schedule = 'constant'  # constant | step | exponential | cosine | plateau
    c.optimizer.boundaries = ()  # 'step': where the rate is multiplied by decay_factor.
    c.optimizer.boundary_unit = 'epochs'  # unit of boundaries and decay_every: 'epochs' or 'steps'.
    c.optimizer.decay_factor = 0.1
    c.optimizer.decay_every = 1.0  # 'exponential': multiply by decay_factor every this many units.
    c.optimizer.warmup_steps = 0
    c.optimizer.warmup_kind = 'linear'  # or 'constant': warmup_factor x the rate during the warm-up steps.
    c.optimizer.warmup_factor = 0.1
    # 'plateau': multiply the rate by decay_factor after plateau_patience evaluations (every eval_every_steps)
    # whose top-1 error did not improve by more than plateau_rtol (relative).
    c.optimizer.plateau_patience = 1
    c.optimizer.plateau_rtol = 1e-4
    c.optimizer.plateau_cooldown = 0
    c.optimizer.velocity = 'lr_outside'  # or 'lr_inside' (AlexNet/Caffe: rate applied inside the momentum).
    c.optimizer.filter_rms_max = 0.0  # > 0: ZF Net's renormalisation of conv filters to this RMS radius.

    # Models with auxiliary classifiers (GoogLeNet) add their losses with this weight during training.
    c.aux_loss_weight = 0.0
    # > 0: Polyak averaging — evaluate (and checkpoint) an exponential moving average of the parameters.
    c.ema_decay = 0.0

    # The paper's test protocol, run at the end of training and by --mode=eval (periodic evaluations during
    # training use data.eval_preprocess alone): one eval preprocessing spec per view, softmax averaged over views
    # (and over crops within a view, e.g. ten_crop); model fields changed for it (e.g. VGG's dense=True).
    c.evaluation = config_dict.ConfigDict()
    c.evaluation.views = ()
    c.evaluation.model_overrides = config_dict.ConfigDict()

    c.log_every_steps = 100
    c.eval_every_steps = 1000  # Also evaluated at the end of training.
    c.checkpoint_every_steps = 1000  # Also saved at the end and on SIGTERM.
    c.keep_checkpoints = 3
    c.parallel = 'shard_map'
    # --mode=visualize (convnets.visualize.report): pictures drawn from the latest checkpoint.
    c.visualize = config_dict.ConfigDict()
    c.visualize.split = ''  # '' -> data.eval_split.
    c.visualize.num_images = 256  # Eval images searched for the top-k activations (the first ones of the split).
    c.visualize.layers = ()  # Sown layer names for top-k; () -> every sown NHWC (conv / pool / norm) layer.
    c.visualize.features = 4  # Top-k panels for the first this many feature maps of each layer.
    c.visualize.top_k = 9
    c.visualize.occlusion_images = 2
    c.visualize.occlusion_patch = 8  # Side of the grey square, pixels; no padding (square inside the image).
    c.visualize.occlusion_stride = 2
    c.visualize.occlusion_layer = ''  # '' -> the last sown NHWC layer.
    c.visualize.occlusion_fill = config_dict.placeholder(float)  # None -> the image mean.
    return c

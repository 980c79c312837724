"""Shared defaults for every experiment: the user-facing config schema.

Each experiment file calls `default.get_config()` and sets only what its paper fixes. Every field here can be
overridden from the command line, e.g. `--config.optimizer.learning_rate=0.05`; the config is locked, so a
misspelt field is an error rather than a silently ignored setting.

Schema
  seed                     PRNG seed for initialisation, dropout and data order/augmentation.
  task                     'classification' (convnets.tasks), or an importable module path defining TASK.
  model.name               a name from `convnets.models.list_models()`; every other `model.*` field is passed
                           to the model's constructor.
  data.*                   TFDS dataset, splits, preprocessing op strings (see `convnets.data.ops`), batch keys.
  data.threads, data.ram_budget_gb, data.fuse_decode   input pipeline speed, never values: tf.data's private
                           thread pool (0: shared), autotune memory budget (0: default), JPEG crop-window decoding.
  data.device_prefetch     batches copied onto the devices ahead of the train step (default 2; 0: off).
  data.device_preprocess   ops run on the devices after data.train_preprocess, per training example, e.g.
                           'photometric_distort|subtract_mean(M)' ('': none; `convnets.data.device_ops`).
  batch_size               GLOBAL batch size (all devices of all processes together).
  num_train_steps          > 0 to fix the step count; otherwise derived from `num_epochs`.
  optimizer.*              SGD with momentum, weight decay and a learning-rate schedule (`convnets.train.optim`).
  log_every, checkpoint_every   intervals: '2 epochs', '0.5 epoch', '500 steps', '500' (steps), '' (never).
  keep_checkpoints         how many of the newest checkpoints to keep; 0 keeps all.
  resume_with_changes      resume a checkpoint whose run-defining settings differ (recorded in results.json).
  init_from                a workdir (a finished run, or imported weights: `python -m convnets.weights.import`)
                           whose newest checkpoint gives the networks' starting weights (fine-tuning).
  init_from_skip           regexes of variable paths ('params/fc_layer/') that keep their fresh initialisation.
  divergence_factor        stop when a watched train loss exceeds this factor times its first value (0: off).
  evals.<name>.*           evaluations: type, split, cadence (every, at_end), results_key, and the type's own
                           fields (classification: views, batch_keys, model_overrides; see `classification_eval`;
                           clip_svm, C3D's linear SVM on video descriptors: see `clip_svm_eval`).
  parallel                 'shard_map' (main path: jax.jit(jax.shard_map(...))) or 'pmap'.
  dtype                    compute dtype of every network, training and evaluation: 'float32', 'bfloat16' or
                           'float16'; parameters, optimiser state, BatchNorm statistics, losses and metrics stay
                           float32 (`convnets.train.precision`).
  loss_scale               float16 only: 'dynamic' (flax's DynamicScale; steps whose gradient overflows are skipped)
                           or 'none'.
  resources.*              what one run asks of a cluster (`python -m launch.sweep --backend=slurm`): nodes,
                           accelerators_per_node (GPUs; one process each), cpus_per_task, mem, time.
  stages, stage_configs    a multi-stage experiment (`convnets.train.stages`): stage names in run order, and per
                           stage a partial config merged into this one; 'stage:<name>[/<rest>]' values name an
                           earlier stage's workdir. () : an ordinary one-stage run.
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    """Returns the defaults; experiments override fields of this."""
    c = config_dict.ConfigDict()
    c.seed = 0
    # The task (convnets.tasks): what the networks, the train step and the evaluators are.
    c.task = 'classification'

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
    # Input pipeline speed (values never change): tf.data's threads (> 0: a private pool of that many; 0: the shared
    # pool, one per core), the memory its autotuned buffers may take (GiB; 0: half the host's), and decoding only
    # the crop window of a JPEG when the spec starts with decode|inception_crop (same pixels, less work).
    c.data.threads = 0
    c.data.ram_budget_gb = 0.0
    c.data.fuse_decode = True
    # Global batches put on the devices ahead of their step (host-to-device copies overlap the step); 0: off.
    c.data.device_prefetch = 2
    # Training ops run on the devices, on each batch, after train_preprocess (per-pixel colour work that would
    # cost host cores; convnets.data.device_ops): same transforms as the host ops of the same names, JAX's draws.
    c.data.device_preprocess = ''
    # The features a batch holds after preprocessing (eval batches add 'mask'); each must have a static shape.
    c.data.batch_keys = ('image', 'label')

    c.batch_size = 128
    c.eval_batch_size = 0  # 0: same as batch_size.
    c.num_epochs = 10.0
    c.num_train_steps = -1  # > 0 overrides num_epochs.

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.name = 'sgd'  # or 'adam' (b1, b2, eps below; DCGAN)
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.b1 = 0.9  # Adam's moment decays and epsilon (optimizer.name='adam')
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
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
    # 'plateau': multiply the rate by decay_factor after plateau_patience evaluations of plateau_metric
    # ('<evaluator>/<metric>', lower is better) that did not improve on the best by more than plateau_rtol (relative).
    c.optimizer.plateau_metric = 'val/top1_error'
    c.optimizer.plateau_patience = 1
    c.optimizer.plateau_rtol = 1e-4
    c.optimizer.plateau_cooldown = 0
    c.optimizer.velocity = 'lr_outside'  # or 'lr_inside' (AlexNet/Caffe: rate applied inside the momentum).
    # Caffe's lr_mult on biases (2 in the R-CNN / Fast R-CNN prototxts); 1 elsewhere.
    c.optimizer.bias_lr_multiplier = 1.0
    # Regexes of parameter paths not trained (e.g. '^conv1_', '^conv2_': Fast R-CNN tunes conv3_1 and up).
    c.optimizer.frozen = ()
    c.optimizer.filter_rms_max = 0.0  # > 0: ZF Net's renormalisation of conv filters to this RMS radius.

    # Models with auxiliary classifiers (GoogLeNet) add their losses with this weight during training.
    c.aux_loss_weight = 0.0
    # > 0: Polyak averaging — evaluate (and checkpoint) an exponential moving average of the parameters.
    c.ema_decay = 0.0

    # Evaluations: named entries, each with its type (one of the task's evaluators), split, cadence and the key of
    # results.json its numbers go to. 'val' is the periodic evaluation; experiments add a final test protocol.
    c.evals = config_dict.ConfigDict()
    c.evals.val = classification_eval(every='1000 steps', results_key='eval')

    # Cadences are intervals: '2 epochs', '0.5 epoch', '500 steps' or '500' (steps); '' never.
    c.log_every = '100 steps'
    c.checkpoint_every = '1000 steps'  # Also saved at the end and on SIGTERM.
    c.keep_checkpoints = 3  # The newest checkpoints kept (older ones are deleted); 0 keeps every checkpoint.
    # Resuming refuses a checkpoint of a run with other run-defining settings (batch size, optimiser, data stream;
    # cadences, evaluations and the run length may change); True continues anyway and records the changes.
    c.resume_with_changes = False
    # Fine-tuning: start the networks from another workdir's newest checkpoint (see convnets.train.init_from).
    c.init_from = ''
    c.init_from_skip = ()
    # A watched train loss (the task's divergence_metrics) above this factor times its first logged value (at
    # least 1) stops the run like a NaN; 0 turns the check off.
    c.divergence_factor = 1000.0
    c.parallel = 'shard_map'  # Train step path; evaluations always run under shard_map.
    # Mixed precision (convnets.train.precision): the networks compute in this dtype, the state stays float32.
    c.dtype = 'float32'  # or 'bfloat16' (TPUs, GPUs since Ampere), 'float16' (older GPUs: with loss scaling)
    c.loss_scale = 'dynamic'  # float16 only: 'dynamic' or 'none'
    # Multi-stage experiments (convnets.train.stages): names in run order; per name, overrides of this config.
    c.stages = ()
    c.stage_configs = config_dict.ConfigDict()
    # What one run asks of a SLURM cluster (launch/sweep.py); never read by training.
    c.resources = config_dict.ConfigDict()
    c.resources.nodes = 1
    c.resources.accelerators_per_node = 8  # GPUs per node, one process (SLURM task) each
    c.resources.cpus_per_task = 8  # per process: tf.data's decoding and augmentation
    c.resources.mem = ''  # per node, as sbatch --mem takes it ('200G'); '' : the partition's default
    c.resources.time = '72:00:00'  # wall-clock limit of one run (sbatch --time)
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


def classification_eval(*, every: str = '', at_end: bool = True, results_key: str, split: str = '',
                        views: tuple[str, ...] = (), batch_keys: tuple[str, ...] = (), net: str = 'model'
                        ) -> config_dict.ConfigDict:
    """A 'classification' evaluator entry (convnets.evaluate.classification): top-1/top-5, loss, top1_error.

    every        interval of periodic runs ('' : only at the end); at_end: also run once training ends.
    results_key  where results.json (and TensorBoard: '<results_key>/<metric>') puts its numbers.
    split        '' : data.eval_split.
    views        one eval preprocessing spec per view, posteriors averaged; () : (data.eval_preprocess,).
    batch_keys   batch keys of the views; () : data.batch_keys. Multi-crop views (ten_crop, ...) write 'crops': use
                 ('crops', 'label').
    net          the network evaluated; model_overrides: its fields changed for this evaluation (VGG dense=True).
    """
    ev = config_dict.ConfigDict()
    ev.type = 'classification'
    ev.every = every
    ev.at_end = at_end
    ev.results_key = results_key
    ev.split = split
    ev.views = tuple(views)
    ev.batch_keys = tuple(batch_keys)
    ev.net = net
    ev.model_overrides = config_dict.ConfigDict()
    return ev


def clip_svm_eval(*, every: str = '', at_end: bool = True, results_key: str, split: str = '', train_split: str = '',
                  preprocess: str = '', batch_keys: tuple[str, ...] = ('crops', 'crop_mask', 'label'),
                  feature: str = 'fc6', svm_c: float = 1.0, max_train_videos: int = 0, net: str = 'model'
                  ) -> config_dict.ConfigDict:
    """A 'clip_svm' evaluator entry (convnets.evaluate.clip_svm): C3D's protocol (Tran et al. 2015 sec. 3.3, 4), a
    linear SVM on per-video L2-normalised averages of the clips' `feature`; top1, top1_error, num_examples,
    num_train, feature_dim, clips_per_video, train_top1.

    every, at_end, results_key   as classification_eval.
    split            the test videos; '' : data.eval_split. train_split: the SVM's videos; '' : data.train_split.
    preprocess       the eval spec of BOTH splits (no augmentation for the SVM's training features); '' :
                     data.eval_preprocess. C3D: "...|video_clips(16, K, stride=8)" (16-frame clips, 8 overlapping).
    batch_keys       ('crops', 'crop_mask', 'label') from video_clips; ('image', 'label'): one clip per video.
    feature          the sown layer averaged ('fc6': C3D's descriptor, after its ReLU).
    svm_c            C of scikit-learn's LinearSVC (the paper gives none; 1.0 is scikit-learn's default).
    max_train_videos the first this many training videos (0: all), for quick runs.
    net              the network whose features are read.
    """
    ev = config_dict.ConfigDict()
    ev.type = 'clip_svm'
    ev.every = every
    ev.at_end = at_end
    ev.results_key = results_key
    ev.split = split
    ev.train_split = train_split
    ev.preprocess = preprocess
    ev.batch_keys = tuple(batch_keys)
    ev.feature = feature
    ev.svm_c = float(svm_c)
    ev.max_train_videos = max_train_videos
    ev.net = net
    return ev


def add_test_protocol(c: config_dict.ConfigDict, views: tuple[str, ...], *, crops: bool) -> config_dict.ConfigDict:
    """Adds the paper's final test protocol as `evals.test` (results.json 'eval'); the periodic single-view
    evaluation `evals.val` moves to 'eval_periodic'. `crops`: the views write multi-crop stacks to 'crops'
    (ten_crop, googlenet_crops). Returns the new entry, e.g. to set `model_overrides`."""
    c.evals.val.results_key = 'eval_periodic'
    c.evals.test = classification_eval(results_key='eval', views=views, batch_keys=('crops', 'label') if crops else ())
    return c.evals.test

"""Input data: the embedded ``convnets_digits`` dataset, preprocessing ops, tf.data pipelines.

The trainer only needs the functions re-exported here; see ``pipeline`` for the batch contract
(``data.batch_keys``) and the determinism/resumption guarantees, ``ops`` for the preprocessing-spec language
(image, box and clip conventions), and ``constants`` for dataset statistics.
"""

from convnets.data.pipeline import (
    element_spec,
    element_spec_shape,
    eval_batches,
    get_builder,
    num_classes,
    num_examples,
    steps_per_epoch,
    train_batches,
)

__all__ = [
    "element_spec",
    "element_spec_shape",
    "eval_batches",
    "get_builder",
    "num_classes",
    "num_examples",
    "steps_per_epoch",
    "train_batches",
]

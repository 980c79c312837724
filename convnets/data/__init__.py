"""Input data: the embedded ``convnets_digits`` dataset, preprocessing ops, tf.data pipelines.

The trainer only needs the functions re-exported here; see ``pipeline`` for the
determinism/resumption guarantees and ``ops`` for the preprocessing-spec language.
"""

from convnets.data.pipeline import (
    element_spec_shape,
    eval_batches,
    get_builder,
    num_classes,
    num_examples,
    steps_per_epoch,
    train_batches,
)

__all__ = [
    "element_spec_shape",
    "eval_batches",
    "get_builder",
    "num_classes",
    "num_examples",
    "steps_per_epoch",
    "train_batches",
]

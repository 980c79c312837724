"""Mixed precision: the compute dtype of every network (`config.dtype`) and float16's dynamic loss scaling.

The state stays float32: parameters, optimiser state, BatchNorm statistics, the Polyak average and the loss scale.
Only the forward and backward passes run in the compute dtype, by casting at apply time (`Policy.apply`):
- the floating parameters (collection 'params'; never 'batch_stats') are cast to the compute dtype inside the
  differentiated function, so the gradient flows back through the cast and reaches the float32 parameters as
  float32;
- the network's first argument (the images, a GAN's noise, or the activations a method takes) is cast too; other
  arguments (boxes, image sizes) are passed as they are, because box coordinates in bfloat16 would lose whole
  pixels;
- every floating output (logits, box deltas, sown features, returned BatchNorm statistics) comes back in float32,
  so softmax, losses and metrics are float32.
Flax's layers (dtype None) compute in the dtype their inputs and parameters agree on; BatchNorm computes its batch
mean and variance in float32 (`force_float32_reductions`, flax's default), keeps its running statistics in float32
and returns the compute dtype once its scale and bias are cast; LocalResponseNorm sums its squares in float32.
Under shard_map the cross-device gradient sum adds float32 gradients (`convnets.tasks.sgd.net_value_and_grad`).
Every task's train step and its evaluators (periodic and final alike, and `convnets.detect`, which predicts as the
detection evaluator) use the policy; pictures (--mode=visualize) and the Frechet evaluator's fixed LeNet-5
classifier stay float32.
With 'float32' every cast is the identity and the programs are those of a float32-only build.

float16 (GPUs without bfloat16) also needs loss scaling: its range ends at 6e-8 (6e-5 for full precision), below
many gradients. `config.loss_scale='dynamic'` multiplies each network's loss by a scale before differentiation and
divides the gradients by it, by flax's `DynamicScale` (its defaults: initial scale 2^16, halved after a step whose
gradient is not finite, doubled after 2000 finite steps in a row). A step with a non-finite gradient is skipped:
the network's parameters, optimiser state, statistics and average stay as they were. The scale lives in the
network's `NetState.loss_scale` (checkpointed, so resume is exact). Metrics report the scale the step used
('loss_scale') and whether it was skipped ('skipped'; its mean over a logging interval is the fraction skipped); a
skipped step's gradient norm is logged as 0, so that the loop's NaN guard, which stops a run on any non-finite
metric, lets it pass. A non-finite LOSS (an overflow in the forward pass, which no scale fixes) still stops the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training.dynamic_scale import DynamicScale
from ml_collections import ConfigDict

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
LOSS_SCALES = ('dynamic', 'none')  # config.loss_scale; read only with dtype='float16'


def validate(config: ConfigDict) -> None:
    """Raises ValueError for an unknown `config.dtype` or `config.loss_scale`, naming the valid values."""
    dtype = config.get('dtype', 'float32')
    if dtype not in DTYPES:
        raise ValueError(f'dtype={dtype!r} is not a compute dtype: use one of {", ".join(DTYPES)} (parameters, '
                         f'optimiser state and BatchNorm statistics stay float32 in every case).')
    loss_scale = config.get('loss_scale', 'dynamic')
    if loss_scale not in LOSS_SCALES:
        raise ValueError(f"loss_scale={loss_scale!r}: use 'dynamic' (float16's dynamic loss scaling) or 'none'.")


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a network is applied: in `compute_dtype`, with float32 state and outputs (see the module docstring)."""

    compute_dtype: Any = jnp.float32
    dynamic_loss_scale: bool = False  # float16 with config.loss_scale='dynamic'

    @classmethod
    def from_config(cls, config: ConfigDict) -> Policy:
        """The policy of `config.dtype` (absent: float32) and `config.loss_scale`."""
        validate(config)
        name = config.get('dtype', 'float32')
        return cls(DTYPES[name], name == 'float16' and config.get('loss_scale', 'dynamic') == 'dynamic')

    @property
    def is_float32(self) -> bool:
        return jnp.dtype(self.compute_dtype) == jnp.float32

    def _cast(self, tree: Any, dtype: Any) -> Any:
        if self.is_float32:
            return tree  # the float32 build's programs, untouched
        return jax.tree.map(lambda x: x.astype(dtype) if _is_float(x) else x, tree)

    def cast_params(self, params: Any) -> Any:
        """Floating parameters in the compute dtype (differentiable: gradients reach the float32 originals)."""
        return self._cast(params, self.compute_dtype)

    def cast_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """`variables` with the 'params' collection in the compute dtype; BatchNorm statistics stay float32."""
        return {k: self.cast_params(v) if k == 'params' else v for k, v in variables.items()}

    def cast_input(self, x: Any) -> Any:
        """A floating network input in the compute dtype (integer inputs unchanged)."""
        return self._cast(x, self.compute_dtype)

    def cast_output(self, tree: Any) -> Any:
        """Every floating leaf of a network's output in float32."""
        return self._cast(tree, jnp.float32)

    def apply(self, model: nn.Module, variables: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """`model.apply(variables, *args, **kwargs)` in the compute dtype: the parameters and the first argument
        cast to it, the other arguments as given, every floating output returned in float32."""
        if self.is_float32:
            return model.apply(variables, *args, **kwargs)
        if args:
            args = (self.cast_input(args[0]), *args[1:])
        return self.cast_output(model.apply(self.cast_variables(variables), *args, **kwargs))

    def initial_loss_scale(self) -> DynamicScale | dict:
        """A network's loss-scale state at step 0: a `DynamicScale` with float16's dynamic scaling, else {}."""
        if not self.dynamic_loss_scale:
            return {}
        default = DynamicScale()  # flax's settings; the two counters as arrays, so the state's dtypes are fixed
        return default.replace(fin_steps=jnp.zeros((), jnp.int32), scale=jnp.asarray(default.scale, jnp.float32))


def _is_float(x: Any) -> bool:
    return hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating)

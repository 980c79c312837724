"""The train state: everything a resumed run needs, as one pytree that orbax saves and restores."""

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
    """Parameters, BatchNorm statistics, optimiser state, step and the base PRNG key.

    The data pipeline position is not stored separately: it is a pure function of `step` (see
    `convnets.data.pipeline.train_batches`), so restoring the step restores the input stream exactly.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # Raw uint32[2] key; per-step keys are derived with fold_in(rng, step).
    # Polyak averaging (GoogLeNet sec. 6): an exponential moving average of the parameters, used for evaluation;
    # {} when disabled (config.ema_decay == 0).
    ema_params: Any = struct.field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The model variables for `module.apply` during training."""
        return self._with_stats(self.params)

    @property
    def eval_variables(self) -> dict[str, Any]:
        """The variables evaluation uses: the averaged parameters when Polyak averaging is on."""
        return self._with_stats(self.ema_params if self.ema_params else self.params)

    def _with_stats(self, params: Any) -> dict[str, Any]:
        if self.batch_stats:
            return {'params': params, 'batch_stats': self.batch_stats}
        return {'params': params}

"""The train state: everything a resumed run needs, as one pytree that orbax saves and restores.

A task trains one or more networks (a classifier; a GAN's generator and discriminator; a detector whose parts may
be frozen). Each network's parameters, BatchNorm statistics, optimiser state and Polyak average live in a
`NetState`; the `TrainState` holds them by name next to the step and the base PRNG key, so the loop, checkpointing
and the parallel wrappers handle every task without knowing how many networks it has.
"""

from typing import Any

import jax
from flax import struct


@struct.dataclass
class NetState:
    """One network: parameters, BatchNorm statistics ({} without BN), optimiser state, Polyak average and loss
    scale."""

    params: Any
    batch_stats: Any
    opt_state: Any
    # Polyak averaging (GoogLeNet sec. 6): an exponential moving average of the parameters, used for evaluation;
    # {} when disabled (config.ema_decay == 0).
    ema_params: Any = struct.field(default_factory=dict)
    # float16 with dynamic loss scaling (convnets.train.precision): the network's `DynamicScale` (scale and count
    # of finite steps); {} otherwise.
    loss_scale: Any = struct.field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The variables for `module.apply` during training."""
        return self._with_stats(self.params)

    @property
    def eval_variables(self) -> dict[str, Any]:
        """The variables evaluation uses: the averaged parameters when Polyak averaging is on."""
        return self._with_stats(self.ema_params if self.ema_params else self.params)

    def _with_stats(self, params: Any) -> dict[str, Any]:
        if self.batch_stats:
            return {'params': params, 'batch_stats': self.batch_stats}
        return {'params': params}


@struct.dataclass
class TrainState:
    """The step, the base PRNG key and every network's `NetState`, by name.

    The data pipeline position is not stored separately: it is a pure function of `step` (see
    `convnets.data.pipeline.train_batches`), so restoring the step restores the input stream exactly.

    Single-network tasks (classification) name their network 'model'; `net`, `params`, `variables` and
    `eval_variables` are shorthands for that network and raise a clear error on multi-network states.
    """

    step: jax.Array
    rng: jax.Array  # Raw uint32[2] key; per-step keys are derived with fold_in(rng, step).
    nets: dict[str, NetState]

    @property
    def net(self) -> NetState:
        """The only network of a single-network state."""
        if len(self.nets) != 1:
            raise ValueError(f'This state holds several networks ({", ".join(self.nets)}): use state.nets[name].')
        return next(iter(self.nets.values()))

    @property
    def params(self) -> Any:
        return self.net.params

    @property
    def variables(self) -> dict[str, Any]:
        return self.net.variables

    @property
    def eval_variables(self) -> dict[str, Any]:
        return self.net.eval_variables


def num_params(state: TrainState) -> int:
    """Trainable parameters over all networks."""
    return sum(int(x.size) for net in state.nets.values() for x in jax.tree.leaves(net.params))

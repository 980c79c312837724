"""GoogLeNet without its auxiliary classifiers: the ablation of sec. 5 ("the effect of the auxiliary networks is
relatively minor (around 0.5%)"). Everything else is experiments/googlenet.py.
Paper result: about 0.5% worse than with the auxiliary classifiers (sec. 5); no table entry. Both nets as one
sweep: experiments/googlenet.py get_sweeps()['aux'].

Run:
  python -m convnets.main --config=experiments/googlenet_no_aux.py --workdir=/tmp/googlenet_no_aux
Hardware/time and tiny CPU overrides: as experiments/googlenet.py.
"""

from experiments import googlenet


def get_config():
    c = googlenet.get_config()
    c.model.aux_heads = False
    c.aux_loss_weight = 0.0
    return c

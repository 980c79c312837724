"""Launchers: `python -m launch.sweep` (a paper's sweep, locally, as a SLURM array or on TPU VMs) and
`launch/local.py` (one N-process job on this machine)."""

"""The persistent compilation cache of `python -m convnets.main`: where it goes, and that a second run reads back
what the first one wrote."""

import os
import re
import subprocess

import pytest

from convnets import parallel
from tests import cli

HIT = re.compile(r"Persistent compilation cache hit for '([^']+)'")


def test_cache_directory_flag_environment_and_default():
    home = os.path.expanduser('~')
    assert parallel.compilation_cache_dir(None, {}) == os.path.join(home, '.cache', 'convnets', 'jax')
    assert parallel.compilation_cache_dir(None, {'XDG_CACHE_HOME': '/x'}) == '/x/convnets/jax'
    env = {'JAX_COMPILATION_CACHE_DIR': '/env/cache', 'XDG_CACHE_HOME': '/x'}
    assert parallel.compilation_cache_dir(None, env) == '/env/cache'
    assert parallel.compilation_cache_dir('~/c', env) == os.path.join(home, 'c')  # The flag wins.
    assert parallel.compilation_cache_dir('', env) is None  # --compilation_cache_dir='' or --nocompilation_cache
    assert parallel.compilation_cache_dir(None, {'JAX_COMPILATION_CACHE_DIR': ''}) is None


def _entries(cache: str) -> set[str]:
    return {f for f in os.listdir(cache) if f.endswith('-cache')} if os.path.isdir(cache) else set()


@pytest.mark.slow  # two one-step command-line runs (~10 s on a quiet machine)
def test_a_second_run_reads_back_every_program_the_first_one_wrote(tmp_path, digits_dir):
    cache = str(tmp_path / 'cache')
    env = {k: v for k, v in cli.env(num_devices=2).items() if not k.startswith('JAX_PERSISTENT_CACHE')}
    env.pop('JAX_COMPILATION_CACHE_DIR')  # The tests' shared cache: this test uses its own, through the flag.
    env['JAX_DEBUG_LOG_MODULES'] = 'jax._src.compiler'  # Logs each cache hit and miss.
    hits, written = [], []
    for run in ('first', 'second'):
        cmd = cli.main_command(str(tmp_path / run), digits_dir, '--config.num_train_steps=1', '--config.batch_size=16',
                               '--config.evals.val.at_end=False', f'--compilation_cache_dir={cache}')
        before = _entries(cache)
        out = subprocess.run(cmd, cwd=cli.ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        hits.append(HIT.findall(out.stderr))
        written.append(_entries(cache) - before)
    # The project's thresholds cache the init and train step programs (not every tiny eager op).
    assert len(written[0]) >= 2 and not hits[0]
    assert {'jit__lambda', 'jit_step'} <= set(hits[1]), hits[1]
    # Same programs: each one the first run wrote is read back, and nothing new is compiled into the cache.
    assert len(hits[1]) == len(written[0]) and not written[1]

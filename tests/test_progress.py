"""examples/s excludes compilation and paused time; ETA follows from it."""

import pytest

from convnets.train import progress


def test_throughput_excludes_compile_and_pauses(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, 'perf_counter', lambda: clock[0])
    t = progress.Throughput(global_batch_size=10, total_steps=100)
    clock[0] += 30.0  # The first step compiles: not counted.
    t.start(step=1)
    clock[0] += 2.0  # Steps 2..11.
    with t.excluded():
        clock[0] += 50.0  # Evaluation: not counted.
    clock[0] += 2.0  # Steps 12..21.
    assert t.examples_per_second(21) == pytest.approx(20 * 10 / 4.0)
    assert t.eta_seconds(21, 50.0) == pytest.approx(79 * 10 / 50.0)
    assert t.examples_per_second(21, since_last=True) == pytest.approx(50.0)
    clock[0] += 1.0
    assert t.examples_per_second(31, since_last=True) == pytest.approx(100.0)
    assert progress.format_eta(3725) == '1:02:05'

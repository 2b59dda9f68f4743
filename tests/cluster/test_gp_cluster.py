"""GP population fitness on the local Ray cluster: the same programs, fitness and hall of fame
as the recorded serial runs (tests/mining/gp_golden.py), with the panels put once."""
from __future__ import annotations

import json

import pytest

from tests.mining import gp_golden


@pytest.mark.parametrize("case", ["tournament", "max_corr"])
def test_gp_on_the_cluster_gives_the_serial_results(ray_executor, case):
    golden = json.loads(gp_golden.GOLDEN.read_text())
    before = ray_executor.n_puts
    got = gp_golden.record(gp_golden.run(case, executor=ray_executor))
    assert got == golden[case]
    assert ray_executor.n_puts - before <= 64          # once per panel, not once per program

"""Planning time vs topology size (``pytest benchmarks/bench_topology.py``).

The headline case is the issue's: 1 ACC, 50 primaries, 949 secondaries (1,000 clusters),
planned in well under a second. The other sizes show the scaling; the derived plans grow with
the number of peerings (star + one full mesh per DB domain of ~20 clusters), so the time is
about linear in N for a fixed domain size.
"""

from __future__ import annotations

from typing import Any

import pytest

from labkit.topology import examples, plan
from labkit.workloads import render

pytestmark = pytest.mark.unit

#: (primaries, secondaries): N = 1 + primaries + secondaries, ~20 clusters per domain.
SIZES = [(5, 94), (15, 284), (50, 949), (150, 2849)]
BUDGET_S = 1.0


@pytest.mark.parametrize("implementation", ["logical-domains", "multi-level"])
@pytest.mark.parametrize(("primaries", "secondaries"), SIZES, ids=[f"N={1 + p + s}" for p, s in SIZES])
def test_plan_scaling(benchmark: Any, primaries: int, secondaries: int, implementation: str) -> None:
    env = examples.region(primaries, secondaries, implementation)  # type: ignore[arg-type]
    result = benchmark.pedantic(plan, args=(env,), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(clusters=len(env.clusters), peerings=len(result.peerings),
                                acc_virtual_nodes=result.virtual_nodes_per_cluster["acc"])
    if len(env.clusters) == 1000:  # best round: the cost of planning, not of other load on a shared box
        best = benchmark.stats.stats.min
        assert best < BUDGET_S, f"planning 1,000 clusters took {best:.2f} s (best of 5)"


def test_env_validation_1000(benchmark: Any) -> None:
    """Building + validating the 1,000-cluster env (labkit.config) before planning."""
    benchmark.pedantic(examples.region, args=(50, 949), rounds=3, iterations=1, warmup_rounds=1)


def test_render_manifests_1000(benchmark: Any) -> None:
    """Rendering the workload (namespaces, 50 Galera domains) of the 1,000-cluster region."""
    result = plan(examples.region(50, 949))
    manifests = benchmark.pedantic(render, args=(result,), rounds=3, iterations=1)
    benchmark.extra_info.update(objects=len(manifests))

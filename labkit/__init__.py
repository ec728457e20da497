"""labkit: a reproducible lab kit for edge-to-cloud multi-cluster smart-grid monitoring.

The package mirrors the thesis' concepts as modules (see ``docs/architecture.md``):
``config`` (env files) -> ``topology`` (the model) -> ``testbed`` (embedded | vms)
-> ``faults`` / ``measure`` -> ``results`` (tidy parquet) -> notebooks -> ``figures/``.
``grid`` is the synchrophasor data plane and depends on nothing of the cluster side.
"""

__version__ = "0.1.0"

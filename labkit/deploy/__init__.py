"""Deployment: what experiments put on a running test bed, and take off again.

An experiment measures; it does not know how a Galera DB domain forms or how the PMU/PDC chain
is rolled out. Those are here, used by every experiment that needs them:

- :mod:`labkit.deploy.database`: a DB domain's Galera cluster (the thesis' Percona XtraDB
  Cluster), the PDC configuration in it, and its recovery after a full crash;
- :mod:`labkit.deploy.chain`: the env's synchrophasor chain (PMUs -> low PDC -> high PDC) with
  its DB domains, where its pods really run, and its removal;
- :mod:`labkit.deploy.recorders`: recorder pods subscribed to the low and the high PDC.

Everything here reaches the clusters through the :class:`~labkit.testbed.Testbed` protocol only.
"""

from __future__ import annotations

#: Label every grid object carries with its instance name (``labkit.workloads.render``).
INSTANCE = "app.kubernetes.io/instance"
#: Namespace of the recorder pods (never offloaded: they stay where they are put).
RECORDER_NAMESPACE = "labkit-stream"


class DeployError(RuntimeError):
    """Something could not be deployed, found or removed on a test bed (the message says which)."""

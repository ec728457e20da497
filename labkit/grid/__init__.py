"""Synchrophasor data plane: C37.118 codec, PMU, PDC, recorder and linear state estimation.

Modules: :mod:`~labkit.grid.c37118` (frames), :mod:`~labkit.grid.phasors` (power flow +
noise), :mod:`~labkit.grid.pmu`, :mod:`~labkit.grid.pdc` (its configuration:
:mod:`~labkit.grid.pdc_config`), :mod:`~labkit.grid.recorder`,
:mod:`~labkit.grid.se`. Nothing here imports the cluster side of labkit.
"""

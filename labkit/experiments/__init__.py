"""Experiments: the thesis' chapter 7 measurements as functions the notebooks call.

Each module brings a test bed up through ``labkit.testbed``, drives faults through
``labkit.faults``, observes with ``labkit.measure`` collectors, and returns tidy tables;
the notebooks only pass parameters, write tables and draw.
"""

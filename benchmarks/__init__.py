"""pytest-benchmark suites for gradcheck: the hand steps against autograd and the machine's limit.

``steps.py`` builds what is timed, ``conftest.py`` times it and records it, the ``bench_*``
modules choose the cases, ``results.py`` reads a ``--benchmark-json`` file back, and
``plot.py`` and ``summary.py`` turn one into a chart and a table. See README.md.
"""

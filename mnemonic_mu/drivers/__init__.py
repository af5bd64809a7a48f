"""The drivers: ways of running the pipeline, differing only in how they map over requests.

``cli`` is the command line, ``mnemonic-mu experiment | sweep | report | results | population | settings | datasets``
(``mnemonic-mu --help`` says what each does); ``experiment`` runs one request through
:func:`mnemonic_mu.pipeline.run_request`.  The other modules:

``sweep``       ``mnemonic-mu sweep``: the pipeline over methods x forget classes x seeds
``report``      ``mnemonic-mu report``: the six stage notebooks run with papermill into an
                HTML report; ``grid`` runs one report per point of ``--grid``
``pages``       the report's HTML pages (run page and gallery)
``results``     ``mnemonic-mu results``: the docs' result tables from sweep outputs
``population``  ``mnemonic-mu population``: the per-example attack on populations of models
``book``        ``make book`` (``python -m mnemonic_mu.drivers.book``): notebooks and docs as
                one static website
``executor``    where the sweep's and a grid's tasks run (one process, local pool, Dask, SLURM)
``common``      what the drivers share: settings from a command line, report folders, file readers

``cli`` is the top: no other driver imports it (``tests/test_layers.py``).
"""

"""The drivers: ways of running the pipeline, differing only in how they map over requests.

``cli`` (``mnemonic-mu experiment | sweep | report | settings | datasets``) runs one
request through :func:`mnemonic_mu.pipeline.run_request`; ``sweep`` maps the pipeline
over seeds and forget classes; ``report`` executes the stage notebooks with papermill
and renders their outputs.
"""

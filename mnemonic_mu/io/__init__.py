"""Input and output: datasets, checkpoints, atomic files and the keyed artifact store.

``data`` loads and splits datasets; ``checkpoint`` saves and verifies models with
their codes; ``artifacts`` writes files atomically with sha256 manifests; ``store``
keys every cached model and result by its settings and code versions.
"""

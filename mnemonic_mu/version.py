"""The kit's version (``mnemonic_mu.__version__``), here so that every layer can record it."""

__version__ = "0.1.0"

"""The toolkit's version (also ``a2k_toolkit.__version__``), in a module of its own so that any layer can read it
without importing the package's public facade."""

__version__ = "0.1.0"

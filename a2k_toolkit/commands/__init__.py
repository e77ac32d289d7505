"""Subcommands of the ``a2k`` CLI, one module each (see ``a2k_toolkit/cli.py``)."""

"""The face: argument parsing, commands and exit codes; the only part that starts the embedded target.

``main`` is the ``easload`` console script (pyproject.toml) and ``python -m loadgen``.
"""

from loadgen.cli.app import main

__all__ = ["main"]

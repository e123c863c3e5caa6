"""The package's one version string: setup.cfg reads it (`attr:`), the CLIs and admin print it."""

__version__ = "0.1.0"

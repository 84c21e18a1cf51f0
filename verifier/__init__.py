"""npi-verify: train, run and formally verify recursive Neural Programmer-Interpreters."""

__version__ = "0.1.0"

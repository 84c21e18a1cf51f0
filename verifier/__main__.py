"""`python -m verifier`: the same command line as `npi-verify`."""

from verifier.cli import entry

entry()

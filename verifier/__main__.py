"""`python -m verifier`: the same command line as `npi-verify`."""

from verifier.cli import main

main(prog_name="npi-verify")

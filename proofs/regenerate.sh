#!/usr/bin/env bash
# Regenerates the shipped proofs of every task from the [[proofs]] entries of each task package's
# artifacts.toml (verifier/tasks/<task>/artifacts.toml), with fixed seeds: byte-reproducible.
# Run from the repository root: bash proofs/regenerate.sh [--task NAME] [--dry-run]
set -euo pipefail
exec python -m verifier.artifacts proofs "$@"

#!/usr/bin/env bash
# Regenerates the shipped traces of every task from the [[traces]] entries of each task package's
# artifacts.toml (verifier/tasks/<task>/artifacts.toml), with fixed seeds: byte-reproducible.
# Run from the repository root: bash traces/regenerate.sh [--task NAME] [--dry-run]
set -euo pipefail
exec python -m verifier.artifacts traces "$@"

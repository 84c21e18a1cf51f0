#!/usr/bin/env bash
# Regenerates the shipped models of every task from the [[models]] entries of each task package's
# artifacts.toml (verifier/tasks/<task>/artifacts.toml), with fixed seeds: byte-reproducible.
# Run from the repository root: bash models/regenerate.sh [--task NAME] [--dry-run]
set -euo pipefail
exec python -m verifier.artifacts models "$@"

#!/usr/bin/env bash
# Regenerates every training-trace dataset in traces/ with fixed seeds (paper-notes §4 sizes).
# Run from the repository root: bash traces/regenerate.sh
# --cover picks each input from 25 random candidates of the same size to cover the most
# call-local states; the recursive and non-recursive sets of a task get the same inputs.
set -euo pipefail
out=traces
ds() { npi-verify dataset "$@"; }

for f in recursive non-recursive; do
  ds --task addition --formulation $f --count 200 --max-size 3 --seed 1 --cover \
     -o $out/addition-$f.jsonl
  ds --task addition --formulation $f --count 5 --max-size 1 --seed 1 \
     -o $out/addition-5sums-$f.jsonl
  ds --task toposort --formulation $f --sizes 5,7,7,7,7,7 --seed 4 --cover \
     -o $out/toposort-$f.jsonl
  ds --task toposort --formulation $f \
     --input '{"vertices": 5, "edges": [[1, 2], [1, 5], [2, 4], [2, 5], [3, 5]]}' \
     -o $out/toposort-1trace-$f.jsonl
  ds --task quicksort --formulation $f --count 4 --min-size 5 --max-size 5 --seed 5 --cover \
     -o $out/quicksort-$f.jsonl
done
for f in recursive non-recursive partial; do
  ds --task bubblesort --formulation $f --count 100 --max-size 2 --seed 2 --cover \
     -o $out/bubblesort-$f.jsonl
  ds --task bubblesort-values --formulation $f --count 100 --max-size 2 --seed 3 --cover \
     -o $out/bubblesort-values-$f.jsonl
done
for f in recursive non-recursive; do
  # no --cover here: covering prefers inputs without ties, and ties are what must be learned
  ds --task bubblesort-int --formulation $f --count 1500 --max-size 3 --seed 6 \
     -o $out/bubblesort-int-$f.jsonl
done

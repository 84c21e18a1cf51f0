#!/usr/bin/env bash
# Retrains every shipped checkpoint from traces/ with fixed seeds (one CPU thread each).
# Run from the repository root: bash models/regenerate.sh   (a few minutes on 2 cores)
set -euo pipefail
tr() { npi-verify train --seed 0 "$@"; }

for task in addition bubblesort bubblesort-values toposort quicksort; do
  tr --task $task --data traces/$task-recursive.jsonl -o models/$task.pt
  tr --task $task --data traces/$task-non-recursive.jsonl -o models/$task-non-recursive.pt
done
tr --task bubblesort-values --data traces/bubblesort-values-partial.jsonl \
   -o models/bubblesort-values-partial.pt
for f in recursive non-recursive; do
  suffix=$([ $f = recursive ] && echo "" || echo "-non-recursive")
  tr --task addition --data traces/addition-5sums-$f.jsonl -o models/addition-5sums$suffix.pt
  tr --task toposort --data traces/toposort-1trace-$f.jsonl -o models/toposort-1trace$suffix.pt
done
tr --task bubblesort-int --data traces/bubblesort-int-recursive.jsonl -o models/bubblesort-int.pt
tr --task bubblesort-int --data traces/bubblesort-int-non-recursive.jsonl \
   -o models/bubblesort-int-non-recursive.pt

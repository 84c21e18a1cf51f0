"""The verification set V: every call-local state reachable on some valid input of some size.

Two computations bound V from both sides (design §5.2):

- `concrete.concrete_states` runs the reference program on every small input, size by size,
  until the set stops growing: an under-approximation, with the smallest witness input of
  each state;
- `fixpoint.abstract_states` explores call-local states breadth-first over abstract
  environment states (observation + hidden predicates), with abstract posts of primitives
  computed by Z3 for all sizes and function summaries iterated to a least fixed point: an
  over-approximation.

If the two are equal, V is exact for inputs of every size. One module per job:

    concrete.py    reference runs on small inputs (the under-approximation, witnesses)
    fixpoint.py    the abstract fixed point (the over-approximation)
    crosscheck.py  Z3 semantics vs the Python environment on random steps (in a worker process)
    result.py      VerificationSet: V, how it was obtained, its witness cover
    build.py       build_vset, and growth detection for tasks without Z3 semantics
"""

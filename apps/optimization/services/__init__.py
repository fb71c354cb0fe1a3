"""Evaluation sets, and optimization runs: request (web), run (worker), reconcile (beat).

A run applies a recipe to a ready version on a worker and registers the result as a new
version of the same model (`derived_from` the source, the recipe and report on
`optimization`). The result is validated like any upload, then compared with the source
in the same process, and gated on accuracy: a top-1 drop beyond `max_top1_drop`
percentage points keeps the version but marks it `failed` (failure_code
`accuracy_gate`), and only an admin can point an alias at it (with `force`).

Callers import from the module that holds the name: `evaluation_sets` (storing and
checking a set), `lifecycle` (a run's life cycle: requested, claimed and finished on a
worker, reconciled), `execution` (the recipe applied, the result registered, validated
and gated) and `reports` (the result measured against its source).
"""

"""Report sections contributed by each capability (probes, refusal direction, ...).

Each module exposes `add_<name>(report, model, info, prompt_sets, **options)` which measures
what it needs, appends one section to the `Report` and merges its keys into `metrics.json`.
"""

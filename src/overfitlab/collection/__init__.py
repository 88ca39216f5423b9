"""The collect stage's jobs, one module each (its entry point is ``collect.py``): ``currency`` (which
runs of the study are complete and current, and which lack a measure), ``summaries`` (the per-run
table, the curves and ``summary.json``) and ``median_seed`` (the typical seed whose predictions and
feature maps the report shows)."""

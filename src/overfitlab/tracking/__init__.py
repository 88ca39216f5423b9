"""MLflow: one experiment per study, one parent run per sweep, one child run per seed; one module per job.

- ``store``: the tracking URI, the lock around a fresh SQLite store, the retrying client (``client_for``);
- ``parent_run``: the sweep's parent run, a Hydra callback on the launching machine;
- ``run_logger``: a seed's child run and the data it trains on (a dataset input);
- ``aggregate``: what the report stage logs into the sweep run (the study's per-epoch aggregate);
- ``ui_view``: MLflow 3.17's UI, spoken in its own terms: the saved view's JSON and the page links.

All of it is orchestration, outside every run's code hash. Nothing is re-exported here: a stage's DVC
deps are the import closure of what it imports (``overfitlab.imports``), so a stage that needs the
store does not depend on the UI view, and an edit there leaves train and collect current.
"""

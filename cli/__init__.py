"""The `evidence` command line: the outer layer beside `api` and `workers`.

Each command is a composition root: it builds what its process needs from the settings
(a Context; for `serve` and `up` the API app; for `worker` the Celery app, workers/app.py)
and calls one service or runs one process. `python -m cli` is the same command as the
`evidence` script.
"""

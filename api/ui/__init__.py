"""The review web UI: server-rendered pages under /ui (docs/ui.md).

`api.ui.session` is the cookie session (sign-in, CSRF, `ui_principal`); `api.ui.routes` the
pages, each calling the same `evidence` services as the JSON API. This package imports
nothing at load time so `api.gates` can import the session module without a cycle.
"""

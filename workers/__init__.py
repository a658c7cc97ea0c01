"""The Celery app and its thin tasks: each parses its arguments and calls one service."""

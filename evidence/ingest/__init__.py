"""Ingest: docks declare clips, upload them straight to storage, workers verify and process."""

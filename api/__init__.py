"""The HTTP API and the review UI: thin routes over `evidence` services."""

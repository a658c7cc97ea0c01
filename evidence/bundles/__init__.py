"""Court bundles: a ZIP a court, the CPS or the defence can check without us (docs/bundles.md)."""

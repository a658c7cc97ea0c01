"""The camera register and who recorded what: cameras, their assignments to officers, and
each clip's attribution (docs/cameras.md)."""

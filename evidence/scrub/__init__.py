"""The scrubber: every stored object the database vouches for, re-hashed on a schedule
(service.py), and where the scheduled pass stopped (models.py)."""

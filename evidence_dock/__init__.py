"""The evidence store's docking agent: uploads the clips of a docked camera (docs/dock.md).

Only the standard library and httpx: a docking PC installs this package alone.
"""

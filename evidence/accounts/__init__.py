"""Users (people, with a role) and devices (docks and cameras, with a key)."""

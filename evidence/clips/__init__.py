"""Clips (one per distinct original) and their derivatives (proxy, thumbnail, redactions)."""

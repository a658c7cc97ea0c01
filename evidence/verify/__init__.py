"""Offline verification: anyone can check the ledger and a court bundle without trusting us."""

"""Cases group clips as exhibits; shares grant a CPS or partner user access to a case."""

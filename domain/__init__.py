"""Baton's protocol rules: facts, state, decisions. Pure: no I/O, no clock, no randomness."""

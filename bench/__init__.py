"""Baton's benchmark suite: real `baton serve` processes driven by a protocol-speaking load
generator, next to baselines measured in the same run (`python -m bench`)."""

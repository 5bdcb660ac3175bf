"""Transports and wiring: the Litestar app, its endpoints, the CLI."""

"""Makes the domain's ports real: SQL tables, engines, the event store, settings."""

"""Baselines measured in the same run as Baton: the HTTP floor is served by bench.floor_app;
the SQL floors and the peer event store live here."""

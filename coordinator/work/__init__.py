"""Apps, app versions, batches, work units, replicas, and the pure lifecycle."""

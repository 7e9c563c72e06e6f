"""Bearer tokens, ingest secrets and secrets at rest."""

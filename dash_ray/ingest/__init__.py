"""What arrives and how it is checked: raw batches and acks, body decoding, signatures,
the budget for unverified bodies, idempotency."""

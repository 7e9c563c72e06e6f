"""What arrives and how it is checked: raw batches and acks, body decoding, signatures,
idempotency."""

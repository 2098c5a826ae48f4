"""The assistant's domain: envelopes, replies, stage routing, dialogue state, errors, settings."""

"""Everything that talks to the outside world: databases, Redis, HTTP services."""

"""Fast tests: the domain, the services and the in-memory adapters."""

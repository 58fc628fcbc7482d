"""Application services: keyword-only functions over the ports."""

"""The TestIO entity assets and their checks, derived from the entity registry."""

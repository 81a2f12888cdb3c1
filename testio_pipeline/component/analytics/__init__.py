"""The analyst views as assets (group `analytics`)."""

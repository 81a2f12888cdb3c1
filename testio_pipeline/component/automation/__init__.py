"""What starts runs: the refresh sensor and the nightly full sync."""

"""choreograph.observe."""

"""choreograph.runtime."""

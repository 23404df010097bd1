"""choreograph.testing."""

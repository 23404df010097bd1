"""choreograph.ops."""

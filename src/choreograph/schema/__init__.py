"""choreograph.schema."""

"""choreograph: event choreography for Python services."""

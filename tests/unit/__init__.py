"""Pure parts, no model."""

"""The explorer driven with Pilot, and its snapshots."""

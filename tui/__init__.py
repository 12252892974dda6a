"""The Textual explorer of neuron-tui. Importing this package imports nothing heavy."""

"""Benchmarks of neuron-tui against its floors, measured in one run (`make bench`)."""

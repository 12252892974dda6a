"""Headless engine of neuron-tui: load weights, project MLP neurons onto the vocabulary, cache results.

Nothing in this package imports Textual; heavy libraries (torch, transformers) are imported where
they are used so that a warm start touches only numpy and the cache.
"""

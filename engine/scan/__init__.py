"""The weight scan: a layer's scores against the vocabulary, block by block, and what is read off
them (statistics, histograms, each token's best neurons, coverage, token search)."""

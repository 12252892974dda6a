"""Dictionaries (sparse autoencoders, transcoders, cross-layer transcoders) read from the files their
libraries write, as units beside the neurons: their decoder rows against the vocabulary, their
encoders on the model's activations, exactly as each library defines them."""

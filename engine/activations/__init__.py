"""The corpus pass: the model run over text, per-neuron state, the evidence computed from it, and
the text probe. Front ends reach it through ``NeuronEngine`` only (an import contract says so)."""

"""The Jacobian lens: another frame to read a neuron's write in.

For each layer l a fitted d_model x d_model matrix J_l = E[d h_final / d h_l] maps the output of
block l (``blocks.{l}.hook_out``) to the final block's output, pre final norm (Gurnee et al. 2026;
TransformerLens 4.3's ``JacobianLens`` fits and stores it). On weights, a neuron of layer l writes
w = W_out[i] into block l's output, so the lens reads J_l w where the logit lens reads w; the last
layer's J is the identity. ``artifact`` opens lens files (TransformerLens's format, published ones
too), ``store`` keeps the lenses fitted here as user data, ``fit`` fits one, resumably.
"""

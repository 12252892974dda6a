"""A dictionary's encoder and decoder on a model's activations, as each library defines them.

Written once for every format, from the fields of ``Dictionary``:

- input: SAELens's ``normalize_activations`` (``constant_norm_rescale``: x * sqrt(d_in) / |x|;
  ``layer_norm``: (x - mean) / (its unbiased standard deviation + 1e-5)), then x - b_dec where the
  dictionary subtracts it (an SAE's ``apply_b_dec_to_input``, sparsify's SAEs);
- pre-activations x @ W_enc + b_enc, then per architecture: ``relu``; ``jumprelu`` (ReLU(pre)
  where pre > threshold, strictly, else 0; circuit-tracer's leaves out the ReLU); ``topk`` (the
  k largest pre-activations kept, then ReLU, as SAELens's TopK, whose ``rescale_acts_by_decoder_norm``
  multiplies pre by each decoder row's norm first; sparsify's fused encoder takes ReLU first,
  which keeps the same non-zero values); ``groupmax`` (sparsify: the latents in k equal groups,
  each group's largest after ReLU); ``gated`` (SAELens: (x W_enc + b_gate > 0) * ReLU(x (W_enc *
  exp(r_mag)) + b_mag));
- decoder: acts @ W_dec + b_dec (+ x @ W_skip.T for a skip transcoder), the input's normalisation
  undone for an SAE, as SAELens does (not for a transcoder).
"""

from __future__ import annotations

import math

import torch

from engine.dictionaries.weights import Dictionary

LAYER_NORM_EPS = 1e-5  # SAELens adds it to the standard deviation


class Encoder:
    """A dictionary's weights on a device, in one dtype, ready to encode batches of activations."""

    def __init__(self, dictionary: Dictionary, device: torch.device, dtype: torch.dtype = torch.float32):
        self.dictionary = dictionary
        self.device, self.dtype = device, dtype
        d, act = dictionary, dictionary.activation
        put = self._put
        self.W_enc, self.b_enc, self.b_dec = put(d.W_enc), put(d.b_enc), put(d.b_dec)
        self.W_dec = {layer: put(rows) for layer, rows in d.W_dec.items()}
        self.W_skip = None if d.W_skip is None else put(d.W_skip)
        self.threshold = None if act.threshold is None else put(act.threshold)
        if act.architecture == "gated":
            assert act.b_gate is not None and act.r_mag is not None and act.b_mag is not None
            self.b_gate, self.b_mag = put(act.b_gate), put(act.b_mag)
            self.W_mag = self.W_enc * torch.exp(put(act.r_mag))
        self.decoder_norms = None
        if act.rescale_by_decoder_norm:
            self.decoder_norms = next(iter(self.W_dec.values())).norm(dim=-1)
        # What each unit of activation writes into the residual stream (the sum of a CLT's rows;
        # divided by the row's norm where SAELens's top-k rescaled the activations by it): the
        # attribution's W_out.
        self.directions = put(d.direction_rows())
        if self.decoder_norms is not None:
            self.directions = self.directions / self.decoder_norms[:, None]

    def _put(self, array) -> torch.Tensor:
        return torch.from_numpy(array).to(device=self.device, dtype=self.dtype)

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: SAELens's run-time normalisation, then x - b_dec where applied."""
        x = x.to(self.dtype)
        norm = self.dictionary.input_norm
        if norm == "constant_norm_rescale":
            x = x * (math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True))
        elif norm == "layer_norm":
            centred = x - x.mean(dim=-1, keepdim=True)
            x = centred / (centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)
        return x - self.b_dec if self.dictionary.subtract_b_dec else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [n, d_sae] of activations x [n, d_in]."""
        x = self.normalised(x)
        act = self.dictionary.activation
        if act.architecture == "gated":
            active = (x @ self.W_enc + self.b_gate) > 0
            return active * torch.relu(x @ self.W_mag + self.b_mag)
        pre = x @ self.W_enc + self.b_enc
        if act.architecture == "relu":
            return torch.relu(pre)
        if act.architecture == "jumprelu":
            assert self.threshold is not None
            return (torch.relu(pre) if act.relu_in_jump else pre) * (pre > self.threshold)
        if act.architecture == "groupmax":
            groups = torch.relu(pre).unflatten(-1, (act.k, -1))
            values, index = groups.max(dim=-1)
            out = torch.zeros_like(groups)
            out.scatter_(-1, index.unsqueeze(-1), values.unsqueeze(-1))
            return out.flatten(-2)
        return self._top_k(pre, act.k)

    def _top_k(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        if self.decoder_norms is not None:  # SAELens: the activations are the rescaled values
            pre = pre * self.decoder_norms
        index = pre.topk(min(k, pre.shape[-1]), dim=-1).indices
        out = torch.zeros_like(pre)
        out.scatter_(-1, index, torch.relu(pre.gather(-1, index)))
        return out

    def decode(self, acts: torch.Tensor, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The reconstruction [n, d_out] at ``layer`` (the one written to, for a CLT: each
        target layer's own decoder; its bias only where the file has one for that layer)."""
        target = next(iter(self.W_dec)) if layer is None else layer
        acts = acts.to(self.dtype)
        if self.decoder_norms is not None:
            acts = acts / self.decoder_norms
        out = acts @ self.W_dec[target]
        bias = self.dictionary.b_dec_out.get(target)
        out = out + (self.b_dec if bias is None and len(self.W_dec) == 1 else self._put_bias(bias))
        if self.W_skip is not None:
            out = out + x.to(self.dtype) @ self.W_skip.T
        return self._undo_norm(out, x)

    def _put_bias(self, bias) -> torch.Tensor | float:
        return 0.0 if bias is None else self._put(bias)

    def _undo_norm(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        norm = self.dictionary.input_norm
        if self.dictionary.info.kind != "sae":  # SAELens's transcoders do not map back
            return out
        x = x.to(self.dtype)
        if norm == "constant_norm_rescale":
            return out / (math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True))
        if norm == "layer_norm":
            mean = x.mean(dim=-1, keepdim=True)
            return out * (x - mean).std(dim=-1, keepdim=True) + mean
        return out

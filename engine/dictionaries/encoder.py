"""A dictionary's encoder and decoder on a model's activations, as each library defines them.

Written once for every format, from the fields of ``Dictionary``:

- input: SAELens's ``normalize_activations`` (``constant_norm_rescale``: x * sqrt(d_in) / |x|;
  ``layer_norm``: x centred and divided by its standard deviation, eps 1e-5), then x - b_dec where
  the dictionary subtracts it (an SAE's ``apply_b_dec_to_input``, sparsify's SAEs);
- pre-activations x @ W_enc + b_enc, then per architecture: ``relu``; ``jumprelu`` (pre where
  pre > threshold, else 0; the threshold is positive, so ReLU is implied); ``topk`` (the k largest
  pre-activations kept, then ReLU, as SAELens's TopK and sparsify's fused encoder after its
  ReLU: the same set where k are positive); ``groupmax`` (sparsify: the latents in k equal groups,
  each group's largest after ReLU); ``gated`` (SAELens: (x W_enc + b_gate > 0) * ReLU(x (W_enc *
  exp(r_mag)) + b_mag));
- decoder: acts @ W_dec + b_dec (+ x @ W_skip.T for a skip transcoder), undoing the input's
  normalisation where SAELens does.
"""

from __future__ import annotations

import math

import torch

from engine.dictionaries.weights import Dictionary

LAYER_NORM_EPS = 1e-5


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
        # Each feature's write into the residual stream (the sum of a CLT's rows): attribution's W_out.
        self.directions = put(d.direction_rows())
        self.decoder_norms = None
        if act.rescale_by_decoder_norm:
            self.decoder_norms = next(iter(self.W_dec.values())).norm(dim=-1)

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
            x = centred / (centred.pow(2).mean(dim=-1, keepdim=True) + LAYER_NORM_EPS).sqrt()
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
            return torch.relu(pre) * (pre > self.threshold)
        if act.architecture == "groupmax":
            groups = torch.relu(pre).unflatten(-1, (act.k, -1))
            values, index = groups.max(dim=-1)
            out = torch.zeros_like(groups)
            out.scatter_(-1, index.unsqueeze(-1), values.unsqueeze(-1))
            return out.flatten(-2)
        return self._top_k(pre, act.k)

    def _top_k(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        ranked = pre if self.decoder_norms is None else pre * self.decoder_norms
        index = ranked.topk(min(k, pre.shape[-1]), dim=-1).indices
        out = torch.zeros_like(pre)
        out.scatter_(-1, index, torch.relu(pre.gather(-1, index)))
        return out

    def decode(self, acts: torch.Tensor, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The reconstruction [n, d_out] at ``layer`` (the one written to, for a CLT: each
        target layer's own decoder; its bias only where the file has one for that layer)."""
        target = next(iter(self.W_dec)) if layer is None else layer
        out = acts.to(self.dtype) @ self.W_dec[target]
        bias = self.dictionary.b_dec_out.get(target)
        out = out + (self.b_dec if bias is None and len(self.W_dec) == 1 else self._put_bias(bias))
        if self.W_skip is not None:
            out = out + x.to(self.dtype) @ self.W_skip.T
        return self._undo_norm(out, x)

    def _put_bias(self, bias) -> torch.Tensor | float:
        return 0.0 if bias is None else self._put(bias)

    def _undo_norm(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        norm = self.dictionary.input_norm
        x = x.to(self.dtype)
        if norm == "constant_norm_rescale":
            return out / (math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True))
        if norm == "layer_norm":
            centred = x - x.mean(dim=-1, keepdim=True)
            std = (centred.pow(2).mean(dim=-1, keepdim=True) + LAYER_NORM_EPS).sqrt()
            return out * std + x.mean(dim=-1, keepdim=True)
        return out

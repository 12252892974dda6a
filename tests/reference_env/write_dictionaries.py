"""Write reference dictionaries with the owning libraries' own classes and save code.

Run with the reference venv's python:  VENV/bin/python write_dictionaries.py OUT_DIR

Per dictionary, OUT_DIR/<library>/<name>/ holds the library's own files plus expected.npz:
  x          float32 inputs given to the library
  acts       library encode(x)             (float32 model)
  recon      library forward(x) / decode   (float32 model; includes skip terms)
  acts_f64, recon_f64   the same with the same parameters upcast to float64
Every written directory is loaded back with the library's own loader and re-checked.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

warnings.filterwarnings("ignore")
D_IN, D_SAE, D_OUT, N_ROWS, N_LAYERS, K = 64, 96, 64, 32, 3, 8
CPU = torch.device("cpu")


def randomise(module, g, bias_mean=0.0):
    """Every parameter gets non-zero random values of a sensible scale."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "threshold" in name:
                v = 0.1 + 0.7 * torch.rand(p.shape, generator=g, dtype=torch.float64)
            elif "r_mag" in name:
                v = 0.3 * z
            elif "b_dec" in name:
                v = 0.3 * z
            elif name.startswith("b_") or name.endswith("bias"):
                v = bias_mean + 0.5 * z
            elif "W_skip" in name:
                v = 0.05 * z
            else:  # W_enc, W_dec, encoder.weight
                v = 0.125 * z
            p.copy_(v.to(p.dtype))


def save_expected(d, x, f32, f64):
    """f32/f64: (acts, recon) computed by the library. Checks the mix of zero/non-zero."""
    a = f32[0]
    frac = float((a != 0).float().mean())
    assert 0.0 < frac < 1.0, f"{d}: active fraction {frac}"
    np.savez(
        d / "expected.npz",
        x=x.numpy(),
        acts=a.numpy().astype(np.float32),
        recon=f32[1].numpy().astype(np.float32),
        acts_f64=f64[0].numpy(),
        recon_f64=f64[1].numpy(),
    )
    err = float((f32[0].double() - f64[0]).abs().max())
    print(f"{str(d):60s} active={frac:.3f} max|acts32-acts64|={err:.2e}")


def same(a, b, what):
    for u, v in zip(a, b):
        assert u.shape == v.shape and torch.allclose(u, v, atol=1e-6, rtol=1e-5), f"reload mismatch: {what}"


# ---------------------------------------------------------------- SAELens 6.x
def saelens(
    out,
    g,
    name,
    arch,
    apply_b_dec=True,
    norm="none",
    hook="blocks.1.hook_resid_post",
    hook_out=None,
    bias_mean=0.0,
    x_shape=(N_ROWS, D_IN),
    **extra,
):
    import sae_lens
    from sae_lens import SAE
    from sae_lens.saes.sae import SAEMetadata

    cls, cfg_cls = {
        "standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig),
        "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig),
        "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig),
        "gated": (sae_lens.GatedSAE, sae_lens.GatedSAEConfig),
        "transcoder": (sae_lens.Transcoder, sae_lens.TranscoderConfig),
        "jumprelu_transcoder": (sae_lens.JumpReLUTranscoder, sae_lens.JumpReLUTranscoderConfig),
        "skip_transcoder": (sae_lens.SkipTranscoder, sae_lens.SkipTranscoderConfig),
    }[arch]
    meta = dict(
        model_name="reference-random",
        hook_name=hook,
        hook_head_index=None,
        prepend_bos=True,
        context_size=128,
    )
    if hook_out is not None:
        meta["hook_name_out"] = hook_out
        extra["d_out"] = D_OUT
    cfg = cfg_cls(
        d_in=D_IN,
        d_sae=D_SAE,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=apply_b_dec,
        normalize_activations=norm,
        reshape_activations="hook_z" if hook.endswith("hook_z") else "none",
        metadata=SAEMetadata(**meta),
        **extra,
    )
    sae = cls(cfg)
    randomise(sae, g, bias_mean)
    sae.eval()
    d = out / "saelens" / name
    sae.save_model(d)  # -> cfg.json + sae_weights.safetensors

    def run(m, x):
        with torch.no_grad():
            return m.encode(x), m(x)  # forward = decode(encode(x)) (+ W_skip x for skip TCs)

    x = torch.randn(x_shape, generator=g)
    f32 = run(sae, x)
    same(f32, run(SAE.load_from_disk(d), x), d)
    save_expected(d, x, f32, run(sae.to(torch.float64), x.double()))


# ------------------------------------------------------------ circuit-tracer 0.5
def ct_transcoder_set(out, g, name, jump, skip, hooks=("ln2.hook_normalized", "hook_mlp_out")):
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    from circuit_tracer.utils.caching import load_transcoders_from_cache

    tcs = {}
    for layer in range(N_LAYERS):
        act = JumpReLU(torch.zeros(D_SAE), 0.1) if jump else F.relu
        tcs[layer] = SingleLayerTranscoder(
            D_IN, D_SAE, act, layer, skip_connection=skip, device=CPU, dtype=torch.float32
        )
        randomise(tcs[layer], g)
    ts = TranscoderSet(tcs, feature_input_hook=hooks[0], feature_output_hook=hooks[1], scan=name)
    d = out / "circuit_tracer" / name
    ts.to_safetensors(str(d))  # -> layer_{i}.safetensors
    write_ct_config(d, "transcoder_set", hooks, name)

    def run(m, x):  # x: [n_layers, n_rows, d_model] = each layer's feature_input_hook
        with torch.no_grad():
            acts = m.encode(x)
            return acts, m.decode(acts, x)  # decode adds W_skip term when present

    x = torch.randn(N_LAYERS, N_ROWS, D_IN, generator=g)
    f32 = run(ts, x)
    loaded, _ = load_transcoders_from_cache(name, cache_dir=d.parent, device=CPU, dtype=torch.float32)
    same(f32, run(loaded, x), d)
    save_expected(d, x, f32, run(ts.to(torch.float64), x.double()))


def ct_clt(out, g, name, jump, hooks=("hook_resid_mid", "hook_mlp_out")):
    from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder, load_clt

    clt = CrossLayerTranscoder(
        N_LAYERS,
        D_SAE,
        D_IN,
        activation_function="jump_relu" if jump else "relu",
        lazy_decoder=False,
        lazy_encoder=False,
        feature_input_hook=hooks[0],
        feature_output_hook=hooks[1],
        scan=name,
        device=CPU,
        dtype=torch.float32,
    )
    randomise(clt, g)
    d = out / "circuit_tracer" / name
    clt.to_safetensors(str(d))  # -> W_enc_{i}.safetensors, W_dec_{i}.safetensors
    write_ct_config(d, "cross_layer_transcoder", hooks, name)

    # x: [n_layers, n_rows, d_model]; recon[L] = sum_{l<=L} acts[l] @ W_dec_l[:, L-l] + b_dec[L]
    def run(m, x):
        with torch.no_grad():
            acts = m.encode(x)
            return acts, m.decode(acts)

    x = torch.randn(N_LAYERS, N_ROWS, D_IN, generator=g)
    f32 = run(clt, x)
    for lazy in (False, True):
        same(
            f32,
            run(
                load_clt(
                    str(d),
                    *hooks,
                    scan=name,
                    device=CPU,
                    dtype=torch.float32,
                    lazy_decoder=lazy,
                    lazy_encoder=lazy,
                ),
                x,
            ),
            d,
        )
    save_expected(d, x, f32, run(clt.to(torch.float64), x.double()))


def write_ct_config(d, kind, hooks, name):
    # the layout of circuit-tracer's local cache (utils/caching.py); hub repos add `transcoders:`
    cfg = dict(
        model_name="reference-random",
        model_kind=kind,
        feature_input_hook=hooks[0],
        feature_output_hook=hooks[1],
        scan=name,
    )
    (d / "config.yaml").write_text(yaml.dump(cfg))


# ---------------------------------------------------------------- sparsify 1.3
def sparsify(out, g, name, hookpoint, bias_mean=-1.2, **cfg_kw):
    from sparsify import SparseCoder, SparseCoderConfig

    cfg = SparseCoderConfig(num_latents=D_SAE, k=K, **cfg_kw)
    sc = SparseCoder(D_IN, cfg, device="cpu", dtype=torch.float32)
    randomise(sc, g, bias_mean)  # negative mean: some rows have < k positive pre-activations
    d = out / "sparsify" / name / hookpoint
    sc.save_to_disk(d)  # -> cfg.json + sae.safetensors

    def run(m, x):
        with torch.no_grad():
            top_acts, top_idx, _ = m.encode(x)
            acts = torch.zeros(x.shape[0], D_SAE, dtype=x.dtype).scatter_(-1, top_idx, top_acts)
            return acts, m(x).sae_out  # forward = decode(top-k) (+ x @ W_skip.T)

    x = torch.randn(N_ROWS, D_IN, generator=g)
    f32 = run(sc, x)
    same(f32, run(SparseCoder.load_from_disk(d), x), d)
    save_expected(d, x, f32, run(sc.to(torch.float64), x.double()))


def main():
    out = Path(sys.argv[1])
    g = torch.Generator().manual_seed(20240601)
    torch.manual_seed(0)
    tc = dict(apply_b_dec=False, hook="blocks.1.ln2.hook_normalized", hook_out="blocks.1.hook_mlp_out")
    saelens(out, g, "standard", "standard")
    saelens(out, g, "standard_no_bdec", "standard", apply_b_dec=False)
    saelens(out, g, "standard_layer_norm", "standard", norm="layer_norm")
    saelens(out, g, "standard_constant_norm_rescale", "standard", norm="constant_norm_rescale")
    saelens(out, g, "standard_expected_average_only_in", "standard", norm="expected_average_only_in")
    saelens(out, g, "standard_hook_z", "standard", hook="blocks.1.attn.hook_z", x_shape=(N_ROWS, 4, 16))
    saelens(out, g, "topk", "topk", apply_b_dec=False, bias_mean=-1.2, k=K)  # some rows < k active
    saelens(out, g, "topk_rescale", "topk", bias_mean=-1.2, k=K, rescale_acts_by_decoder_norm=True)
    saelens(out, g, "jumprelu", "jumprelu", apply_b_dec=False)
    saelens(out, g, "jumprelu_b_dec", "jumprelu")
    saelens(out, g, "gated", "gated")
    saelens(out, g, "gated_no_bdec", "gated", apply_b_dec=False)
    saelens(out, g, "transcoder", "transcoder", **tc)
    saelens(out, g, "jumprelu_transcoder", "jumprelu_transcoder", **tc)
    saelens(out, g, "skip_transcoder", "skip_transcoder", **tc)
    ct_transcoder_set(out, g, "plt_relu", jump=False, skip=False)
    ct_transcoder_set(out, g, "plt_jumprelu_skip", jump=True, skip=True)
    ct_clt(out, g, "clt_jumprelu", jump=True)
    ct_clt(out, g, "clt_relu", jump=False)
    sparsify(out, g, "sae_topk", "layers.1", activation="topk")
    sparsify(out, g, "sae_groupmax", "layers.1", activation="groupmax")
    sparsify(
        out, g, "transcoder_skip", "layers.1.mlp", activation="topk", transcode=True, skip_connection=True
    )


if __name__ == "__main__":
    main()

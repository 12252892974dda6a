"""Where a dictionary reads and writes, as TransformerLens hook names (``blocks.L.hook_resid_post``).

Each library names the place its own way: SAELens and circuit-tracer use TransformerLens hook names;
EleutherAI's sparsify names a module of the Hugging Face model (``layers.5`` is the residual stream
after block 5, ``layers.5.mlp`` the MLP: with ``transcode`` its input and its output). They are
brought to one form here, and checked against the model's layer count before anything is read.
"""

from __future__ import annotations

import re

from engine.errors import UserError

# The hooks of a block a dictionary can read or write: the residual stream around each sublayer,
# the sublayers' outputs, the normalised MLP input, the MLP's hidden activations.
SITES = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_mlp_in",
    "hook_mlp_out",
    "hook_attn_out",
    "ln2.hook_normalized",
    "mlp.hook_in",
    "mlp.hook_out",
    "mlp.hook_post",
)
_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_SPARSIFY = re.compile(r"^(?:model\.|gpt_neox\.|transformer\.)?(?:layers|h)\.(\d+)(\.mlp)?$")


def hook_layer(hook: str, field: str) -> int:
    """The block index of a TransformerLens hook name, or one line naming the field that holds it."""
    found = _HOOK.match(hook or "")
    if found is None or found.group(2) not in SITES:
        sites = ", ".join(SITES)
        raise UserError(
            f"{field} {hook!r} is not a hook this program reads: use blocks.L.SITE with SITE one of {sites}"
        )
    return int(found.group(1))


def check_hook_layers(hooks: dict[str, str], n_layers: int | None) -> None:
    """Refuse a hook of a layer the model does not have, naming the field."""
    for field, hook in hooks.items():
        layer = hook_layer(hook, field)
        if n_layers is not None and layer >= n_layers:
            raise UserError(
                f"{field} {hook!r} names layer {layer}, but this model has layers 0-{n_layers - 1}"
            )


def sparsify_hooks(hookpoint: str, transcode: bool) -> tuple[str, str]:
    """(hook read, hook written) of a sparsify hookpoint: ``layers.L`` the residual stream after
    block L (a transcoder: from the stream before it), ``layers.L.mlp`` the MLP's output (an SAE)
    or its input -> output (a transcoder, which sparsify trains on the module's input and output)."""
    found = _SPARSIFY.match(hookpoint)
    if found is None:
        raise UserError(
            f"sparsify hookpoint {hookpoint!r} is not one this program reads: use layers.L or layers.L.mlp"
        )
    layer, mlp = int(found.group(1)), found.group(2) is not None
    if not mlp:  # a transcoder of a whole block reads its input, the residual stream before it
        resid = f"blocks.{layer}.hook_resid_post"
        return (f"blocks.{layer}.hook_resid_pre" if transcode else resid), resid
    out = f"blocks.{layer}.hook_mlp_out"
    return (f"blocks.{layer}.mlp.hook_in" if transcode else out), out

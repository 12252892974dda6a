#!/usr/bin/env bash
# make_reference_env.sh VENV_DIR MAIN_VENV_DIR
#
# Builds (or, if it is already built and unchanged, leaves alone) a venv in which the owning
# libraries -- SAELens 6.54.12, circuit-tracer 0.5.0, EleutherAI sparsify 1.3.3 -- import and
# can build/save/load/encode their dictionaries.  Neither sae-lens (transformer-lens<4) nor
# circuit-tracer (transformers<=4.57.3, huggingface-hub<1) can live in the main venv.
#
# How: the venv is created from the main venv's interpreter without pip; the packages below are
# installed into it with --no-deps by the main venv's pip (--python), and a .pth file then
# appends the main venv's site-packages to sys.path AFTER the venv's own.  So torch, numpy,
# safetensors, pydantic, ... come from the main venv (no second torch), while the venv's own
# transformer-lens 3.2.1 / transformers 4.57.3 / huggingface-hub 0.36 / datasets 4.8 shadow the
# main venv's newer ones.  Only what the import chain needs is installed (nnsight, plotly, nltk,
# babe, dotenv, tenacity are declared dependencies that these code paths never import).
#
# Idempotent: the stamp written after a successful build records the pinned list and a fingerprint
# of both venvs' installed distributions (so upgrading anything in the main venv invalidates it);
# if it matches, the script exits at once (set REFENV_CHECK=1 to also re-run the ~5 s import check).
# Any failure exits non-zero with the reason.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 VENV_DIR MAIN_VENV_DIR" >&2; exit 2; }
VENV=$(realpath -m "$1")
MAIN=$(realpath -m "$2")
MAIN_PY="$MAIN/bin/python"
[ -x "$MAIN_PY" ] || { echo "error: no python at $MAIN_PY" >&2; exit 1; }
"$MAIN_PY" -m pip --version >/dev/null 2>&1 || { echo "error: $MAIN has no pip" >&2; exit 1; }

PKGS=(
  sae-lens==6.54.12
  circuit-tracer==0.5.0
  eai-sparsify==1.3.3
  transformer-lens==3.2.1    # newest TL<4 that accepts transformers 4.57 (3.3+ want >=5.4)
  transformers==4.57.3       # circuit-tracer pins <=4.57.3
  tokenizers==0.22.1         # transformers 4.57 checks tokenizers<=0.23.0 at import
  huggingface-hub==0.36.2    # transformers 4.57 checks <1.0; circuit-tracer's loaders need <1.0
  datasets==4.8.5            # datasets 5.x needs huggingface-hub>=1
  better-abc==0.0.3          # transformer-lens 3.x
  simple-parsing==0.1.9      # sae-lens, sparsify
  docstring-parser==0.18.0   # simple-parsing
  natsort==8.4.0             # sparsify
  schedulefree==1.4.1        # sparsify
)

MAIN_SITE=$("$MAIN_PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
ls -d "$MAIN_SITE"/torch-*.dist-info >/dev/null 2>&1 || { echo "error: no torch in $MAIN_SITE" >&2; exit 1; }
fingerprint() {  # installed distributions (name-version) of both venvs + the reference venv's .pth files
  { ls -d "$MAIN_SITE"/*.dist-info "$VENV"/lib/python3*/site-packages/*.dist-info
    cat "$VENV"/lib/python3*/site-packages/*.pth; } 2>/dev/null | sha256sum | cut -c1-16
}
STAMP="$VENV/.reference_env_stamp"
stamp_text() { echo "v1 ${PKGS[*]} main=$MAIN_SITE dists=$(fingerprint)"; }

check() {  # imports every module the reference scripts use; prints versions; non-zero on failure
  REF_VENV="$VENV" REF_MAIN="$MAIN" "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, os, sys
import torch, sae_lens, transformers, transformer_lens, sparsify
from sae_lens import (SAE, StandardSAE, TopKSAE, JumpReLUSAE, GatedSAE, Transcoder,
                      JumpReLUTranscoder, SkipTranscoder)
from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder, load_clt
from circuit_tracer.utils.caching import load_transcoders_from_cache
from sparsify import SparseCoder
venv, main = os.environ["REF_VENV"] + "/", os.environ["REF_MAIN"] + "/"
own = {"sae_lens": sae_lens, "transformers": transformers, "transformer_lens": transformer_lens}
for name, mod in own.items():
    assert mod.__file__.startswith(venv), f"{name} imported from {mod.__file__}, not {venv}"
assert torch.__file__.startswith(main), f"torch imported from {torch.__file__}, not {main}"
print("reference env OK:", ", ".join(f"{p} {md.version(p)}" for p in (
    "sae-lens", "circuit-tracer", "eai-sparsify", "transformer-lens", "transformers",
    "huggingface-hub", "torch")))
EOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ]; then
  [ "${REFENV_CHECK:-0}" = 1 ] || { echo "reference env at $VENV is up to date"; exit 0; }
  if check; then exit 0; fi
  echo "existing reference env at $VENV fails its check; rebuilding" >&2
fi

if [ -e "$VENV" ]; then
  # only ever delete something that is a venv (never an arbitrary directory)
  [ -f "$VENV/pyvenv.cfg" ] || { echo "error: $VENV exists and is not a venv; refusing to replace it" >&2; exit 1; }
  rm -rf "$VENV"
fi

"$MAIN_PY" -m venv --without-pip "$VENV"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# The .pth is written only after this install, so pip never sees (or tries to touch) the main venv.
if ! "$MAIN_PY" -m pip --python "$VENV/bin/python" install --no-deps --no-compile \
      --only-binary=:all: --no-input "${PKGS[@]}" >"$LOG" 2>&1; then
  grep -v "^WARNING: Location" "$LOG" >&2
  echo "error: pip install into $VENV failed" >&2
  exit 1
fi
VENV_SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
echo "$MAIN_SITE" > "$VENV_SITE/zzz_main_venv_site_packages.pth"
# Byte-compile the venv's own packages (PYTHONDONTWRITEBYTECODE may be set, so imports would never
# cache them); the ~2000 transformers/models files are skipped -- only a dozen are ever imported.
"$VENV/bin/python" -m compileall -q -j0 -x 'transformers/models/' "$VENV_SITE" >/dev/null \
  || echo "warning: some files did not byte-compile (harmless)" >&2

if ! check; then
  echo "error: the reference env at $VENV does not import; see the traceback above" >&2
  exit 1
fi
stamp_text > "$STAMP"

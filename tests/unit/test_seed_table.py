"""The seed write-up's table: Llama-3.2-1B-Instruct, layer 13, neurons 0-19, top-5 by |dot|.

Runs only where that model is in the local Hugging Face cache (nothing is downloaded here).
"""

from __future__ import annotations

import pytest

from engine.errors import UserError

MODEL = "meta-llama/Llama-3.2-1B-Instruct"
SEED_TABLE = {
    0: [(0.080, "hazi"), (0.073, "unders"), (0.070, "Lak"), (0.069, "OK"), (0.068, "igrants")],
    1: [(0.107, "orgia"), (0.097, "iy"), (0.090, "sian"), (0.090, "161"), (0.088, "ária")],
    2: [(0.057, "aph"), (0.055, "appen"), (0.052, "Essen"), (0.052, "usi"), (0.052, "чення")],
    3: [(0.083, "úp"), (0.082, "Sheets"), (0.079, "aida"), (0.078, "Wire"), (0.077, "omb")],
    4: [(0.074, "stein"), (0.073, "seed"), (0.072, "pea"), (0.071, "fib"), (0.070, "iverse")],
    5: [(0.082, "ieres"), (0.082, "iva"), (0.079, "agger"), (0.079, "mons"), (0.078, "ento")],
    6: [(0.312, "coming"), (0.268, "Coming"), (0.246, "Coming"), (0.228, "coming"), (0.224, "Up")],
    7: [(0.076, "Sent"), (0.075, "Killing"), (0.073, "Sent"), (0.072, "sent"), (0.071, "hek")],
    8: [(0.161, "es"), (0.136, "ths"), (0.130, "ums"), (0.130, "ues"), (0.129, "oks")],
    9: [(0.206, "St"), (0.171, "St"), (0.170, "st"), (0.166, "-st"), (0.157, "-St")],
    10: [(0.101, "utherland"), (0.098, "様"), (0.087, "arken"), (0.087, "utherford"), (0.087, "cha")],
    11: [(0.078, "ica"), (0.076, "statist"), (0.075, "arrivals"), (0.073, "ullet"), (0.072, "ural")],
    12: [(0.081, "nut"), (0.080, "�"), (0.078, "Doc"), (0.076, "zet"), (0.075, "Sparks")],
    13: [
        (0.087, "disconnected"),
        (0.084, "connection"),
        (0.083, "connect"),
        (0.082, "负"),
        (0.081, "disconnect"),
    ],
    14: [(0.225, "det"), (0.214, "det"), (0.205, "Det"), (0.194, "Det"), (0.175, "DET")],
    15: [(0.192, "for"), (0.160, "for"), (0.140, "For"), (0.134, "For"), (0.129, "FOR")],
    16: [(0.107, "wa"), (0.087, "/sub"), (0.084, "sub"), (0.079, "wa"), (0.077, "sub")],
    17: [(0.075, "inf"), (0.074, "subscript"), (0.071, "ोह"), (0.070, "sâu"), (0.069, "Lad")],
    18: [(0.082, "�"), (0.082, "endif"), (0.077, "subtract"), (0.076, "ola"), (0.076, "OLA")],
    19: [(0.090, "leh"), (0.086, "تص"), (0.085, "recher"), (0.084, "Labels"), (0.080, "abs")],
}


def _same_token(ours: str, printed: str) -> bool:
    if printed == "�":  # the write-up printed undecodable bytes as a replacement character
        return "<0x" in ours or "�" in ours
    return ours.strip() == printed.strip()


def test_seed_table_layer_13(tmp_path):
    from engine.neuron_engine import EngineOptions, NeuronEngine
    from engine.settings import ScanSettings

    try:
        engine = NeuronEngine(EngineOptions(model=MODEL, device="auto", cache_dir=tmp_path / "c"))
    except UserError as error:
        pytest.skip(f"{MODEL} is not in the local Hugging Face cache ({error}); this test needs it")
    result = engine.layer(13, ScanSettings(top_k=5))
    vocab = engine.vocabulary
    for neuron, expected in SEED_TABLE.items():
        for rank, (score, token) in enumerate(expected):
            ours = abs(result.top_dots[neuron, rank])
            assert round(ours, 3) == pytest.approx(score, abs=1e-9), (neuron, rank, ours, score)
            assert _same_token(vocab.text(int(result.top_ids[neuron, rank])), token), (neuron, rank)

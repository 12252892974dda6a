"""Per neuron of one layer, what the activation pass keeps while it reads the corpus.

- Each **pole** (positive: activation > 0, negative: activation < 0) keeps its top examples by
  |activation| and how many positions fell in it. A negative activation writes -W_out, so the
  negative pole is a neuron of its own that promotes what the weights list as suppressed.
- For a gated MLP (SwiGLU, GeGLU: activation = act(gate) * up), each of the four **sign cases** of
  (gate pre-activation, up) — ``gate+up+``, ``gate+up-``, ``gate-up+``, ``gate-up-``, where > 0 is
  + and anything else - — keeps its top examples by |activation| and its count of positions.
- The histogram of activations covers both signs.
- The direct logit attribution toward each position's predicted token: how often each neuron tops
  its layer, its sums per pole, and how often one neuron carries half the layer's positive total
  (``engine.activations.attribution_state``).

Everything merges exactly: top examples by (|activation| descending, global index ascending), the
counts by addition. So batches, resumed runs and processes can be combined in any grouping and
give the same state as one pass in order.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from engine.activations import fused_update
from engine.activations.attribution_state import FIXED_POINT, attribution_counts, fold_attribution
from engine.data.experts import LayerExperts
from engine.data.score_histogram import KEY_SHIFT, MANTISSA_BITS, SIGN_KEY

# Activation histograms: a fixed window of octaves below 2^ACT_TOP_POWER (larger values fall in the
# outermost bins, smaller ones next to zero), in engine.score_histogram's bin layout.
ACT_OCTAVES = 32
ACT_TOP_POWER = 12
ACT_TOP = 127 + ACT_TOP_POWER  # the window's upper end as a biased float32 exponent
_ACT_PER_SIGN = ACT_OCTAVES << MANTISSA_BITS
_ACT_LOW = (ACT_TOP - ACT_OCTAVES) << MANTISSA_BITS

_TINY = float(torch.finfo(torch.float32).smallest_normal) * float(2.0**-23)  # the least positive float32


def rank_examples(values: torch.Tensor, index: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``keep`` best (value, index) pairs: larger value first, ties by lower index.
    Empty slots are (-inf, -1) and sort last."""
    sentinel = torch.where(index < 0, torch.iinfo(torch.int64).max, index)
    order = torch.argsort(sentinel, dim=1, stable=True)
    values, index = values.gather(1, order), index.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :keep]
    return values.gather(1, order), index.gather(1, order)


class TopLists:
    """Per unit, the ``keep`` best (score, global index) pairs offered so far."""

    def __init__(self, units: int, keep: int, device: torch.device):
        self.keep = keep
        self.values = torch.full((units, keep), -torch.inf, device=device)
        self.index = torch.full((units, keep), -1, dtype=torch.int64, device=device)

    @property
    def units(self) -> int:
        return int(self.values.shape[0])

    def bar(self) -> torch.Tensor:
        """[units] the score an entry must reach to enter (ties at the bar may still enter)."""
        return self.values[:, -1]

    def unfilled(self) -> torch.Tensor:
        return self.index[:, -1] < 0

    def admit(self, units: torch.Tensor, scores: torch.Tensor, index: torch.Tensor) -> None:
        """Entrants (unit, score, global index), in any order."""
        if units.numel() == 0:
            return
        counts = torch.bincount(units, minlength=self.units)
        width = int(counts.max())
        # Scatter the entrants into a dense [units, width] block, padded with empty slots.
        order = torch.argsort(units, stable=True)
        units, scores, index = units[order], scores[order], index[order]
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(units.numel(), device=units.device) - start[units]
        new_values = torch.full((self.units, width), -torch.inf, device=self.values.device)
        new_index = torch.full((self.units, width), -1, dtype=torch.int64, device=self.values.device)
        new_values[units, slot] = scores
        new_index[units, slot] = index
        if int(index.min()) > int(self.index.max()):
            # Entrants come after everything kept (a pass reads positions in order) and, per unit,
            # in index order: one stable sort by value then gives ties by lower index.
            values = torch.cat([self.values, new_values], 1)
            order = torch.argsort(values, dim=1, descending=True, stable=True)[:, : self.keep]
            self.values = values.gather(1, order)
            self.index = torch.cat([self.index, new_index], 1).gather(1, order)
        else:
            self.merge_lists(new_values, new_index)

    def merge_lists(self, values: torch.Tensor, index: torch.Tensor) -> None:
        self.values, self.index = rank_examples(
            torch.cat([self.values, values], 1), torch.cat([self.index, index], 1), self.keep
        )


def raised_bar(
    bar: torch.Tensor,
    unfilled: torch.Tensor,
    keep: int,
    scores: torch.Tensor,
    member: torch.Tensor | None = None,
) -> torch.Tensor:
    """``bar`` [units] raised, for units whose list is not yet full, to the batch's own keep-th
    score (entries below it cannot make the list). ``scores`` [positions, units]; ``member`` masks
    the entries that belong to each unit."""
    if scores.shape[0] < keep or not bool(unfilled.any()):
        return bar
    columns = unfilled.nonzero().squeeze(1)
    part = scores[:, columns]
    if member is not None:
        part = torch.where(member[:, columns], part, -torch.inf)
    bar = bar.clone()
    bar[columns] = torch.maximum(bar[columns], part.topk(keep, dim=0).values[-1])
    return bar


class LayerActivationState:
    """Running per-neuron state of one layer; ``update`` takes a batch's valid positions."""

    def __init__(
        self,
        d_mlp: int,
        keep: int,
        case_keep: int,
        gated: bool,
        device: torch.device,
        experts: LayerExperts | None = None,
        fit_width: int = 0,
    ):
        """``experts``: the layer's experts (engine.data.experts), whose neurons run only where the
        router sends a position to their expert: ``routed`` counts those positions per neuron."""
        self.d_mlp, self.keep, self.case_keep, self.gated = d_mlp, keep, case_keep, gated
        self.device, self.experts, self.fit_width = device, experts, fit_width
        self.lists = {"positive": TopLists(d_mlp, keep, device), "negative": TopLists(d_mlp, keep, device)}
        self.counts = {
            "positive": torch.zeros(d_mlp, dtype=torch.int64, device=device),
            "negative": torch.zeros(d_mlp, dtype=torch.int64, device=device),
            "hist_counts": torch.zeros((2 * _ACT_PER_SIGN, d_mlp), dtype=torch.int32, device=device),
        }
        if gated:  # case c of neuron n is unit c * d_mlp + n
            self.lists["cases"] = TopLists(4 * d_mlp, case_keep, device)
            self.counts["cases"] = torch.zeros((4, d_mlp), dtype=torch.int64, device=device)
        self.counts.update(attribution_counts(d_mlp, device))  # engine.activations.attribution_state
        if experts is not None:
            self.counts["routed"] = torch.zeros(d_mlp, dtype=torch.int64, device=device)
            self.counts["gate_sum"] = torch.zeros(d_mlp, dtype=torch.int64, device=device)  # fixed point
        if fit_width:  # a dictionary's reconstruction: (positions, squared error, squares), sums
            self.counts["fit"] = torch.zeros(3, dtype=torch.float64, device=device)
            self.counts["fit_sum"] = torch.zeros(fit_width, dtype=torch.float64, device=device)
        self._one = torch.ones((1, 1), dtype=torch.int32, device=device)

    def fresh(self) -> LayerActivationState:
        return LayerActivationState(
            self.d_mlp, self.keep, self.case_keep, self.gated, self.device, self.experts, self.fit_width
        )

    def count_fit(self, target: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """Add real positions' target activations and a dictionary's reconstruction of them
        [n, d] to the sums the explained variance is read from (float64)."""
        target, reconstruction = target.double(), reconstruction.double()
        self.counts["fit"] += torch.stack(
            [
                torch.tensor(float(target.shape[0]), dtype=torch.float64, device=target.device),
                (target - reconstruction).pow(2).sum(),
                target.pow(2).sum(),
            ]
        ).to(self.device)
        self.counts["fit_sum"] += target.sum(0).to(self.device)

    def explained_variance(self) -> float | None:
        if "fit" not in self.counts:
            return None
        n, error, squares = (float(v) for v in self.counts["fit"].cpu())
        total = self.counts["fit_sum"].cpu()
        variance = squares - float(total.pow(2).sum()) / n if n else 0.0
        return 1.0 - error / variance if variance > 0 else None

    def count_routed(self, gates: torch.Tensor, rows: torch.Tensor) -> None:
        """Add a batch's routing: ``gates`` [n, d_mlp], the weight each neuron's expert got at
        each position (0 where it did not run), whose ``rows`` are real positions. The weights are
        summed in fixed point, so that sums over ranks do not depend on their order."""
        real = gates[rows]
        self.counts["routed"] += (real > 0).sum(0)
        self.counts["gate_sum"] += torch.round(real.double() * FIXED_POINT).to(torch.int64).sum(0)

    def update(
        self,
        activations: torch.Tensor,
        index: torch.Tensor,
        gate: torch.Tensor | None = None,
        up: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> None:
        """``activations`` [n, d_mlp] whose ``rows`` (all by default) are real positions, at
        global ``index`` [len(rows)] (ascending); for a gated MLP also its gate pre-activations
        and up projections, laid out alike."""
        if self.gated and (gate is None or up is None):
            raise ValueError("a gated layer's update needs its gate and up values")
        if fused_update.AVAILABLE and activations.device.type == "cpu":
            self._update_fused(activations, index, gate, up, rows)
            return
        if rows is not None:
            activations = activations[rows]
            gate = None if gate is None else gate[rows]
            up = None if up is None else up[rows]
        activations = activations.float().contiguous()
        self.counts["positive"] += (activations > 0).sum(0)
        self.counts["negative"] += (activations < 0).sum(0)
        self._count_bins(activations)
        self._offer_pole(self.lists["positive"], activations, index)
        self._offer_pole(self.lists["negative"], activations.neg(), index)
        if self.gated:
            assert gate is not None and up is not None
            self._offer_cases(activations, gate, up, index)

    def update_attribution(self, dla: torch.Tensor, activations: torch.Tensor) -> None:
        """Real positions' attributions toward their predicted tokens [n, d_mlp] (float64) and
        their activations [n, d_mlp]."""
        fold_attribution(self.counts, dla, activations.float())

    def _update_fused(self, activations, index, gate, up, rows) -> None:
        """The same update in one compiled sweep (engine.activations.fused_update)."""
        activations = activations.float().contiguous()
        if rows is None:
            rows = torch.arange(activations.shape[0])
        positive, negative = self.lists["positive"], self.lists["negative"]
        gated = self.gated and gate is not None and up is not None
        if gated:
            gate, up = gate.float().contiguous(), up.float().contiguous()
        else:
            gate = up = activations  # unread placeholders of the right type
        pos_bar, neg_bar = positive.bar().clone(), negative.bar().clone()
        case_bar = self.lists["cases"].bar().view(4, self.d_mlp).clone() if gated else torch.zeros((4, 1))
        self._raise_open_bars(activations, rows, gate, up, gated, pos_bar, neg_bar, case_bar)
        pos_bar, neg_bar = pos_bar.clamp_min(_TINY), neg_bar.clamp_min(_TINY)
        codes = torch.empty((rows.shape[0], self.d_mlp), dtype=torch.uint8)
        fused_update.sweep(
            activations.numpy(),
            activations.view(torch.int32).numpy(),
            rows.numpy(),
            gate.numpy(),
            up.numpy(),
            gated,
            pos_bar.contiguous().numpy(),
            neg_bar.contiguous().numpy(),
            case_bar.contiguous().numpy(),
            KEY_SHIFT,
            SIGN_KEY,
            _ACT_LOW,
            _ACT_PER_SIGN,
            self.counts["positive"].numpy(),
            self.counts["negative"].numpy(),
            self.counts["hist_counts"].numpy(),
            self.counts["cases"].numpy() if gated else np.zeros((4, 1), dtype=np.int64),
            codes.numpy(),
        )
        at, neurons = codes.nonzero(as_tuple=True)
        if at.numel() == 0:
            return
        code = codes[at, neurons]
        value = activations[rows[at], neurons]
        where = index[at]
        for bit, lists, score in (
            (fused_update.POSITIVE, positive, value),
            (fused_update.NEGATIVE, negative, value.neg()),
        ):
            chosen = (code & bit) != 0
            lists.admit(neurons[chosen], score[chosen], where[chosen])
        if gated:
            chosen = (code & fused_update.CASE) != 0
            case = ((code[chosen] >> 2) & 3).long()
            self.lists["cases"].admit(case * self.d_mlp + neurons[chosen], value[chosen].abs(), where[chosen])

    def _raise_open_bars(self, activations, rows, gate, up, gated, pos_bar, neg_bar, case_bar) -> None:
        """Raise, in place, the bars of units whose list is not yet full to this batch's own
        keep-th score (the eager path's ``raised_bar``, computed by a compiled selection)."""
        positive, negative = self.lists["positive"], self.lists["negative"]
        pos_open = (
            positive.unfilled()
            if rows.shape[0] >= positive.keep
            else torch.zeros(self.d_mlp, dtype=torch.bool)
        )
        neg_open = (
            negative.unfilled()
            if rows.shape[0] >= negative.keep
            else torch.zeros(self.d_mlp, dtype=torch.bool)
        )
        if gated and rows.shape[0] >= self.case_keep:
            case_open = self.lists["cases"].unfilled().view(4, self.d_mlp)
        else:
            case_open = torch.zeros((4, self.d_mlp), dtype=torch.bool)
        if not (bool(pos_open.any()) or bool(neg_open.any()) or bool(case_open.any())):
            return
        pos_found, neg_found = torch.full_like(pos_bar, -torch.inf), torch.full_like(neg_bar, -torch.inf)
        case_found = torch.full((4, self.d_mlp), -torch.inf)
        fused_update.batch_bars(
            activations.numpy(),
            rows.numpy(),
            gate.numpy(),
            up.numpy(),
            gated,
            positive.keep,
            self.case_keep,
            pos_open.numpy(),
            neg_open.numpy(),
            case_open.contiguous().numpy(),
            pos_found.numpy(),
            neg_found.numpy(),
            case_found.numpy(),
        )
        torch.maximum(pos_bar, pos_found, out=pos_bar)
        torch.maximum(neg_bar, neg_found, out=neg_bar)
        if gated:
            torch.maximum(case_bar, case_found, out=case_bar)

    def _case_bars(self, activations: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        lists = self.lists["cases"]
        bars = lists.bar().view(4, self.d_mlp)
        unfilled = lists.unfilled().view(4, self.d_mlp)
        if not bool(unfilled.any()) or activations.shape[0] < lists.keep:
            return bars
        gate_plus, up_plus = gate > 0, up > 0
        magnitude = activations.abs()
        members = (gate_plus & up_plus, gate_plus & ~up_plus, ~gate_plus & up_plus, ~gate_plus & ~up_plus)
        return torch.stack(
            [raised_bar(bars[c], unfilled[c], lists.keep, magnitude, members[c]) for c in range(4)]
        )

    @staticmethod
    def _offer_pole(lists: TopLists, scores: torch.Tensor, index: torch.Tensor) -> None:
        """Entries with score > 0 that reach the bar (the pole's examples are its own sign only)."""
        bar = raised_bar(lists.bar(), lists.unfilled(), lists.keep, scores).clamp_min(_TINY)
        rows, units = (scores >= bar).nonzero(as_tuple=True)
        lists.admit(units, scores[rows, units], index[rows])

    def _offer_cases(
        self, activations: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, index: torch.Tensor
    ) -> None:
        gate_plus, up_plus = gate > 0, up > 0
        both = (gate_plus & up_plus).sum(0)
        n_gate, n_up = gate_plus.sum(0), up_plus.sum(0)
        self.counts["cases"] += torch.stack(
            [both, n_gate - both, n_up - both, activations.shape[0] - n_gate - n_up + both]
        )
        magnitude = activations.abs()
        lists = self.lists["cases"]
        bars = self._case_bars(activations, gate, up)
        # Each entry's bar is its own case's: one pass over the block, whatever the case.
        bar = torch.where(
            gate_plus, torch.where(up_plus, bars[0], bars[1]), torch.where(up_plus, bars[2], bars[3])
        )
        rows, neurons = (magnitude >= bar).nonzero(as_tuple=True)
        case = (~gate_plus[rows, neurons]).long() * 2 + (~up_plus[rows, neurons]).long()
        lists.admit(case * self.d_mlp + neurons, magnitude[rows, neurons], index[rows])

    def _count_bins(self, activations: torch.Tensor) -> None:
        keys = torch.bitwise_right_shift(activations.view(torch.int32), KEY_SHIFT)  # negative for < 0
        negative = keys < 0
        step = (keys.bitwise_and_(SIGN_KEY - 1) - _ACT_LOW).clamp_(0, _ACT_PER_SIGN - 1)
        bins = torch.where(negative, _ACT_PER_SIGN - 1 - step, _ACT_PER_SIGN + step)
        self.counts["hist_counts"].scatter_add_(0, bins.long(), self._one.expand(bins.shape))

    def histogram(self) -> np.ndarray:
        """[d_mlp, 2 * ACT_OCTAVES * 8] int32 counts, engine.score_histogram's layout, top ACT_TOP."""
        return self.counts["hist_counts"].T.cpu().numpy().astype(np.int32)

    def merge(self, other: LayerActivationState) -> None:
        for name, lists in self.lists.items():
            lists.merge_lists(other.lists[name].values, other.lists[name].index)
        for name, count in self.counts.items():
            count += other.counts[name]

    # --- a pickle-free byte form, for checkpoints and for gathering across processes ---------
    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for name, lists in self.lists.items():
            out[f"{name}_values"] = lists.values.cpu().numpy()
            out[f"{name}_index"] = lists.index.cpu().numpy()
        for name, count in self.counts.items():
            out[f"{name}_count" if name != "hist_counts" else name] = count.cpu().numpy()
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for name, lists in self.lists.items():
            values, index = arrays[f"{name}_values"], arrays[f"{name}_index"]
            if values.shape != lists.values.shape or index.shape != lists.index.shape:
                raise ValueError("a checkpoint of other settings")
            lists.values = torch.from_numpy(values).to(self.device)
            lists.index = torch.from_numpy(index).to(self.device)
        for name in self.counts:
            value = arrays[f"{name}_count" if name != "hist_counts" else name]
            if value.shape != self.counts[name].shape:
                raise ValueError("a checkpoint of other settings")
            self.counts[name] = torch.from_numpy(value).to(self.device)


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    # Histograms are mostly empty bins. (numpy's stub reads **arrays as allow_pickle.)
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}

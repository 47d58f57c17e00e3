"""The two baselines every separation table shows.

`mixture`: the mixture itself as the estimate. Its SDRi is 0 by definition,
a check that the scoring subtracts the right thing.

`oracle_irm`: the ideal ratio mask computed from the true sources (a
benchmark mixture's target and interference), |S_t|^2 / (|S_t|^2 + |S_i|^2)
on the same STFT as the mask-based methods: the upper bound of a mask method
on that STFT. It needs the references, so it only runs on benchmarks.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .base import Query, Separated, Separator
from .masks import HOP, N_FFT, apply_masks, stft, wiener_masks


class MixtureBaseline(Separator):
    sample_rate = None   # any rate: works at the input's

    def separate(self, mixture: np.ndarray, query: Query, references=None) -> Separated:
        return Separated(target=np.array(mixture, dtype=np.float32, copy=True), info={"method": "mixture"})


class OracleIRM(Separator):
    sample_rate = None
    needs_references = True

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP):
        self.n_fft, self.hop = int(n_fft), int(hop)

    def config(self) -> dict:
        return {"n_fft": self.n_fft, "hop": self.hop, "mask": "|S_t|^2 / (|S_t|^2 + |S_i|^2)"}

    def separate(self, mixture: np.ndarray, query: Query, references=None) -> Separated:
        if not references or "target" not in references:
            raise UserError("oracle_irm needs the true sources of the mixture: it runs on benchmark mixtures "
                            "(evaluate.py), not on files")
        target = references["target"]
        interference = references.get("interference", mixture - target)
        mags = [np.abs(stft(s, self.n_fft, self.hop)) for s in (target, interference)]
        masks = wiener_masks(mags)
        estimate, rest = apply_masks(mixture, masks, stft(mixture, self.n_fft, self.hop), self.hop)
        return Separated(target=estimate, sources={"interference": rest}, info={"method": "oracle_irm"})

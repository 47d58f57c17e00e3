"""Separation metrics.

`sdr` and `si_sdr` are AudioSep's own definitions (`utils.calculate_sdr` /
`calculate_sisdr` in Audio-AGI/AudioSep), so that our ESC-50 numbers mean what
its paper's mean: SDR is the plain signal-to-error ratio (no allowed
distortion), with both energies floored at 1e-10; SI-SDR projects the
estimate on the reference first, with float32 epsilon in numerator,
denominator and scale. SDRi = SDR(estimate) - SDR(mixture), both against the
same reference.

`bss_sdr` is BSS-eval v4 SDR (a 512-tap distortion filter is allowed), from
`fast_bss_eval`, for the NMF duet setting of seed 002; its agreement with
`mir_eval` is checked in the tests.
"""
from __future__ import annotations

import math

import numpy as np

SDR_EPS = 1e-10


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(mean(ref^2) / mean((est - ref)^2)), energies floored at 1e-10."""
    reference = np.asarray(reference, dtype=np.float64)
    error = np.asarray(estimate, dtype=np.float64) - reference
    signal = max(float(np.mean(reference ** 2)), SDR_EPS)
    noise = max(float(np.mean(error ** 2)), SDR_EPS)
    return 10.0 * math.log10(signal / noise)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR with AudioSep's epsilon placement (eps of the
    reference's dtype, float32 for audio read as float32)."""
    eps = float(np.finfo(np.asarray(reference).dtype if np.asarray(reference).dtype.kind == "f"
                         else np.float64).eps)
    reference = np.asarray(reference, dtype=np.float64).ravel()
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    scale = (eps + float(reference @ estimate)) / (float(reference @ reference) + eps)
    target = scale * reference
    residual = estimate - target
    return 10.0 * math.log10((eps + float(target @ target)) / (eps + float(residual @ residual)))


def bss_sdr(reference: np.ndarray, estimate: np.ndarray, filter_length: int = 512) -> float:
    """BSS-eval SDR (dB) of one estimate against its reference: the energy of
    the reference filtered by the best `filter_length`-tap filter over the
    rest of the estimate (this depends on the own reference only, so no other
    source or permutation is needed). NaN when the reference is silent."""
    import fast_bss_eval
    from threadpoolctl import threadpool_limits
    reference = np.asarray(reference, dtype=np.float64)[None]
    estimate = np.asarray(estimate, dtype=np.float64)[None]
    if float(np.sum(reference ** 2)) <= SDR_EPS:
        return math.nan
    # one reference and one estimate: sdr()'s permutation search has nothing to permute; one BLAS
    # thread, since at this size extra threads only spin against each other (100x slower on busy cores)
    with threadpool_limits(1):
        return float(fast_bss_eval.sdr(reference, estimate, filter_length=filter_length)[0])


def score(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray, bss_eval: bool = False) -> dict:
    """The per-mixture record: AudioSep's SDR, SDRi and SI-SDR of `estimate`,
    and with `bss_eval` BSS-eval SDR of it."""
    n = min(len(reference), len(estimate), len(mixture))
    reference, estimate, mixture = reference[:n], estimate[:n], mixture[:n]
    value_sdr, mixture_sdr = sdr(reference, estimate), sdr(reference, mixture)
    out = {"sdr": value_sdr, "sdr_mixture": mixture_sdr, "sdri": value_sdr - mixture_sdr,
           "sisdr": si_sdr(reference, estimate)}
    if bss_eval:
        out["bss_sdr"] = bss_sdr(reference, estimate)
    return out

"""Template matching tests (SP 800-22 Rev 1a §2.7 non-overlapping, §2.8 overlapping).

Both count occurrences of an m-bit pattern in N blocks of M bits. Windows are encoded once as
m-bit integers (ε_j is the most significant bit), so matching a template is an integer compare.
Windows never straddle two blocks; bits after the last whole block are discarded.

§2.7 counts *non-overlapping* occurrences: the scan resumes after a match. The standard defines
the test for aperiodic templates only (B is taken from "a template library of non-periodic
patterns", §2.7.2), and μ, σ² of §2.7.4 hold only for them. An aperiodic template cannot overlap
itself (no proper prefix equals the suffix of the same length), so two of its occurrences are
always at least m bits apart and the skip-after-match scan takes every one of them: the count is
simply the number of matching windows. LoKey therefore counts matches (one ``bincount`` per block
covers all 148 templates of m = 9 at once) and refuses periodic templates, for which the skip
would matter and the statistic's mean and variance would be wrong (p ≈ 0 on good random data for
B = 101). The tests check the counts against the standard's literal scan.

§2.8 counts *overlapping* occurrences of the all-ones template. Class probabilities (convention):
the Rev 1a text lists π_0..π_5 = 0.364091, 0.185659, 0.139381, 0.100571, 0.070432, 0.139865 for
m = 9, M = 1032. These are the exact probabilities; LoKey computes them for any (m, M, K) as the
distribution of the number of matches in a uniformly random M-bit block, by a transfer matrix over
(current run of ones capped at m, matches so far capped at K) raised to the M-th power
(:func:`overlapping_probabilities`), and reproduces the printed values to all six digits. The
closed form of §3.8, π_u = e^{-η} 2^{-u} Σ_{l=1}^{u} C(u-1, l-1) η^l / l! with η = λ/2, is a
compound-Poisson approximation (0.367879, 0.183940, 0.137955, 0.099634, 0.069935, 0.140657 for
m = 9, M = 1032); NIST STS 2.1.2 declares the exact table but overwrites it with that
approximation at run time, so LoKey's p-values differ slightly from STS's on the same data.
The standard's example 2.8.4 (m = 2, M = 10) uses the approximation, and a scan of its printed
input finds block counts nu = (0, 2, 0, 1, 1, 1); it is not used as a known answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, igamc, require_length

__all__ = [
    "aperiodic_templates",
    "non_overlapping_template",
    "overlapping_probabilities",
    "overlapping_template",
]

_MAX_TEMPLATE_BITS = 62  # window codes are int64
_MAX_ALL_TEMPLATES_M = 21  # the longest template set NIST STS ships (281,076 templates)


def _positive_int(test: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{test}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _is_aperiodic(code: int, m: int) -> bool:
    """True when the m-bit pattern ``code`` cannot overlap itself (no border)."""
    return all((code >> k) != (code & ((1 << (m - k)) - 1)) for k in range(1, m))


def _aperiodic_codes(m: int) -> npt.NDArray[np.int64]:
    """All aperiodic m-bit patterns as integers (first bit most significant), ascending.

    A pattern B is periodic when some shift k (1 ≤ k < m) makes it overlap itself:
    b_{k+1}..b_m = b_1..b_{m-k}, i.e. its top m - k bits equal its bottom m - k bits.
    """
    codes = np.arange(1 << m, dtype=np.int64)
    aperiodic = np.ones(codes.size, dtype=bool)
    for k in range(1, m):
        aperiodic &= (codes >> k) != (codes & ((1 << (m - k)) - 1))
    return codes[aperiodic]


def aperiodic_templates(m: int = 9) -> tuple[tuple[int, ...], ...]:
    """The aperiodic templates of length m in lexicographic order (NIST STS's template files).

    2, 4, 6, 12, 20, 40, 74, 148, 284 templates for m = 2..10. The order is the order of the
    p-values :func:`non_overlapping_template` returns when no template is given.
    """
    m = _positive_int("non_overlapping_template", "m", m, 2)
    if m > _MAX_ALL_TEMPLATES_M:
        raise ValueError(f"non_overlapping_template: m must be <= {_MAX_ALL_TEMPLATES_M}, got {m}")
    return tuple(
        tuple((int(code) >> (m - 1 - j)) & 1 for j in range(m)) for code in _aperiodic_codes(m)
    )


def _window_codes(blocks: Bits, m: int) -> npt.NDArray[np.int64]:
    """(N, M) bits → (N, M - m + 1) integers, window at j = ε_j..ε_{j+m-1}, ε_j most significant."""
    width = blocks.shape[1] - m + 1
    codes = np.zeros((blocks.shape[0], width), dtype=np.int64)
    for j in range(m):
        codes <<= 1
        codes |= blocks[:, j : j + width]
    return codes


def _parse_template(test: str, template: Sequence[int] | npt.ArrayLike | str) -> tuple[int, ...]:
    if isinstance(template, str):
        if not template or set(template) - {"0", "1"}:
            raise ValueError(f"{test}: template must be a non-empty string of 0 and 1")
        return tuple(int(c) for c in template)
    try:
        values = as_bits(template, test)
    except ValueError as exc:
        raise ValueError(f"{test}: template: {exc}") from None
    if not 1 <= values.size <= _MAX_TEMPLATE_BITS:
        raise ValueError(
            f"{test}: template length must be 1..{_MAX_TEMPLATE_BITS}, got {values.size}"
        )
    return tuple(int(v) for v in values)


def non_overlapping_template(
    bits: npt.ArrayLike,
    template: Sequence[int] | npt.ArrayLike | str | None = None,
    m: int | None = None,
    blocks: int = 8,
) -> TestResult:
    """SP 800-22 §2.7 non-overlapping template matching: one p-value per template.

    Detects too many (or too few) occurrences of a given aperiodic pattern. With N = ``blocks``
    blocks of M = ⌊n/N⌋ bits and W_j the non-overlapping occurrences of the m-bit template B in
    block j: μ = (M - m + 1)/2^m, σ² = M(1/2^m - (2m - 1)/2^{2m}), χ² = Σ_j (W_j - μ)²/σ²,
    P = igamc(N/2, χ²/2) (§2.7.4).

    ``template`` None runs every aperiodic template of length ``m`` (default 9, as recommended;
    2 ≤ m ≤ 21) and returns their p-values in lexicographic order (:func:`aperiodic_templates`).
    Otherwise ``template`` (a sequence or string of 0/1, 1..62 bits, aperiodic: periodic ones
    raise ValueError, module docstring) gives one p-value; ``m``, if given, must equal its
    length. ``blocks`` defaults to NIST STS's N = 8; the standard asks N ≤ 100 and M > 0.01n
    (§2.7.7), not enforced. n must give M ≥ m.

    Statistics: ``n``, ``N``, ``M``, ``m``, ``mu``, ``sigma_squared``; with one template also
    ``W_1``..``W_N`` and ``chi_square``; with all templates ``templates`` (their number) and
    ``chi_square[<template>]`` for each.
    """
    test = "non_overlapping_template"
    n_blocks = _positive_int(test, "blocks", blocks, 1)
    chosen: str | None = None  # the one template, as "0101..."
    if template is None:
        length = 9 if m is None else _positive_int(test, "m", m, 2)
        if length > _MAX_ALL_TEMPLATES_M:
            raise ValueError(f"{test}: m must be <= {_MAX_ALL_TEMPLATES_M}, got {length}")
    else:
        chosen = "".join(map(str, _parse_template(test, template)))
        length = len(chosen)
        if not _is_aperiodic(int(chosen, 2), length):
            raise ValueError(
                f"{test}: template {chosen} is periodic (it can overlap itself); "
                "§2.7 is defined for aperiodic templates only"
            )
        if m is not None and m != length:
            raise ValueError(f"{test}: m = {m!r} does not match the template length {length}")
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, n_blocks * length)
    block_size = n // n_blocks
    codes = _window_codes(epsilon[: n_blocks * block_size].reshape(n_blocks, block_size), length)
    mu = (block_size - length + 1) / 2.0**length
    sigma_squared = block_size * (1.0 / 2.0**length - (2 * length - 1) / 2.0 ** (2 * length))
    statistics: dict[str, float] = {
        "n": n,
        "N": n_blocks,
        "M": block_size,
        "m": length,
        "mu": mu,
        "sigma_squared": sigma_squared,
    }
    if chosen is not None:
        counts = np.count_nonzero(codes == int(chosen, 2), axis=1)
        chi_square = float(np.sum((counts - mu) ** 2) / sigma_squared)
        statistics.update({f"W_{j + 1}": int(w) for j, w in enumerate(counts)})
        statistics["chi_square"] = chi_square
        return TestResult(
            test=test,
            p_values=(igamc(n_blocks / 2.0, chi_square / 2.0),),
            statistics=statistics,
        )
    template_codes = _aperiodic_codes(length)
    # All templates are aperiodic: non-overlapping count = number of matching windows.
    counts_all = np.stack(
        [np.bincount(row, minlength=1 << length)[template_codes] for row in codes]
    )
    chi_squares = np.sum((counts_all - mu) ** 2, axis=0) / sigma_squared
    statistics["templates"] = int(template_codes.size)
    statistics.update(
        {
            f"chi_square[{int(code):0{length}b}]": float(chi)
            for code, chi in zip(template_codes, chi_squares, strict=True)
        }
    )
    return TestResult(
        test=test,
        p_values=tuple(igamc(n_blocks / 2.0, float(chi) / 2.0) for chi in chi_squares),
        statistics=statistics,
    )


def _require_possible(test: str, m: int, block_size: int, k: int) -> None:
    """Every class must have positive probability: a block holds at most M - m + 1 matches."""
    if block_size - m + 1 < k:
        raise ValueError(
            f"{test}: K = {k} is impossible with m = {m}, block_size = {block_size} "
            f"(at most {block_size - m + 1} matches per block)"
        )


def overlapping_probabilities(m: int = 9, block_size: int = 1032, K: int = 5) -> tuple[float, ...]:  # noqa: N803
    """Exact π_0..π_K of §2.8: P(the all-ones m-bit template occurs u times in M random bits).

    π_u for u < K, π_K = P(≥ K). Markov chain on (length of the current run of ones, capped at
    m; matches so far, capped at K): a 0 resets the run; a 1 extends it, and once it reaches m
    every further 1 completes one more overlapping match. The transfer matrix, with entries ½,
    is raised to the power M = ``block_size``; no cancellation, relative error ~1e-15. For
    m = 9, M = 1032, K = 5 this gives 0.364091, 0.185659, 0.139381, 0.100571, 0.070432, 0.139865
    to six digits, the values the Rev 1a text prints (module docstring).
    """
    test = "overlapping_template"
    m = _positive_int(test, "m", m, 1)
    block_size = _positive_int(test, "block_size", block_size, m)
    classes = _positive_int(test, "K", K, 1) + 1
    _require_possible(test, m, block_size, classes - 1)
    states = (m + 1) * classes
    transfer = np.zeros((states, states), dtype=np.float64)
    for run in range(m + 1):
        for count in range(classes):
            here = run * classes + count
            transfer[here, count] += 0.5  # a 0: run 0, same count
            longer = min(run + 1, m)
            more = min(count + 1, classes - 1) if longer == m else count
            transfer[here, longer * classes + more] += 0.5
    final = np.linalg.matrix_power(transfer, block_size)[0]
    return tuple(float(p) for p in final.reshape(m + 1, classes).sum(axis=0))


def overlapping_template(
    bits: npt.ArrayLike,
    m: int = 9,
    block_size: int = 1032,
    blocks: int | None = None,
    K: int = 5,  # noqa: N803 (the standard's name)
) -> TestResult:
    """SP 800-22 §2.8 overlapping template matching (all-ones template): one p-value.

    Detects too many or too few runs of m ones, counted with overlaps (a run of m + 2 ones holds
    three matches). In each of N blocks of M = ``block_size`` bits count the windows that are all
    ones; nu_u = blocks with u matches (u = 0..K - 1), nu_K = blocks with ≥ K;
    χ² = Σ (nu_u - Nπ_u)²/(Nπ_u), P = igamc(K/2, χ²/2) (§2.8.4), with the exact π_u of
    :func:`overlapping_probabilities` (module docstring).

    Defaults are the standard's: m = 9, M = 1032, K = 5, N = ``blocks`` = ⌊n/M⌋ (968 for
    n = 10^6). n must hold N blocks (at least one); the standard recommends n ≥ 10^6 and
    N·min(π) > 5 (§2.8.7).

    Statistics: ``n``, ``N``, ``M``, ``m``, ``K``, ``lambda``, ``eta``, ``nu_0``..``nu_K``,
    ``pi_0``..``pi_K``, ``chi_square``.
    """
    test = "overlapping_template"
    m = _positive_int(test, "m", m, 1)
    if m > _MAX_TEMPLATE_BITS:
        raise ValueError(f"{test}: m must be <= {_MAX_TEMPLATE_BITS}, got {m}")
    block_size = _positive_int(test, "block_size", block_size, m)
    classes = _positive_int(test, "K", K, 1) + 1
    _require_possible(test, m, block_size, classes - 1)
    if blocks is not None:
        blocks = _positive_int(test, "blocks", blocks, 1)
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, block_size * (1 if blocks is None else blocks))
    n_blocks = n // block_size if blocks is None else blocks
    data = epsilon[: n_blocks * block_size].reshape(n_blocks, block_size)
    # A window ε_j..ε_{j+m-1} is all ones iff its ones count (a difference of prefix sums) is m.
    prefix = np.zeros((n_blocks, block_size + 1), dtype=np.int64)
    np.cumsum(data, axis=1, out=prefix[:, 1:])
    matches = np.count_nonzero(prefix[:, m:] - prefix[:, :-m] == m, axis=1)
    nu = np.bincount(np.minimum(matches, classes - 1), minlength=classes)
    pi = np.asarray(overlapping_probabilities(m, block_size, classes - 1))
    expected = n_blocks * pi
    chi_square = float(np.sum((nu - expected) ** 2 / expected))
    lam = (block_size - m + 1) / 2.0**m
    statistics: dict[str, float] = {
        "n": n,
        "N": n_blocks,
        "M": block_size,
        "m": m,
        "K": classes - 1,
        "lambda": lam,
        "eta": lam / 2.0,
    }
    statistics.update({f"nu_{u}": int(v) for u, v in enumerate(nu)})
    statistics.update({f"pi_{u}": float(p) for u, p in enumerate(pi)})
    statistics["chi_square"] = chi_square
    return TestResult(
        test=test,
        p_values=(igamc((classes - 1) / 2.0, chi_square / 2.0),),
        statistics=statistics,
    )

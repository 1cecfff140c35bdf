"""NIST-metric regression checks: each corpus gets the verdict it must get.

Good corpora pass the health tests and every SP 800-22 test at the standard's second level;
each bad corpus is caught by every test its definition names (and, when named, by the
SP 800-90B health verdict). A change that weakens a test, or makes it cry wolf, fails here.
"""

from __future__ import annotations

import pytest

from conformance.quality.corpora import (
    CORPORA,
    CORPUS_BYTES,
    GOOD_CORPUS_BYTES,
    Corpus,
)
from lokey.quality.assess import Assessment, assess

GOOD = [c for c in CORPORA if c.good]
BAD = [c for c in CORPORA if not c.good]


def _assess(corpus: Corpus) -> Assessment:
    return assess(corpus.generate())


@pytest.mark.parametrize("corpus", GOOD, ids=lambda c: c.name)
def test_good_corpus_passes_health_and_every_battery_test(corpus: Corpus) -> None:
    result = _assess(corpus)
    assert result.health.passed, result.health.reason
    failed = {t.test: t.reason for t in result.tests if t.status == "fail"}
    assert failed == {}
    assert result.sequences == 10
    assert result.passed


@pytest.mark.parametrize("corpus", BAD, ids=lambda c: c.name)
def test_bad_corpus_is_caught_by_every_test_named_for_it(corpus: Corpus) -> None:
    result = _assess(corpus)
    verdicts = {t.test: t.status for t in result.tests}
    named = [name for name in corpus.caught_by if name != "health"]
    assert {name: verdicts[name] for name in named} == dict.fromkeys(named, "fail")
    if "health" in corpus.caught_by:
        assert not result.health.passed
    assert not result.passed


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda c: c.name)
def test_corpora_are_reproducible_and_sized_as_declared(corpus: Corpus) -> None:
    first = corpus.generate()
    assert first == corpus.generate()
    assert len(first) == (GOOD_CORPUS_BYTES if corpus.good else CORPUS_BYTES)
    assert corpus.good or corpus.caught_by, "a bad corpus must name the tests that catch it"

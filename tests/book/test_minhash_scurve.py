"""The S-curve experiment of chapter 2: a small run is well formed, its predictions are the formula, its measured
rates sit near them, and it writes its three files."""

from __future__ import annotations

import pytest

from scratchllm.book.experiments.minhash_scurve import SCHEMES, edited_pairs, max_z, run, table, write
from scratchllm.data.minhash import s_curve


@pytest.fixture(scope="module")
def result():
    return run(pairs_per_level=60, length=100, max_edits=10)


def test_run_is_well_formed(result):
    assert [lv["edits"] for lv in result["levels"]] == list(range(1, 11))
    assert result["schemes"] == ["28x4", "14x8", "8x14"] and result["thresholds"]["14x8"] == pytest.approx(0.719, 1e-3)
    for lv in result["levels"]:
        assert lv["jaccard"] == pytest.approx((96 - 5 * lv["edits"]) / (96 + 5 * lv["edits"]), abs=1e-6)
        for b, r in SCHEMES:
            assert lv[f"predicted_{b}x{r}"] == pytest.approx(s_curve(lv["jaccard"], b, r), abs=1e-6)
            assert 0.0 <= lv[f"measured_{b}x{r}"] <= 1.0
    assert max_z(result) < 4.5


def test_table_and_files(result, tmp_path):
    assert len(table(result).splitlines()) == 2 + 10
    paths = write(result, tmp_path)
    assert sorted(p.name for p in paths) == ["minhash_scurve.json", "minhash_scurve.md", "minhash_scurve.png"]
    assert (tmp_path / "minhash_scurve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_edits_must_fit():
    with pytest.raises(ValueError, match="do not fit"):
        edited_pairs(1, 30, 6)

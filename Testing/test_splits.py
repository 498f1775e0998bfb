"""Case-grouped splits on the real Harvard names: no case on both sides, folds cover every case."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from EDPSNLib.data.harvard import PAIR_NAMES, list_pairs, split_names
from EDPSNLib.data.splits import case_folds, case_id, cases_of, fold_cases, fold_split_names
from EDPSNLib.errors import InputError
from EDPSNLib.paths import data_root
from EDPSNLib.training.config import train_val_splits

EXPECTED_FOLDS = {"MRI-CT": 5, "MRI-PET": 3, "MRI-SPECT": 5}


def _cases(names: list[str]) -> set[int]:
    return {case_id(n) for n in names}


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_folds_cover_every_case_exactly_once(pair: str) -> None:
    names = split_names(pair, "all")
    folds = case_folds(names)
    assert len(folds) == EXPECTED_FOLDS[pair]
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(cases_of(names)) and len(flat) == len(set(flat))
    # Every image is in exactly one fold's test part.
    tests = [split_names(pair, f"case-fold-{k}") for k in range(len(folds))]
    assert sorted(n for t in tests for n in t) == sorted(names)


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_no_case_on_two_sides_of_a_fold(pair: str) -> None:
    for k in range(EXPECTED_FOLDS[pair]):
        parts = {p: split_names(pair, f"case-fold-{k}/{p}") for p in ("train", "val", "test")}
        cases = {p: _cases(n) for p, n in parts.items()}
        assert all(parts.values()), f"fold {k} has an empty part"
        assert not cases["train"] & cases["val"]
        assert not cases["train"] & cases["test"]
        assert not cases["val"] & cases["test"]
        assert len(cases["val"]) == 1  # one whole held-out training case
        trainval = split_names(pair, f"case-fold-{k}/trainval")
        assert sorted(trainval) == sorted(parts["train"] + parts["val"])


@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_case_all_trains_on_every_case_but_one_validation_case(pair: str) -> None:
    train, val = split_names(pair, "case-all/train"), split_names(pair, "case-all/val")
    assert _cases(val) == _cases(split_names(pair, "case-fold-0/val"))
    assert not _cases(train) & _cases(val)
    assert sorted(train + val) == sorted(split_names(pair, "all"))
    assert split_names(pair, "case-all") == split_names(pair, "all")
    assert split_names(pair, "case-all/test") == []
    assert train_val_splits("case-all") == ("case-all/train", "case-all/val")


def test_mri_pet_is_leave_one_case_out() -> None:
    assert case_folds(split_names("MRI-PET", "all")) == [[25], [30], [41]]
    for k, held_out in enumerate((25, 30, 41)):
        assert _cases(split_names("MRI-PET", f"case-fold-{k}")) == {held_out}


def test_folds_are_deterministic_and_balanced() -> None:
    names = split_names("MRI-SPECT", "all")
    assert case_folds(names) == case_folds(list(reversed(names)))
    sizes = [len(split_names("MRI-SPECT", f"case-fold-{k}")) for k in range(5)]
    assert max(sizes) - min(sizes) <= 37  # within one case of each other


def test_case_id_and_bad_names() -> None:
    assert [case_id(n) for n in ("25045", "3007", "41115")] == [25, 3, 41]
    for bad in ("abc", "045", "25_045"):
        with pytest.raises(InputError, match="3-digit slice"):
            case_id(bad)
    with pytest.raises(InputError, match="at least 3 cases"):
        case_folds(["25001", "30001"])
    with pytest.raises(InputError, match="does not exist"):
        fold_cases(split_names("MRI-PET", "all"), 3)
    with pytest.raises(InputError, match="part"):
        fold_split_names(["25001", "30001", "41001"], "case-fold-0/everything")
    with pytest.raises(InputError, match="Unknown split"):
        split_names("MRI-PET", "fold-0")


def test_source_test_alias_and_list_pairs() -> None:
    assert split_names("MRI-CT", "source-test") == split_names("MRI-CT", "test")
    pairs = list_pairs("MRI-PET", "case-fold-1")
    assert {case_id(p.name) for p in pairs} == {30} and len(pairs) == 82


def test_evaluate_cli_takes_a_fold_split(tmp_path: Path) -> None:
    # A copy of one held-out case keeps the command quick; the fold rule needs 3 cases.
    src = data_root() / "harvard"
    root = tmp_path / "harvard"
    for name in ("25045", "25046", "30050", "41060"):
        for sub in ("MRI", "PET"):
            (root / "MRI-PET" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src / "MRI-PET" / sub / f"{name}.png", root / "MRI-PET" / sub)
    base = [sys.executable, "-m", "EDPSNLib.cli", "evaluate", "--data", str(root)]
    base += ["--pair", "MRI-PET", "--method", "mean", "--no-images"]
    cmd = [*base, "--split", "case-fold-0", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "out" / "MRI-PET" / "mean" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in rows[1:]] == ["25045", "25046"]
    bad = subprocess.run(
        [*base, "--split", "case-fold-7", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert bad.returncode == 2 and "case-fold-0 .. case-fold-2" in bad.stderr

"""Case-grouped splits of Harvard pairs: no atlas subject on both sides of a split.

Harvard file names are ``<case><3-digit slice>`` (``25045``: case 25, slice 45). Neighbouring
slices of one subject are near-duplicates, so a split that puts slices of one case in training
and others in test measures memory, not generalisation. The folds here group by case:

* ``K = min(5, number of cases)`` folds; MRI-PET has 3 cases, so its folds are leave-one-case-out.
* Cases go to folds largest first, each to the fold with the fewest slices so far (ties: the
  lower fold), so fold sizes are balanced; folds are then numbered by their smallest case id.
  The result depends only on the names, never on a random seed.
* Fold ``k`` holds out its cases as ``test``. Its ``val`` case (for model selection and loss
  tuning) is the smallest case of fold ``(k + 1) % K``: a whole training case, never random
  slices; ``train`` is every other case. ``trainval`` is ``train`` plus ``val``.

Split names: ``case-fold-<k>`` (the held-out test cases), ``case-fold-<k>/<part>`` with part
``train``, ``val``, ``test`` or ``trainval``. ``case-all`` is the split of the shipped weights,
once a recipe has been measured on the folds: ``val`` is fold 0's validation case, ``train``
every other case, ``test`` empty (``case-all`` alone is every case).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from EDPSNLib.errors import InputError

#: Prefix of the case-grouped split names.
CASE_FOLD_PREFIX = "case-fold-"
#: The parts of one fold.
FOLD_PARTS = ("train", "val", "test", "trainval")
#: At most this many folds (pairs with more cases get several cases per fold).
MAX_FOLDS = 5
_CASE_NAME = re.compile(r"^(\d+)(\d{3})$")
#: Name of the split that trains on every case but one validation case (the shipped weights).
ALL_CASES = "case-all"
#: The fold number :func:`parse_fold_split` gives ``case-all``.
ALL_CASES_FOLD = -1
_SPLIT_NAME = re.compile(r"^case-(?:fold-(\d+)|all)(?:/(\w+))?$")


def case_id(name: str) -> int:
    """The atlas case of a Harvard file name ``<case><3-digit slice>``.

    Args:
        name: file name without suffix, e.g. ``"25045"``.

    Returns:
        The case number.

    Example:
        >>> case_id("25045"), case_id("3007")
        (25, 3)
    """
    match = _CASE_NAME.match(name)
    if match is None:
        raise InputError(
            f"Image name '{name}' is not <case><3-digit slice> (e.g. 25045); case-grouped "
            "splits need Harvard atlas names. Use the train/val/test split for other data."
        )
    return int(match.group(1))


def cases_of(names: Iterable[str]) -> dict[int, list[str]]:
    """Names grouped by case, cases in increasing order, names sorted within each case."""
    groups: dict[int, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(case_id(name), []).append(name)
    return dict(sorted(groups.items()))


def case_folds(names: Iterable[str]) -> list[list[int]]:
    """Cases grouped into balanced folds (see the module docstring for the rule).

    Args:
        names: every image name of one pair.

    Returns:
        ``K`` sorted lists of case numbers, ordered by their smallest case.

    Example:
        >>> case_folds(["25001", "25002", "30001", "41001"])
        [[25], [30], [41]]
    """
    groups = cases_of(names)
    if len(groups) < 3:
        raise InputError(
            f"Case-grouped splits need at least 3 cases (test, validation, training); "
            f"found {len(groups)}: {sorted(groups)}."
        )
    n_folds = min(MAX_FOLDS, len(groups))
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    sizes = [0] * n_folds
    for case in sorted(groups, key=lambda c: (-len(groups[c]), c)):
        target = min(range(n_folds), key=lambda k: (sizes[k], k))
        folds[target].append(case)
        sizes[target] += len(groups[case])
    return sorted(sorted(f) for f in folds)


def parse_fold_split(split: str) -> tuple[int, str] | None:
    """``"case-fold-2/val"`` -> ``(2, "val")``; ``"case-fold-1"`` -> ``(1, "test")``; else None.

    ``case-all[/<part>]`` gives fold :data:`ALL_CASES_FOLD`; ``case-all`` alone is ``trainval``.

    Example:
        >>> parse_fold_split("case-fold-2/val"), parse_fold_split("test")
        ((2, 'val'), None)
        >>> parse_fold_split("case-all"), parse_fold_split("case-all/train")
        ((-1, 'trainval'), (-1, 'train'))
    """
    match = _SPLIT_NAME.match(split)
    if match is None:
        if split.startswith(CASE_FOLD_PREFIX) or split.startswith(ALL_CASES):
            raise InputError(
                f"Split '{split}' is not case-fold-<k>, case-fold-<k>/<part>, {ALL_CASES} or "
                f"{ALL_CASES}/<part> with part in {', '.join(FOLD_PARTS)}."
            )
        return None
    fold = ALL_CASES_FOLD if match.group(1) is None else int(match.group(1))
    part = match.group(2) or ("trainval" if fold == ALL_CASES_FOLD else "test")
    if part not in FOLD_PARTS:
        raise InputError(f"Split '{split}': part '{part}' is not one of {', '.join(FOLD_PARTS)}.")
    return fold, part


def fold_cases(names: Iterable[str], fold: int) -> dict[str, list[int]]:
    """The cases of each part (train, val, test, trainval) of one fold, or of ``case-all``.

    Example:
        >>> names = ["25001", "30001", "41001"]
        >>> fold_cases(names, 0)["train"], fold_cases(names, ALL_CASES_FOLD)["train"]
        ([41], [25, 41])
    """
    folds = case_folds(names)
    if fold == ALL_CASES_FOLD:
        val = fold_cases(names, 0)["val"]
        every = sorted(c for f in folds for c in f)
        return {
            "train": [c for c in every if c not in val],
            "val": val,
            "test": [],
            "trainval": every,
        }
    if not 0 <= fold < len(folds):
        raise InputError(
            f"Fold {fold} does not exist: this data has {len(folds)} case folds "
            f"(case-fold-0 .. case-fold-{len(folds) - 1})."
        )
    test = folds[fold]
    val = [folds[(fold + 1) % len(folds)][0]]
    train = sorted(c for k, f in enumerate(folds) if k != fold for c in f if c not in val)
    return {"train": train, "val": val, "test": test, "trainval": sorted(train + val)}


def fold_split_names(names: Iterable[str], split: str) -> list[str]:
    """The image names of a case-fold split, sorted.

    Args:
        names: every image name of one pair.
        split: ``case-fold-<k>`` or ``case-fold-<k>/<part>``.

    Returns:
        The names whose case belongs to that part of that fold.

    Example:
        >>> fold_split_names(["25001", "25002", "30001", "41001"], "case-fold-0/train")
        ['41001']
    """
    parsed = parse_fold_split(split)
    if parsed is None:
        raise InputError(f"Split '{split}' is not a case-fold split (case-fold-<k>[/<part>]).")
    names = sorted(names)
    wanted = set(fold_cases(names, parsed[0])[parsed[1]])
    return [n for n in names if case_id(n) in wanted]


def fold_count(names: Iterable[str]) -> int:
    """Number of case folds of a pair's names."""
    return len(case_folds(names))

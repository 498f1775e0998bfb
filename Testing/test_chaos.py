"""CHAOS readers, MRI-CT pairing and ``edpsn prepare chaos`` on real data.

CHAOS CT is not available here: the CT side uses the real STS CT DICOM series and the porcine
phantom CT written into the CHAOS layouts; the MR side uses the real CHAOS T2-SPIR volumes
(one also written as a DICOM series). Volumes are block-averaged where a test is about plumbing.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from EDPSNLib import cli
from EDPSNLib.data.chaos import (
    check_chaos_patient,
    list_chaos_patients,
    read_chaos_volume,
    usable_chaos_patients,
)
from EDPSNLib.data.harvard import list_pairs, load_pair
from EDPSNLib.errors import InputError
from EDPSNLib.paths import data_root
from EDPSNLib.training.chaos_pairing import (
    PAIRING_FILE,
    ChaosOptions,
    plan_pairs,
    prepare_chaos,
    read_pairing_records,
)
from EDPSNLib.training.dataset_writer import read_manifest
from EDPSNLib.volume.io import read_volume
from EDPSNLib.volume.transforms import corner_points

CHAOS_MR = data_root() / "chaos" / "MR-T2SPIR"
STS_CT = data_root() / "dicom" / "tcia_sts_001_petct" / "CT_crop"
STS_PT = data_root() / "dicom" / "tcia_sts_001_petct" / "PT_SUV_crop"
PHANTOM = data_root() / "volumes" / "mridir_porcine_phantom"


def _write_dicom_series(image: sitk.Image, folder: Path, modality: str = "MR") -> None:
    """A 3-D image as one DICOM series (int16, one file per slice, full geometry tags)."""
    folder.mkdir(parents=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    iop = "\\".join(
        f"{v:.6f}"
        for v in (
            direction[0],
            direction[3],
            direction[6],
            direction[1],
            direction[4],
            direction[7],
        )
    )
    uid = "1.2.826.0.1.3680043.2.1125.7.1"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        ipp = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": modality,
            "0020|000e": uid,
            "0020|000d": uid + ".0",
            "0008|103e": "T2SPIR test series",
            "0020|0037": iop,
            "0020|0032": "\\".join(f"{v:.6f}" for v in ipp),
            "0020|0013": str(k + 1),
            "0008|0018": f"{uid}.{k + 1}",
            "0018|0050": f"{image.GetSpacing()[2]:.4f}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IMG{k:04d}.dcm"))
        writer.Execute(sl)


def _copy_dcm(src: Path, dst: Path, limit: int | None = None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.dcm"))[:limit]:
        shutil.copy(p, dst / f"{src.name}_{p.name}")


@pytest.fixture(scope="module")
def dicom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Challenge layout: CT 1 = the STS CT DICOM files, MR 1 = CHAOS MR 1 as a DICOM series."""
    root = tmp_path_factory.mktemp("chaos_dicom")
    _copy_dcm(STS_CT, root / "Train_Sets" / "CT" / "1" / "DICOM_anon")
    mr = sitk.ReadImage(str(CHAOS_MR / "image_1.nii.gz"))
    _write_dicom_series(mr, root / "Train_Sets" / "MR" / "1" / "T2SPIR" / "DICOM_anon")
    inphase = root / "Train_Sets" / "MR" / "1" / "T1DUAL" / "DICOM_anon" / "InPhase"
    shutil.copytree(root / "Train_Sets" / "MR" / "1" / "T2SPIR" / "DICOM_anon", inphase)
    return root


@pytest.fixture(scope="module")
def nifti_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NIfTI layout: CT/MR 1 and 2 = the phantom CT and MR (one object, two block sizes, so the
    registration must improve the match), CT 3 = the STS CT with its intercept applied twice
    (all below the soft-tissue window). Two different patients give too small an MI gain for a
    stable test: the registration's own sanity checks may refuse such a pair."""
    root = tmp_path_factory.mktemp("chaos_nifti")
    (root / "MR-T2SPIR").mkdir()
    (root / "CT").mkdir()
    shrink = {
        "CT/image_1.nii.gz": (PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz", [4, 4, 4]),
        "MR-T2SPIR/image_1.nii.gz": (
            PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz",
            [4, 4, 2],
        ),
        "MR-T2SPIR/image_2.nii.gz": (
            PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz",
            [4, 4, 3],
        ),
        "CT/image_2.nii.gz": (PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz", [4, 4, 3]),
        "CT/image_3.nii.gz": (STS_CT, [4, 4, 2]),
    }
    for name, (src, factors) in shrink.items():
        sitk.WriteImage(sitk.BinShrink(read_volume(src).image, factors), str(root / name))
    sts = sitk.ReadImage(str(root / "CT" / "image_3.nii.gz"))
    sitk.WriteImage(sitk.Cast(sts, sitk.sitkInt16) - 1024, str(root / "CT" / "image_3.nii.gz"))
    return root


def test_nifti_layout_lists_and_reads_real_chaos_mr() -> None:
    patients = list_chaos_patients(CHAOS_MR.parent, "MR", "T2SPIR")
    assert [p.id for p in patients] == ["1", "2", "3", "5", "8"]  # numeric order, labels ignored
    # the data folder itself works too (its chaos/ sub-folder is found)
    assert [p.path for p in list_chaos_patients(data_root(), "MR")] == [p.path for p in patients]
    vol = read_chaos_volume(patients[4])
    ref = sitk.ReadImage(str(CHAOS_MR / "image_8.nii.gz"))
    assert vol.image.GetSize() == ref.GetSize() and vol.spacing == pytest.approx(ref.GetSpacing())
    assert vol.origin == pytest.approx(ref.GetOrigin())
    assert (vol.modality, vol.meta["chaos_id"]) == ("MR", "8")
    with pytest.raises(InputError, match=r"No CHAOS CT data .*CT/image_<id>\.nii\.gz"):
        list_chaos_patients(CHAOS_MR.parent, "CT")
    with pytest.raises(InputError, match="T1DUAL-InPhase/image_<id>"):
        list_chaos_patients(CHAOS_MR.parent, "MR", "T1DUAL-InPhase")


def test_dicom_layout_reads_ct_and_mr_with_geometry(dicom_root: Path) -> None:
    for root in (dicom_root, dicom_root / "Train_Sets"):  # both accepted
        (ct_patient,) = list_chaos_patients(root, "CT")
        assert ct_patient.layout == "dicom" and ct_patient.path.name == "DICOM_anon"
    ct = read_chaos_volume(ct_patient)
    ref = read_volume(STS_CT)
    assert ct.shape == ref.shape == (59, 202, 198) and ct.modality == "CT"
    assert ct.origin == pytest.approx(ref.origin) and np.array_equal(ct.array, ref.array)
    (mr_patient,) = list_chaos_patients(dicom_root, "MR", "T2SPIR")
    mr, src = read_chaos_volume(mr_patient), sitk.ReadImage(str(CHAOS_MR / "image_1.nii.gz"))
    assert mr.image.GetSize() == src.GetSize() == (256, 256, 37)
    assert mr.spacing == pytest.approx(src.GetSpacing(), abs=1e-4)
    # DICOM stores the slices along the IOP normal (here world -z): same voxels, same places
    corners = [np.sort(corner_points(i), axis=0) for i in (mr.image, src)]
    assert np.allclose(*corners, atol=1e-3)
    back = sitk.Resample(mr.image, src, sitk.Transform(), sitk.sitkNearestNeighbor, -1)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(src))
    (inphase,) = list_chaos_patients(dicom_root, "MR", "T1DUAL-InPhase")
    assert inphase.path.parts[-3:] == ("T1DUAL", "DICOM_anon", "InPhase")
    assert read_chaos_volume(inphase).shape == mr.shape


def test_bad_chaos_folders_are_named_and_skipped(dicom_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "Train_Sets"
    shutil.copytree(dicom_root / "Train_Sets", root)
    mixed = root / "CT" / "2" / "DICOM_anon"  # CT and PET files in one series folder
    _copy_dcm(STS_CT, mixed)
    _copy_dcm(STS_PT, mixed)
    truncated = root / "CT" / "3" / "DICOM_anon"
    _copy_dcm(STS_CT, truncated)
    victim = sorted(truncated.glob("*.dcm"))[30]
    victim.write_bytes(victim.read_bytes()[:3000])
    (root / "CT" / "4" / "DICOM_anon").mkdir(parents=True)  # nothing inside
    (root / "MR" / "7" / "T1DUAL").mkdir(parents=True)  # no T2SPIR series
    cts = {p.id: p for p in list_chaos_patients(tmp_path, "CT")}
    assert list(cts) == ["1", "2", "3", "4"]
    problem = check_chaos_patient(cts["2"], read=False)
    assert str(mixed) in problem and "mixes 2 DICOM series" in problem and "PT" in problem
    problem = check_chaos_patient(cts["3"], read=False)
    assert str(truncated) in problem and victim.name in problem and "truncated" in problem
    assert "no readable DICOM" in check_chaos_patient(cts["4"], read=False)
    with pytest.raises(InputError, match="mixes 2 DICOM series"):
        read_chaos_volume(cts["2"])
    warnings: list[str] = []
    good, skipped = usable_chaos_patients(tmp_path, "MR", "T2SPIR", warnings.append)
    assert [p.id for p in good] == ["1"] and [p.id for p, _ in skipped] == ["7"]
    assert "T2SPIR" in warnings[0] and "missing" in warnings[0] and "T1DUAL" in warnings[0]
    good, skipped = usable_chaos_patients(tmp_path, "CT", warn=warnings.append, read=False)
    assert [p.id for p in good] == ["1"] and len(warnings) == 4
    shutil.rmtree(root / "CT" / "1")
    with pytest.raises(InputError, match="No usable CHAOS CT patient") as info:
        usable_chaos_patients(tmp_path, "CT", read=False)
    assert str(mixed) in str(info.value) and str(truncated) in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No CHAOS MR data.*Train_Sets/MR/<id>/T2SPIR"):
        list_chaos_patients(tmp_path / "empty", "MR")
    with pytest.raises(InputError, match="does not exist"):
        list_chaos_patients(tmp_path / "nowhere", "MR")


def test_default_rule_cycles_mr_and_keeps_test_pairs_last(nifti_root: Path) -> None:
    cts = list_chaos_patients(nifti_root, "CT")
    mrs = list_chaos_patients(nifti_root, "MR")
    plan = plan_pairs(cts, mrs, test_pairs=1)
    assert [(p.ct.id, p.mr.id, p.split) for p in plan] == [
        ("1", "1", "train"),
        ("2", "2", "train"),
        ("3", "1", "test"),
    ]
    with pytest.raises(InputError, match="at least one"):
        plan_pairs(cts, mrs, test_pairs=3)
    with pytest.raises(InputError, match="not usable patients"):
        plan_pairs(cts, mrs, 0, pairing=[("1", "9")])


@pytest.mark.slow
def test_pairing_writes_a_trainable_dataset_and_resumes(nifti_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    pairing = tmp_path / "pairs.csv"
    pairing.write_text("ct_id,mr_id\n1,1\n3,2\n2,2\n")
    warnings: list[str] = []
    opts = ChaosOptions(size=64, test_pairs=1, threads=1)
    summary = prepare_chaos(nifti_root, out, opts, pairing_file=pairing, warn=warnings.append)
    assert (summary["pairs_used"], summary["pairs_skipped"]) == (2, 1)
    rows = {r["case"]: r for r in read_pairing_records(out)}
    assert list(rows) == ["ct1_mr1", "ct3_mr2", "ct2_mr2"]
    # no CT tissue in the window: either no common slice, or the registration refuses the pair
    refused = r"do not overlap|implausibly far|overlaps the other|made the match worse"
    assert rows["ct3_mr2"]["status"] == "skipped" and re.search(refused, rows["ct3_mr2"]["reason"])
    assert len(warnings) == 1 and "ct3_mr2" in warnings[0]
    # the phantom is one object: registration must improve Mattes MI clearly
    phantom = rows["ct1_mr1"]
    assert float(phantom["final_metric"]) < float(phantom["metric_before"]) - 0.05
    assert phantom["status"] == "ok" and len(phantom["transform"].split()) == 12
    assert float(phantom["overlap"]) > 0.5 and phantom["split"] == "train"
    # the data set is what edpsn train reads, split by pair
    train, test = list_pairs("MRI-CT", "trainval", out), list_pairs("MRI-CT", "test", out)
    assert {p.name.rsplit("_", 1)[0] for p in train} == {"ct1_mr1"}
    assert {p.name.rsplit("_", 1)[0] for p in test} == {"ct2_mr2"}
    assert len(train) == int(phantom["n_slices"]) == summary["slices"]["train"]
    assert [int(n.rsplit("_", 1)[1]) for n in (p.name for p in test)] == [
        int(i) for i in rows["ct2_mr2"]["slices"].split()
    ]
    mri, ct = load_pair(train[len(train) // 2])
    assert mri.shape == ct.shape == (64, 64) and mri.max() > 100 and ct.max() > 100
    assert float(rows["ct2_mr2"]["final_metric"]) < float(rows["ct2_mr2"]["metric_before"])
    entry = next(e for e in read_manifest(out)["cases"] if e["case"] == "ct1_mr1")
    assert entry["source"]["ct"]["path"] == str(nifti_root / "CT" / "image_1.nii.gz")
    assert entry["source"]["registration"]["final_metric"] == pytest.approx(
        float(phantom["final_metric"])
    )
    # re-running keeps the written cases (nothing registered again); new settings redo them
    stamp = train[0].mri_path.stat().st_mtime_ns
    again = prepare_chaos(nifti_root, out, opts, pairing_file=pairing)
    assert again["pairs_kept"] == 2 and train[0].mri_path.stat().st_mtime_ns == stamp
    assert read_pairing_records(out)[0]["final_metric"] == phantom["final_metric"]
    one = ChaosOptions(size=64, test_pairs=0, threads=1)
    # a smaller plan: the CHAOS case it no longer has leaves the set (images and split lines)
    (tmp_path / "first.csv").write_text("ct_id,mr_id\n1,1\n")
    notes: list[str] = []
    prepare_chaos(nifti_root, out, one, pairing_file=tmp_path / "first.csv", warn=notes.append)
    assert [e["case"] for e in read_manifest(out)["cases"]] == ["ct1_mr1"]
    assert any("Removed case ct2_mr2" in n for n in notes)
    assert not any((out / "MRI-CT" / "CT").glob("ct2_mr2_*.png"))
    # new settings under which the pair fails: its old slices must not stay in the set
    air = ChaosOptions(size=64, test_pairs=0, threads=1, window=(5000.0, 10.0))  # CT all black
    with pytest.raises(InputError, match="No CHAOS pair could be used"):
        prepare_chaos(nifti_root, out, air, pairing_file=tmp_path / "first.csv")
    assert read_manifest(out)["cases"] == [] and not any((out / "MRI-CT" / "MRI").iterdir())
    assert (out / "splits" / "MRI-CT" / "train.txt").read_text() == ""
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("ct_id,mr_id\n3,2\n")
    with pytest.raises(InputError, match="No CHAOS pair could be used"):
        prepare_chaos(nifti_root, tmp_path / "bad", one, pairing_file=only_bad)
    assert re.search(refused, read_pairing_records(tmp_path / "bad")[0]["reason"])


@pytest.mark.slow
def test_cli_prepares_with_a_pairing_file_and_json_progress(
    nifti_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    pairing = tmp_path / "pairs.csv"
    pairing.write_text("ct_id,mr_id\n1,1\n")
    argv = [
        "prepare",
        "chaos",
        "--chaos",
        str(nifti_root),
        "--out",
        str(out),
        "--size",
        "64",
        "--pairing",
        str(pairing),
        "--test-pairs",
        "0",
        "--threads",
        "1",
        "--json-progress",
    ]
    assert cli.main(argv) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events][-1] == "done"
    assert [e["done"] for e in events if e["event"] == "progress"] == [0, 1]
    done = events[-1]
    assert done["pairs_used"] == 1 and done["slices"]["test"] == 0
    assert done["pairing_file"] == str(out / PAIRING_FILE)
    with open(out / PAIRING_FILE) as f:
        (row,) = list(csv.DictReader(f))
    assert row["ct_path"].endswith("CT/image_1.nii.gz") and row["status"] == "ok"
    assert len(list_pairs("MRI-CT", "trainval", out)) == done["slices"]["train"] > 0
    # a bad option is a clear error with exit code 2
    assert cli.main([*argv[:-1], "--ct-window", "lung"]) == 2
    assert "Unknown CT window" in capsys.readouterr().err

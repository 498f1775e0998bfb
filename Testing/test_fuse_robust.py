"""``edpsn fuse`` with wrong or interrupted input: DICOM Modality, bad flags, a CT not in HU,
Ctrl-C, SIGTERM and a disk that fills part-way, run as a user would (real files, subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from EDPSNLib.cli import main
from EDPSNLib.paths import data_root, repo_root
from EDPSNLib.volume.io import Volume, read_volume

SAMPLE = repo_root() / "Resources" / "Sample"
STS = data_root() / "dicom" / "tcia_sts_001_petct"
VM = data_root() / "volumes" / "visible_male_head"
PHANTOM = data_root() / "volumes" / "mridir_porcine_phantom"
ENV = {**os.environ, "PYTHONPATH": str(repo_root() / "EDPSNFusion")}


def _slab(tmp: Path, first: int, n: int) -> tuple[Path, Path]:
    """A slab of the shipped (aligned) MRI + PET sample written to ``tmp``."""
    paths = []
    for name in ("MRI", "PET"):
        vol = read_volume(SAMPLE / f"harvard_case25_{name}.nrrd")
        path = tmp / f"{name.lower()}.nrrd"
        sitk.WriteImage(vol.image[:, :, first : first + n], str(path))
        paths.append(path)
    return paths[0], paths[1]


def test_dicom_modality_tag_must_match_the_role(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "fused.nrrd"
    pet, ct = STS / "PT_SUV_crop", STS / "CT_crop"
    common = ["--register", "none", "--method", "max", "--out", str(out)]
    # a PET series given as CT
    mri = SAMPLE / "harvard_case25_MRI.nrrd"  # no tag: a NRRD file passes
    assert main(["fuse", "--mri", str(mri), "--moving", str(pet), "--modality", "CT", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("edpsn fuse: error: --moving")
    assert "Modality PT (PET)" in err and "--modality PET" in err and "--ignore-modality-tag" in err
    # a CT series given as the MRI
    assert main(["fuse", "--mri", str(ct), "--moving", str(pet), "--modality", "PET", *common]) == 2
    err = capsys.readouterr().err
    assert "--mri" in err and "Modality CT" in err and "MR series" in err
    assert not (tmp_path / "out").exists()
    # the user knows better: the explicit override runs
    args = ["fuse", "--mri", str(ct), "--moving", str(pet), "--modality", "PET", *common]
    assert main([*args, "--ignore-modality-tag"]) == 0
    assert read_volume(out).shape == read_volume(ct).shape


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_batch_size_must_be_a_positive_whole_number(value: str, capsys) -> None:
    args = ["fuse", "--mri", "m.nrrd", "--moving", "p.nrrd", "--modality", "PET", "--out", "f.nrrd"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--batch-size", value])
    assert exc.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_ct_not_in_hounsfield_units_warns_on_stderr_and_in_json(tmp_path: Path, capsys) -> None:
    mri = read_volume(VM / "vm_head_mri.mha")
    mri = Volume(sitk.BinShrink(mri.image, [4, 4, 1]), "", {})  # fast: the check is on values
    mri_path = tmp_path / "mri.nrrd"
    sitk.WriteImage(mri.image, str(mri_path))
    ct = read_volume(VM / "vm_head_ct.mha")
    # The CT slab placed at the MRI's centre, on its grid (values 0..2669, not HU).
    centred = sitk.CenteredTransformInitializer(
        mri.image,
        ct.image,
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )
    on_grid = sitk.Resample(ct.image, mri.image, centred, sitk.sitkLinear, 0.0)
    ct_path = tmp_path / "ct.nrrd"
    sitk.WriteImage(on_grid, str(ct_path))
    args = ["fuse", "--mri", str(mri_path), "--moving", str(ct_path)]
    args += ["--modality", "CT", "--register", "none", "--method", "max"]
    assert main([*args, "--out", str(tmp_path / "a.nrrd")]) == 0
    err = capsys.readouterr().err
    found = r"edpsn fuse: warning: The CT's values \(0\.\.2[0-9]{3}\) do not look like Hounsfield"
    assert re.search(found, err)
    assert "shows" in err and "of the tissue as white" in err
    assert main([*args, "--out", str(tmp_path / "b.nrrd"), "--json-progress"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 2 and "Hounsfield" in warnings[0]
    assert next(e for e in events if e["event"] == "done")["info"]["warnings"] == warnings
    # A CT in HU with a window that fits it: no warning.
    inside = sitk.GetArrayFromImage(on_grid) > 0
    hu = Volume.from_array(np.where(inside, 40, -1000).astype(np.int16), mri)
    sitk.WriteImage(hu.image, str(ct_path))
    assert main([*args, "--out", str(tmp_path / "c.nrrd")]) == 0
    assert "warning" not in capsys.readouterr().err


def _start(args: list[str], **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "EDPSNLib.cli", "fuse", *args, "--json-progress"]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        env=ENV,
        **kwargs,
    )


def _signal_at_stage(proc: subprocess.Popen, stage: str, sig: int, delay: float = 0.0) -> str:
    """Send ``sig`` once the run announces ``stage``; return its stderr after it ends."""
    import time

    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "stage" and event["stage"] == stage:
            time.sleep(delay)
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=300)
    return err


def _left_on_disk(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_ctrl_c_during_registration_is_one_clean_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--mri", str(PHANTOM / "MR-T2_MRI-DIR-zzmeatphantom_bin2x2x1.nii.gz")]
    args += ["--moving", str(PHANTOM / "CT_MRI-DIR-zzmeatphantom_bin2x2x2.nii.gz")]
    args += ["--modality", "CT", "--orientation", "search", "--method", "max"]
    args += ["--out", str(out / "fused.nrrd"), "--regions", str(out / "regions.nrrd")]
    proc = _start(args)
    # 5 s in: inside ITK's registration, whose Python callback would swallow a raised interrupt
    err = _signal_at_stage(proc, "fuse", signal.SIGINT, delay=5.0)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "edpsn fuse: interrupted"
    assert "Traceback" not in err and "overlap" not in err
    assert _left_on_disk(out) == []


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path: Path) -> None:
    mri, pet = _slab(tmp_path, 10, 70)
    out = tmp_path / "out"
    args = ["--mri", str(mri), "--moving", str(pet), "--modality", "PET", "--register", "none"]
    args += ["--axis", "coronal", "--method", "max", "--out", str(out / "fused.nrrd")]
    args += ["--regions", str(out / "regions.nrrd"), "--metrics", str(out / "metrics.csv")]
    proc = _start(args)
    err = _signal_at_stage(proc, "write", signal.SIGTERM)
    assert proc.returncode == 130, err  # the write (about 1 s) was under way
    assert err.strip().splitlines()[-1] == "edpsn fuse: interrupted"
    assert "Traceback" not in err
    assert _left_on_disk(out) == []  # no fused.nrrd, no hidden .fused.XXXX.tmp.nrrd


#: Runs ``edpsn`` under a file-size limit; SIGXFSZ ignored, so a write past it fails with
#: EFBIG, as a write fails with ENOSPC on a disk that fills up.
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from EDPSNLib.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_limited(limit: str, args: list[str]) -> subprocess.CompletedProcess:
    """``edpsn ARGS`` in a child whose file-size limit is ``limit`` bytes."""
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, limit, *args],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=ENV,
        timeout=300,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX only")
def test_disk_full_part_way_writes_no_output_and_keeps_the_old_set(tmp_path: Path) -> None:
    mri, _ = _slab(tmp_path, 30, 30)
    out = tmp_path / "out"
    # The MRI as a scalar "CT": the grey fused volume is compressed (~0.6 MB) and fits under
    # the limit, the uncompressed NIfTI labelmap (30 x 256 x 256 = 2 MB) does not.
    args = ["fuse", "--mri", str(mri), "--moving", str(mri), "--modality", "CT"]
    args += ["--register", "none", "--axis", "coronal", "--method", "max"]
    args += ["--out", str(out / "fused.nrrd"), "--regions", str(out / "regions.nii")]
    args += ["--metrics", str(out / "metrics.csv")]
    limit = "1300000"
    proc = _run_limited(limit, args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "regions.nii" in proc.stderr and "disk space" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _left_on_disk(out) == []  # not fused.nrrd without regions.nii
    # An earlier output set is kept whole when a re-run fails the same way.
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"fused.nrrd", "regions.nii", "metrics.csv"}
    assert int(limit) > (out / "fused.nrrd").stat().st_size  # the limit cut part-way
    assert int(limit) < (out / "regions.nii").stat().st_size
    proc = _run_limited(limit, [*args, "--method", "mean"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_module_pet_range_reaches_the_real_parser(tmp_path: Path) -> None:
    from EDPSNLib.cli import build_parser
    from EDPSNLib.errors import InputError
    from EDPSNLib.jobs.fuse import FuseJob, fuse_arguments, fuse_files, parse_pet_range

    files = fuse_files(tmp_path)
    job = FuseJob("PET", model="method:max", pet_range=parse_pet_range(" 0, 12.5 "))
    args = fuse_arguments(job, files)
    assert build_parser(only="fuse").parse_args(args).pet_range == [0.0, 12.5]
    assert (
        build_parser(only="fuse").parse_args(fuse_arguments(FuseJob("PET"), files)).pet_range
        is None
    )
    ct = fuse_arguments(FuseJob("CT", pet_range=(0.0, 1.0)), files)  # not for CT
    assert "--pet-range" not in ct
    assert parse_pet_range("") is None and parse_pet_range("auto") is None
    for bad in ("12", "5 1", "a b", "0 1 2", "nan 3"):
        with pytest.raises(InputError, match="LOW HIGH"):
            parse_pet_range(bad)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--ct-window", "40;80"], "Unknown CT window '40;80'"),
        (["--colormap", "rainbowz"], "Unknown colour map 'rainbowz'"),
        (["--pet-range", "5", "1"], "LOW < HIGH"),
    ],
)
def test_bad_appearance_is_refused_before_reading(flags: list[str], match: str, capsys) -> None:
    # Refused even where the modality would not use it, and before the (missing) inputs are read.
    args = ["fuse", "--mri", "none.nrrd", "--moving", "none.nrrd", "--modality", "PET"]
    assert main([*args, "--out", "f.nrrd", *flags]) == 2
    err = capsys.readouterr().err
    assert match in err and "does not exist" not in err


def test_deferred_interrupts_wait_for_the_block_and_never_stay_pending() -> None:
    from EDPSNLib import interrupts

    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with interrupts.deferred():
            interrupts.request("SIGTERM")
            assert interrupts.requested()  # the block goes on to its end
    assert not interrupts.requested() and not interrupts.deferring()
    with pytest.raises(ValueError):  # the block's own error wins, nothing stays pending
        with interrupts.deferred():
            interrupts.request("SIGINT")
            raise ValueError("registration failed")
    assert not interrupts.requested()
    with interrupts.deferred():
        pass  # no signal: no interrupt


def test_prepare_volumes_checks_the_modality_tag_too(tmp_path: Path, capsys) -> None:
    args = ["prepare", "volumes", "--mri", str(SAMPLE / "harvard_case25_MRI.nrrd")]
    args += ["--moving", str(STS / "PT_SUV_crop"), "--modality", "CT", "--out", str(tmp_path / "d")]
    assert main(args) == 2
    assert "Modality PT (PET)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()

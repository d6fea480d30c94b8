"""Bad input as a new user gives it: one line that says what is wrong, exit 2, no files left behind."""
from pathlib import Path

import numpy as np
import pytest

from irrepprobe.cli import main
from irrepprobe.examples import example_checkpoint


def _err(capsys, *argv):
    try:
        code = main(list(map(str, argv)))
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(bytes(range(256)) * 20), "neither a torch archive nor a pickle"),
    (lambda p: p.write_text("hello\n"), "it is a text file"),
    (lambda p: p.write_bytes(example_checkpoint().read_bytes()[:100_000]), "truncated or damaged torch archive"),
    (lambda p: p.write_bytes(b""), "it is empty"),
])
def test_foreign_files_say_what_they_are(tmp_path, capsys, make, message):
    path = tmp_path / "model.pt"
    make(path)
    code, err = _err(capsys, "capture", path, "--format", "irrepprobe", "--out", tmp_path / "c")
    assert code == 2 and len(err) == 1 and message in err[0] and "pickled" not in err[0]
    assert not (tmp_path / "c").exists()


def test_debug_works_after_the_subcommand(tmp_path):
    from irrepprobe.errors import IrrepprobeError

    with pytest.raises(IrrepprobeError):
        main(["capture", str(tmp_path / "missing.pt"), "--debug"])


def test_bad_thresholds_and_subsets_are_refused(tmp_path, capsys):
    code, err = _err(capsys, "capture", "--subset", 100_000, "--out", tmp_path / "c")
    assert code == 2 and "more than the 500 molecules of the test split" in err[0]
    code, err = _err(capsys, "prune", example_checkpoint(), "--drop-l", "0", "--threshold", "-1",
                     "--out", tmp_path / "p")
    assert code == 2 and "--threshold" in err[0]
    code, err = _err(capsys, "prune", example_checkpoint(), "--drop-l", "1", "--auto")
    assert code == 2 and "not both" in err[0]


def test_dropping_l0_is_refused_before_any_work(tmp_path, capsys):
    code, err = _err(capsys, "prune", example_checkpoint(), "--drop-l", "0", "--out", tmp_path / "p")
    assert code == 2 and len(err) == 1 and "l=0" in err[0].replace(" ", "").replace("l = 0", "l=0")
    assert not (tmp_path / "p").exists()


def test_yaml_errors_give_line_and_column(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  target: u0_atom\nmodel: [1, 2\n")
    code, err = _err(capsys, "train", path, "--out", tmp_path / "run")
    assert code == 2 and len(err) == 1 and "line" in err[0] and "column" in err[0]


def test_help_imports_no_heavy_library():
    """`irrepprobe --help` and every subcommand's --help answer without importing torch (or anything that
    pulls it in), which alone took 1.4 s; e3nn 0.4.x still gets its constants made loadable when first
    imported."""
    import subprocess
    import sys

    code = ("import sys\nfrom irrepprobe.cli import main\n"
            "for args in (['--help'], ['report', '--help'], ['prune', '--help'], ['capture', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'e3nn', 'numpy', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import e3nn.o3, torch\n"
            "assert slice in torch.serialization.get_safe_globals()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------- issue 37: every option before any work

NEQUIP = Path(__file__).parent / "data" / "nequip" / "nequip.ckpt"


def _refused(capsys, message, *argv, gone=()):
    """``argv`` exits 2 with exactly one line on stderr that holds ``message``, no traceback, and none of
    ``gone`` (the output directory, its control/ and tables/) exists afterwards."""
    code, err = _err(capsys, *argv)
    assert code == 2, (code, err)
    assert len(err) == 1, err
    assert message in err[0], err
    assert "Traceback" not in err[0] and "internal error" not in err[0]
    for path in gone:
        assert not Path(path).exists(), f"{path} was left behind"
        for sub in ("control", "tables"):
            assert not (Path(path) / sub).exists()
    return err[0]


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    """Captures of the shipped example model: 12 QM9 test molecules (the fewest a report takes) and one."""
    root = tmp_path_factory.mktemp("caps")
    for n in (12, 1):
        assert main(["capture", "--subset", str(n), "--check-equivariance", "0", "--out", str(root / f"cap{n}")]) == 0
    return root


def _half_labelled(path, n=18):
    """An extended XYZ of ``n`` small molecules where every other one carries an energy, a dipole and
    per-atom charges and the rest carry nothing."""
    import ase.io
    from ase.build import molecule

    frames = []
    for i in range(n):
        at = molecule(["H2O", "CH4", "NH3"][i % 3])
        at.positions += 0.01 * i
        if i % 2 == 0:
            at.info["energy"] = -1.0 - i
            at.info["dipole"] = [0.1 * i, 0.0, 0.0]
            at.arrays["charges"] = 0.01 * (1 + np.arange(len(at)))
        frames.append(at)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_report_quantity_forces_of_a_family_without_forces_is_refused_first(caps, tmp_path, capsys):
    line = _refused(capsys, "--quantity forces", "report", caps / "cap12", "--quantity", "forces",
                    "--out", tmp_path / "r", gone=[tmp_path / "r"])
    assert "irrepprobe family" in line and "--quantity energy" in line


def test_report_on_a_one_structure_capture_is_refused_first(caps, tmp_path, capsys):
    line = _refused(capsys, "holds 1 structure", "report", caps / "cap1", "--out", tmp_path / "r",
                    gone=[tmp_path / "r"])
    assert "at least 12" in line
    # the default output directory, inside the capture, is not left behind either
    _refused(capsys, "holds 1 structure", "report", caps / "cap1", gone=[caps / "cap1" / "report"])


@pytest.mark.parametrize("argv,message", [
    (["--map-points", "2"], "--map-points must be 0 (all) or at least 4"),
    (["--map-points", "5", "--map-criterion"], "at least 10 with --map-criterion"),
    (["--ablation-molecules", "-1"], "--ablation-molecules must be 0 (all)"),
    (["--seed", "-1"], "--seed must be 0 or a positive integer"),
    (["--controls", "0"], "--controls must be at least 1"),
    (["--threshold", "1.5"], "--threshold must be a fraction"),
    (["--first-look", "-2"], "--first-look must be 0"),
    (["--quantity", "charge"], "argument --quantity: invalid choice"),
    (["--map-method", "tsne"], "argument --map-method: invalid choice"),
    (["--map-layers", "nowhere"], "--map-layers: 'nowhere' is not a captured point"),
    (["--recovery-steps", "5"], "add --recovery"),
    (["--recovery", "--recovery-steps", "0"], "--recovery-steps must be at least 1"),
    (["--recovery", "--recovery-lr", "-1"], "--recovery-lr must be a positive"),
    (["--recovery", "--ablation-molecules", "2"], "--recovery fine-tunes on some structures"),
    (["--compare", "CAP1"], "--compare"),
    (["--compare", "MISSING"], "is not a capture directory"),
    (["--seeds", "CAP1"], "--seeds"),
    (["--seeds", "MISSING"], "is not a capture directory"),
    (["--necessity", "l=1:MISSING"], "is not a capture directory"),
    (["--necessity", "l=7:CAP12"], "l=7 is not an order above 0 of the captured blocks"),
    (["--necessity", "one:CAP12"], "--necessity takes ORDERS:CAPTURE"),
    (["--model", "MISSING.pt"], "--model"),
])
def test_every_report_option_is_checked_before_any_work(caps, tmp_path, capsys, argv, message):
    argv = [a.replace("CAP12", str(caps / "cap12")).replace("CAP1", str(caps / "cap1"))
            .replace("MISSING", str(tmp_path / "missing")) for a in argv]
    _refused(capsys, message, "report", caps / "cap12", *argv, "--out", tmp_path / "r", gone=[tmp_path / "r"])


def test_report_refuses_a_capture_that_is_not_one(tmp_path, capsys):
    _refused(capsys, "is not a capture directory", "report", tmp_path / "nothing", "--out", tmp_path / "r",
             gone=[tmp_path / "r"])


def test_a_refusal_keeps_what_was_in_an_existing_output_directory(caps, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "tables").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes\n")
    (out / "tables" / "old.csv").write_text("a\n1\n")
    _refused(capsys, "--quantity forces", "report", caps / "cap12", "--quantity", "forces", "--out", out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["notes.txt", "tables", "tables/old.csv"]
    assert (out / "notes.txt").read_text() == "my notes\n"


def test_undo_on_refusal_removes_only_what_the_run_created(tmp_path):
    """Bad input found midway: what the run made goes (with the parents it made), what was there stays."""
    from irrepprobe.cli.checks import undo_on_refusal
    from irrepprobe.errors import IrrepprobeError

    old = tmp_path / "old"
    (old / "keep").mkdir(parents=True)
    (old / "keep" / "data.csv").write_text("x\n")
    fresh = tmp_path / "a" / "b" / "out"
    with pytest.raises(IrrepprobeError):
        with undo_on_refusal(old, fresh):
            (old / "control" / "capture").mkdir(parents=True)
            (old / "control" / "capture" / "meta.json").write_text("{}")
            (old / "keep" / "new.csv").write_text("y\n")
            (fresh / "control").mkdir(parents=True)
            raise IrrepprobeError("bad input found midway")
    assert sorted(p.relative_to(old).as_posix() for p in old.rglob("*")) == ["keep", "keep/data.csv"]
    assert not (tmp_path / "a").exists()
    with pytest.raises(KeyboardInterrupt):  # an interrupt keeps what was made: a rerun resumes from it
        with undo_on_refusal(fresh):
            fresh.mkdir(parents=True)
            raise KeyboardInterrupt
    assert fresh.is_dir()


def test_labels_on_only_some_structures_are_listed_with_their_counts(tmp_path):
    from irrepprobe.data.structures import read_structures

    s = read_structures(_half_labelled(tmp_path / "half.xyz"))
    assert not s.labels and "charges" not in s.atom_labels
    text = s.describe_labels()
    assert text.startswith("none on all 18 structures;") and "energy, dipole, charges (per atom) on 9 of 18" in text
    labelled = s.take(np.arange(0, 18, 2))  # the labelled ones: labels again
    assert set(labelled.labels) == {"energy", "dipole"} and labelled.labels["dipole"].shape == (9, 3)
    assert labelled.atom_labels["charges"].shape == (int(labelled.n_atoms.sum()),)


def test_a_label_on_only_some_structures_is_refused_as_target(tmp_path, capsys):
    data = _half_labelled(tmp_path / "half.xyz")
    line = _refused(capsys, "--target 'energy'", "capture", "--data", data, "--target", "energy",
                    "--out", tmp_path / "c", gone=[tmp_path / "c"])
    assert "on only 9 of the 18 structures" in line
    line = _refused(capsys, "no label 'u0'", "capture", "--data", data, "--target", "u0", "--out", tmp_path / "c",
                    gone=[tmp_path / "c"])
    assert "its labels: none on all 18 structures; energy, dipole, charges (per atom) on 9 of 18" in line
    assert "labels: none" not in line.replace("labels: none on all", "")
    _refused(capsys, "is a per-atom label", "capture", "--data", data, "--target", "charges", "--out", tmp_path / "c",
             gone=[tmp_path / "c"])


@pytest.mark.parametrize("argv,message", [
    (["capture", "--split", "validation"], "unknown QM9 split 'validation'"),
    (["capture", "--data", "qm9:val", "--split", "val"], "--split is for QM9 without --data"),
    (["capture", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["capture", "--check-equivariance", "-1"], "--check-equivariance must be 0"),
    (["capture", "--subset", "0"], "--subset must be a positive number"),
    (["capture", "--subset", "many"], "argument --subset: invalid int value"),
    (["capture", "--points", "nothing*"], "no point matches 'nothing*'"),
    (["capture", "--format", "torchani"], "unknown model format 'torchani'"),
    (["capture", "--data", "MISSING.xyz"], "data file not found"),
    (["capture", "--device", "tpu"], "argument --device: invalid choice"),
])
def test_every_capture_option_is_checked_before_any_work(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "missing.xyz") if a == "MISSING.xyz" else a for a in argv]
    _refused(capsys, message, *argv, "--out", tmp_path / "c", gone=[tmp_path / "c"])


def test_an_output_directory_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("mine\n")
    for argv in (["capture", "--subset", "2"], ["train", "--preset", "smoke"],
                 ["prune", example_checkpoint(), "--drop-l", "1"]):
        _refused(capsys, f"--out {path} is a file", *argv, "--out", path)
    for argv in (["capture", "--subset", "2"], ["data"], ["evaluate", example_checkpoint()]):
        _refused(capsys, f"--cache-dir {path} is a file", *argv, "--cache-dir", path)
    _refused(capsys, f"--cache-dir {path} is a file", "capture", "--cache-dir", path, "--out", tmp_path / "c",
             gone=[tmp_path / "c"])
    assert path.read_text() == "mine\n"


@pytest.mark.parametrize("argv,message", [
    (["--drop-l", "1", "--seeds", "0"], "--seeds must be at least 1"),
    (["--drop-l", "1", "--ablation-molecules", "-5"], "--ablation-molecules must be 0 (all)"),
    (["--drop-l", "1", "--recovery-steps", "5"], "it goes with --auto"),
    (["--auto", "--recovery-steps", "0"], "--recovery-steps must be at least 1"),
    (["--drop-l", "x"], "--drop-l takes orders like 1,2"),
    (["--drop-l", "1", "--steps", "5"], "--steps: for other families"),
    (["--drop-l", "1", "--data", "qm9"], "--data: for other families"),
])
def test_every_prune_option_is_checked_before_any_work(tmp_path, capsys, argv, message):
    _refused(capsys, message, "prune", example_checkpoint(), *argv, "--out", tmp_path / "p", gone=[tmp_path / "p"])


@pytest.fixture
def si_and_molecules(tmp_path):
    import ase.io
    from ase.build import bulk, molecule

    frames = [molecule("H2O"), molecule("CH4")] + [bulk("Si", "diamond", a=5.43) for _ in range(4)]
    for at in frames:
        at.info["energy"] = -1.0
    ase.io.write(tmp_path / "si.xyz", frames, format="extxyz")
    return tmp_path / "si.xyz"


def test_prune_on_an_unknown_element_leaves_no_out(tmp_path, capsys, si_and_molecules):
    pytest.importorskip("nequip")
    line = _refused(capsys, "the data also has Si", "prune", NEQUIP, "--trust", "--data", si_and_molecules,
                    "--drop-l", "2", "--out", tmp_path / "p", gone=[tmp_path / "p"])
    assert "NequIP" in line
    # the default output directory (prune-<model> here) is not left behind either
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        _refused(capsys, "the data also has Si", "prune", NEQUIP, "--trust", "--data", si_and_molecules,
                 "--drop-l", "2", gone=[tmp_path / "prune-nequip"])
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--held-out", "missing.xyz"], "missing.xyz"),
    (["--warm-start"], "--warm-start: for our checkpoints only"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--md-steps", "-1"], "--md-steps must be 0"),
    (["--subset", "0"], "--subset must be a positive number"),
    (["--target", "energy"], "on only 9 of the 18 structures"),
    (["--target", "gap"], "its labels: none on all 18 structures"),
])
def test_prune_of_another_family_checks_its_options_first(tmp_path, capsys, argv, message):
    pytest.importorskip("nequip")
    data = _half_labelled(tmp_path / "half.xyz")
    _refused(capsys, message, "prune", NEQUIP, "--trust", "--data", data, "--drop-l", "2", *argv,
             "--out", tmp_path / "p", gone=[tmp_path / "p"])


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "CKPT", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["dynamics", "TMP", "--subset", "5"], "--subset must be 0 (all) or at least 10"),
    (["dynamics", "TMP", "--seed", "-1"], "--seed must be 0 or a positive integer"),
    (["dynamics", "TMP"], "holds no kept checkpoints"),
    (["experiment", "TMP/grid.yaml", "--jobs", "0"], "--jobs must be at least 1"),
    (["data", "--split", "val"], "--split: only with export"),
    (["data", "export", "TMP/q.xyz", "--split", "everything"], "unknown split 'everything'"),
    (["data", "export", "TMP/q.xyz", "--subset", "100000"], "more than the"),
    (["data", "export", "TMP/q.xyz", "--split", "all", "--checkpoint", "CKPT"], "with --checkpoint give --split"),
    (["train", "--preset", "smoke", "--set", "model.ls=[1]", "--out", "TMP/run"], "model.ls"),
    (["train", "--resume", "--out", "TMP/run"], "no checkpoint to resume"),
])
def test_other_commands_check_their_options_first(tmp_path, capsys, argv, message):
    argv = [str(example_checkpoint()) if a == "CKPT" else a.replace("TMP", str(tmp_path)) for a in argv]
    _refused(capsys, message, *argv, gone=[tmp_path / "q.xyz", tmp_path / "run", tmp_path / "dynamics"])

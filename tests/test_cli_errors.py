"""Bad input as a new user gives it: one line that says what is wrong, exit 2, no files left behind."""
import pytest

from irrepprobe.cli import main
from irrepprobe.examples import example_checkpoint


def _err(capsys, *argv):
    code = main(list(map(str, argv)))
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

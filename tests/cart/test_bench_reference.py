"""``immunocal bench cart --reference-binary``: the published program's step timed by difference of two runs."""

import stat

import pytest

from immunocal.forward.cart.bench import compare_with_reference, reference_program_step


def _fake_program(tmp_path, body):
    path = tmp_path / "fake_cart"
    path.write_text("#!/usr/bin/env python3\nimport sys, time, os\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_reference_step_is_the_difference_of_two_runs(tmp_path):
    """A stand-in program sleeping 0.2 s to start plus 0.01 s per simulated step (T/dt steps): the per-step
    cost comes out near 0.01 s whatever the start-up; its arguments are the program's own names."""
    prog = _fake_program(tmp_path, """
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
assert args["nx"] == args["ny"] == args["nz"] == "6", args
os.makedirs(args["out_dir"], exist_ok=True)
time.sleep(0.2 + 0.01 * round(float(args["T"]) / 0.01))
""")
    r = reference_program_step(prog, n=6, steps=20, warmup=2)
    assert 0.2 < r["wall_short_s"] < r["wall_long_s"]
    assert r["s_per_step"] == pytest.approx(0.01, abs=0.004)


def test_reference_binary_errors_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_program"):
        reference_program_step(str(tmp_path / "no_such_program"), n=4, steps=1)
    failing = _fake_program(tmp_path, "sys.stderr.write('bad grid'); sys.exit(3)\n")
    with pytest.raises(RuntimeError, match=r"exit 3\): bad grid"):
        reference_program_step(failing, n=4, steps=1)
    with pytest.raises(ValueError, match="rounds"):
        compare_with_reference(failing, n=4, steps=1, rounds=0)

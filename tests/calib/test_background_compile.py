"""Kernels compiled in background processes while the likelihood graph compiles (``compile_in_background`` /
``await_compiled``): the process rebuilds the model from its descriptor and runs its ``warm_up``; a failure is
announced, never swallowed; a model without ``warm_up`` is left to compile where it is called."""

import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

from immunocal.calib import forward_api
from immunocal.calib.forward_api import await_compiled, compile_in_background, load_forward_model


def test_background_warm_up_rebuilds_the_model_and_is_awaited():
    fm = load_forward_model({"spec": "immunocal.forward.rit.simulator:RitSimulator",
                             "options": {"data_days": [7.0, 20.0], "dt": 1.0, "substeps": 1}})
    assert compile_in_background(fm, jacobian=False)
    key = (forward_api.descriptor_key(fm.descriptor), False)
    proc = forward_api._COMPILING[key]
    assert isinstance(proc, subprocess.Popen) and proc.args[0] == sys.executable
    assert compile_in_background(fm, jacobian=False) and forward_api._COMPILING[key] is proc  # not started twice
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed background compilation would warn
        await_compiled(fm)
    assert proc.returncode == 0 and key not in forward_api._COMPILING
    await_compiled(fm)  # nothing pending: returns at once
    y = fm.simulate(np.array([[0.1, 5.0, 0.05]]), {})  # the kernel the process compiled, now in this one
    assert np.all(np.isfinite(y))


def test_failed_background_compilation_is_announced():
    broken = types.SimpleNamespace(name="broken", warm_up=lambda jacobian=False: None,
                                   descriptor={"spec": "immunocal.calib.toy:NoSuchModel"})
    assert compile_in_background(broken, jacobian=True)
    with pytest.warns(RuntimeWarning, match=r"(?s)background compilation of its (sensitivities|values) failed.*NoSuchModel"):
        await_compiled(broken)
    assert not any(k[0] == forward_api.descriptor_key(broken.descriptor) for k in forward_api._COMPILING)


def test_a_model_without_warm_up_compiles_where_it_is_called():
    plain = load_forward_model("toy.logistic")
    assert not compile_in_background(plain) and not forward_api._COMPILING


"""What `Guard.step` and `checkpoint_saved` take from a training loop (losslens.guard.inputs):
numpy scalars, 0-d arrays and one-element torch tensors are converted; a str, None or bool
loss, a step past int64 or with a fraction, a many-element array are one LossLensError line
naming the argument, in every mode (in process, in slices, asynchronous), and nothing of the
refused call is kept."""
from __future__ import annotations

import math

import numpy as np
import pytest

from losslens.errors import InvalidParameterError
from losslens.guard import Guard, GuardPolicy
from losslens.guard.inputs import number, step_number

BAD = [
    ((2 ** 63, 1.0), "Guard.step: step must fit a 64-bit integer (|step| < 2**63), "
                     "got int 9223372036854775808"),
    ((-(2 ** 63) - 1, 1.0), "Guard.step: step must fit a 64-bit integer"),
    ((1, "1.5"), "Guard.step: loss must be a number (int, float, numpy scalar or 0-d array, "
                 "one-element torch tensor), got str '1.5'"),
    ((1, None), "Guard.step: loss must be a number (int, float, numpy scalar or 0-d array, "
                "one-element torch tensor), got None"),
    ((1, True), "got bool True"),
    ((1, np.bool_(True)), "Guard.step: loss must be a number"),
    ((True, 1.0), "Guard.step: step must be a whole number, got bool True"),
    (("3", 1.0), "Guard.step: step must be a whole number, got str '3'"),
    ((None, 1.0), "Guard.step: step must be a whole number, got None"),
    ((2.5, 1.0), "Guard.step: step must be a whole number, got float 2.5"),
    ((math.nan, 1.0), "Guard.step: step must be a whole number, got float nan"),
    ((1, np.array([1.0, 2.0])), "Guard.step: loss must be a number (int, float, numpy scalar "
                                "or 0-d array, one-element torch tensor), got ndarray "
                                "array([1., 2.])"),
    ((1, 10 ** 400), "(too large for a float)"),
    ((1, 1 + 2j), "got complex (1+2j)"),
    ((1, 1.0, "x"), "Guard.step: grad_norm must be a number"),
    ((1, 1.0, None, [3e-4]), "Guard.step: lr must be a number"),
    ((1, 1.0, None, None, "65536"), "Guard.step: loss_scale must be a number"),
]


def _modes():
    yield "in-process", dict(asynchronous=False)
    yield "sliced", dict(policy=GuardPolicy(asynchronous=False, slice_ms=0.5))


@pytest.mark.parametrize("args,message", BAD)
def test_refused_with_one_line_naming_the_argument(args, message):
    for _, kw in _modes():
        g = Guard(**kw)
        g.step(0, 2.0)
        with pytest.raises(InvalidParameterError) as info:
            g.step(*args)
        text = str(info.value)
        assert message in text and "\n" not in text and len(text) < 200
        g.step(1, 2.0)  # the guard goes on, the refused call left nothing behind
        assert g.flush() == []
        assert {t: s.step[:s.n].tolist() for t, s in g.live.series.items()} == {"loss": [0, 1]}


def test_converted_numbers_are_those_of_plain_floats():
    """numpy scalars, 0-d arrays, integral float steps: the same decisions and events as
    the plain numbers (a spike that never comes back, stopped at the same step)."""
    n = 600
    loss = 2 + np.exp(-np.arange(n) / 100)
    loss[400:] *= 3
    plain = Guard(asynchronous=False)
    wrapped = Guard(asynchronous=False)
    for i in range(n):
        a = plain.step(i, float(loss[i]), grad_norm=1.0, lr=3e-4)
        b = wrapped.step(np.int64(i) if i % 2 else float(i), np.array(loss[i]),
                         grad_norm=np.float32(1.0), lr=np.array(3e-4))
        assert a == b
    assert plain.flush() == wrapped.flush()
    assert plain.stopped is not None and plain.stopped == wrapped.stopped


def test_torch_tensors_are_read():
    torch = pytest.importorskip("torch")  # (a third-party package: tests run without it)
    loss = torch.tensor(2.5, requires_grad=True) * 1.0  # a graph's loss
    assert number("loss", loss) == 2.5
    assert number("loss", torch.tensor([1.5], dtype=torch.bfloat16)) == 1.5
    assert step_number(torch.tensor(7)) == 7
    assert step_number(torch.tensor(7.0)) == 7
    with pytest.raises(InvalidParameterError, match=r"got Tensor tensor\(\[1\., 2\.\]\)"):
        number("loss", torch.tensor([1.0, 2.0]))
    with pytest.raises(InvalidParameterError, match="Guard.step: loss must be a number"):
        number("loss", torch.tensor(True))
    g = Guard(asynchronous=False)
    assert not g.step(torch.tensor(3), loss, grad_norm=torch.tensor(0.5))
    g.flush()
    assert {t: (s.step[:s.n].tolist(), s.value[:s.n].tolist())
            for t, s in g.live.series.items()} == {"loss": ([3], [2.5]),
                                                   "grad_norm": ([3], [0.5])}


def test_checkpoint_saved_checks_its_step():
    g = Guard(asynchronous=False)
    g.checkpoint_saved(np.int64(100))
    g.checkpoint_saved(200.0)
    assert g.checkpoints == [100, 200] and all(type(c) is int for c in g.checkpoints)
    with pytest.raises(InvalidParameterError,
                       match=r"^Guard.checkpoint_saved: step must fit a 64-bit integer"):
        g.checkpoint_saved(2 ** 64)


def test_asynchronous_refuses_before_shipping():
    with Guard() as g:
        assert g.asynchronous
        g.step(0, 2.0)
        with pytest.raises(InvalidParameterError, match="step must fit a 64-bit integer"):
            g.step(2 ** 63, 2.0)
        with pytest.raises(InvalidParameterError, match="loss must be a number"):
            g.step(1, "nan")
        g.step(1, np.float64(2.0))
        assert g.flush() == []

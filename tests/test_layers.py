"""Layer behaviour beyond the numbers: edge sizes against the NumPy reference, repeatability,
thread safety, state_dict round trips and the errors that bad input gets."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import numgru as ng


def _pair(dtype="float64", **kw):
    """The same GRU on the CPU backend and on the NumPy reference."""
    a = ng.GRU(device="cpu", dtype=dtype, seed=4, **kw)
    b = ng.GRU(device="numpy", dtype=dtype, seed=4, **kw)
    return a, b


# -- edge sizes --

EDGES = [  # B, T, I, H, lengths
    (1, 1, 1, 1, None),
    (1, 9, 3, 1, None),
    (3, 1, 2, 5, None),
    (1, 17, 5, 13, [17]),
    (5, 8, 7, 37, [8, 8, 8, 8, 8]),  # all equal to T
    (4, 6, 3, 11, [1, 1, 1, 1]),  # all equal to 1
    (6, 10, 4, 23, [10, 1, 9, 2, 8, 3]),
]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("edge", EDGES, ids=lambda e: "B{}T{}I{}H{}".format(*e[:4]))
def test_edge_sizes_match_reference(edge, reset_after):
    B, T, I, H, lengths = edge
    rng = np.random.default_rng(B + 10 * T + 100 * H)
    a, b = _pair(input_size=I, hidden_size=H, num_layers=2, bidirectional=True,
                 reset_after=reset_after)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((4, B, H))
    dy = rng.standard_normal((B, T, 2 * H))
    dh = rng.standard_normal((4, B, H))
    outs = []
    for layer in (a, b):
        y, h_n = layer.forward(x, h0, lengths, train=True)
        dx, dh0 = layer.backward(dy, dh)
        outs.append([y, h_n, dx, dh0] + [layer.grads[k] for k in sorted(layer.grads)])
    for got, want in zip(*outs):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    if lengths is not None and min(lengths) == 1:
        # With length 1 the forward direction's only output is at step 0 and h_n is that output.
        y = outs[1][0]
        i = int(np.argmin(lengths))
        assert np.all(y[i, 1:] == 0)


# -- repeatability and threads --

def test_results_identical_from_one_call_to_the_next():
    rng = np.random.default_rng(0)
    gru = ng.GRU(16, 32, num_layers=2, bidirectional=True, device="cpu", seed=1)
    x = rng.standard_normal((8, 20, 16)).astype(np.float32)
    y1, h1 = gru(x)
    y2, h2 = gru(x)
    assert np.array_equal(y1, y2) and np.array_equal(h1, h2)
    gru.forward(x, train=True)
    dx1, _ = gru.backward(y1)
    g1 = gru.flat_grads.copy()
    gru.zero_grad()
    gru.forward(x, train=True)
    dx2, _ = gru.backward(y1)
    assert np.array_equal(dx1, dx2) and np.array_equal(g1, gru.flat_grads)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_four_threads_calling_one_layer_at_once(device):
    """Inference keeps no state, so concurrent calls give each caller its own correct answer."""
    rng = np.random.default_rng(1)
    gru = ng.GRU(12, 48, num_layers=2, device=device, seed=2)
    xs = [rng.standard_normal((4, 60, 12)).astype(np.float32) for _ in range(4)]
    expected = [gru(x) for x in xs]
    results = [None] * 4
    errors = []
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for _ in range(5):
                results[i] = gru(xs[i])
                assert np.array_equal(results[i][0], expected[i][0])
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (y, h), (ye, he) in zip(results, expected):
        assert np.array_equal(y, ye) and np.array_equal(h, he)


def test_training_in_threads_keeps_one_cache_per_thread():
    rng = np.random.default_rng(2)
    gru = ng.GRU(3, 5, dtype="float64", device="cpu", seed=3)
    xs = [rng.standard_normal((2, 6, 3)) for _ in range(4)]
    dys = [rng.standard_normal((2, 6, 5)) for _ in range(4)]
    expected = []
    for x, dy in zip(xs, dys):
        gru.forward(x, train=True)
        expected.append(gru.backward(dy)[0])
    got = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        gru.forward(xs[i], train=True)
        barrier.wait()
        got[i] = gru.backward(dys[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


_THREADS_SCRIPT = """
import numpy as np, numgru as ng
rng = np.random.default_rng(0)
# B·H·H above the parallel threshold: the default runs each pass in several parts
gru = ng.GRU(24, 96, num_layers=2, bidirectional=True, device="cpu", seed=0)
x = rng.standard_normal((32, 40, 24)).astype(np.float32)
y, h = gru.forward(x, train=True)
dx, _ = gru.backward(np.ones_like(y))
np.savez(OUT, y=y, h=h, dx=dx, g=gru.flat_grads)
"""


def test_one_thread_and_default_threads_agree(tmp_path):
    """NUMBA_NUM_THREADS=1 (one part per pass; and one BLAS thread) against the default, in
    fresh processes: the same bits."""
    outs = []
    for name, env_extra in [("one", {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
                            ("default", {})]:
        out = tmp_path / f"{name}.npz"
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        env.update(env_extra)
        subprocess.run([sys.executable, "-c", f"OUT = {str(out)!r}\n" + _THREADS_SCRIPT],
                       env=env, check=True)
        outs.append(np.load(out))
    for key in ["y", "h", "dx", "g"]:
        # Each entry's arithmetic does not depend on how the work is split over threads.
        np.testing.assert_array_equal(outs[0][key], outs[1][key], err_msg=key)


# -- state_dict --

def test_state_dict_round_trip_and_copies():
    gru = ng.GRU(3, 4, num_layers=2, bidirectional=True, seed=0)
    sd = gru.state_dict()
    assert list(sd) == [f"{w}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
                        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert sd["weight_ih_l1"].shape == (12, 8) and sd["bias_hh_l0_reverse"].shape == (12,)
    sd["weight_ih_l0"][...] = 0  # a copy: the layer is untouched
    assert not np.all(gru.params["weight_ih_l0"] == 0)
    other = ng.GRU(3, 4, num_layers=2, bidirectional=True, seed=1)
    other.load_state_dict(gru.state_dict())
    assert all(np.array_equal(other.params[k], v) for k, v in gru.params.items())
    assert list(ng.GRU(3, 4, bias=False).state_dict()) == ["weight_ih_l0", "weight_hh_l0"]
    assert list(ng.GRUCell(3, 4).state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


# -- bad input: each gets a clear error naming the argument, the expected and what came --

@pytest.fixture
def gru():
    return ng.GRU(5, 4, num_layers=2, device="cpu")


def test_wrong_rank(gru):
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(B, T, I\), got 2-D shape \(7, 5\)"):
        gru(np.zeros((7, 5)))


def test_wrong_feature_size(gru):
    with pytest.raises(ValueError, match=r"x: expected feature size .* 5, got shape \(2, 7, 6\)"):
        gru(np.zeros((2, 7, 6)))


def test_empty_batch_or_sequence(gru):
    with pytest.raises(ValueError, match=r"x: expected at least one step"):
        gru(np.zeros((2, 0, 5)))


def test_h0_of_the_wrong_shape(gru):
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 3, 4\), got \(1, 3, 4\)"):
        gru(np.zeros((3, 7, 5)), h0=np.zeros((1, 3, 4)))


@pytest.mark.parametrize("lengths,pattern", [
    ([0, 3, 7], r"lengths: expected every length in \[1, 7\] \(T = 7\), got min 0"),
    ([1, 8, 7], r"lengths: expected every length in \[1, 7\] .* max 8"),
    ([3, 3], r"lengths: expected shape \(3,\) .* got \(2,\)"),
])
def test_lengths_out_of_range_or_wrong_length(gru, lengths, pattern):
    with pytest.raises(ValueError, match=pattern):
        gru(np.zeros((3, 7, 5)), lengths=lengths)


def test_lengths_of_a_non_integer_type(gru):
    with pytest.raises(TypeError, match=r"lengths: expected an integer array .* got dtype float64"):
        gru(np.zeros((3, 7, 5)), lengths=[1.5, 2.0, 3.0])


@pytest.mark.parametrize("bad", [np.full((2, 7, 5), "a"), np.zeros((2, 7, 5), complex),
                                 [[[None] * 5] * 7] * 2])
def test_non_numeric_input(gru, bad):
    with pytest.raises(TypeError, match=r"x: expected a (numeric|real) array, got dtype"):
        gru(bad)


def test_non_finite_input(gru):
    x = np.zeros((2, 7, 5))
    x[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match=r"x: contains NaN or Inf \(first at index \(1, 3, 2\)\)"):
        gru(x)


def test_state_dict_missing_extra_or_misshapen(gru):
    sd = gru.state_dict()
    del sd["bias_hh_l1"]
    with pytest.raises(ValueError, match=r"state_dict: missing keys \['bias_hh_l1'\]"):
        gru.load_state_dict(sd)
    sd = gru.state_dict()
    sd["weight_ih_l2"] = np.zeros((12, 4))
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l2'\]"):
        gru.load_state_dict(sd)
    sd = gru.state_dict()
    before = gru.state_dict()
    sd["weight_hh_l1"] = np.zeros((12, 5))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\]: expected shape "
                                         r"\(12, 4\), got \(12, 5\)"):
        gru.load_state_dict(sd)
    # All or nothing: a failed load changes no parameter.
    assert all(np.array_equal(gru.params[k], v) for k, v in before.items())


@pytest.mark.parametrize("device,exc,pattern", [
    ("tpu", ValueError, r"device: expected one of .*'cpu'.* got 'tpu'"),
    (3, TypeError, r"device: expected one of .* got int 3"),
    ("cuda", RuntimeError, r"device='cuda' is not usable: "),
])
def test_unknown_or_unusable_device(device, exc, pattern):
    if device == "cuda" and ng.cuda_status()[0]:
        pytest.skip("a usable CUDA GPU is present on this machine")
    with pytest.raises(exc, match=pattern):
        ng.GRU(3, 4, device=device)


def test_device_forced_by_environment(monkeypatch):
    monkeypatch.setenv("NUMGRU_DEVICE", "numpy")
    assert ng.GRU(3, 4).device == "numpy"
    monkeypatch.setenv("NUMGRU_DEVICE", "gpu0")
    with pytest.raises(ValueError, match=r"NUMGRU_DEVICE: expected one of"):
        ng.GRU(3, 4)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"dtype": "float16"}, r"dtype: expected 'float32' or 'float64', got 'float16'"),
    ({"dropout": 1.0}, r"dropout: expected a number in \[0, 1\), got 1.0"),
    ({"hidden_size": 0}, r"hidden_size: expected a positive integer, got 0"),
    ({"num_layers": 1.5}, r"num_layers: expected a positive integer, got 1.5"),
])
def test_bad_constructor_arguments(kwargs, pattern):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        ng.GRU(**args)


def test_backward_without_training_forward_and_bad_gradients(gru):
    x = np.zeros((3, 7, 5))
    gru(x)
    with pytest.raises(RuntimeError, match=r"backward: call forward\(x, \.\.\., train=True\) first"):
        gru.backward(np.zeros((3, 7, 4)))
    gru.forward(x, train=True)
    with pytest.raises(ValueError, match=r"dy: expected shape \(3, 7, 4\), got \(3, 7, 5\)"):
        gru.backward(np.zeros((3, 7, 5)))
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(2, 3, 4\), got \(3, 4\)"):
        gru.backward(np.zeros((3, 7, 4)), np.zeros((3, 4)))


def test_gru_cell_bad_input():
    cell = ng.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"x: expected a 2-D array \(B, I\) or a 1-D array"):
        cell(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"x: expected feature size .* 3, got shape \(2, 5\)"):
        cell(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"h: expected shape \(2, 4\), got \(4,\)"):
        cell(np.zeros((2, 3)), np.zeros(4))
    x = np.zeros((2, 3), np.float32)
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"x: contains NaN or Inf \(first at index \(1, 2\)\)"):
        cell(x)
    with pytest.raises(ValueError, match=r"h: contains NaN or Inf"):
        cell(np.zeros(3), np.full(4, np.nan))
    with pytest.raises(TypeError, match=r"x: expected a numeric array, got dtype <U1"):
        cell(np.full((2, 3), "a"))


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_step_matches_reference(reset_after, bias):
    """The host streaming step (one compiled call) against the NumPy reference, both variants."""
    rng = np.random.default_rng(8)
    cells = [ng.GRUCell(6, 9, bias=bias, reset_after=reset_after, dtype="float64", device=d,
                        seed=3) for d in ("cpu", "numpy")]
    x = rng.standard_normal((4, 6))
    h = rng.standard_normal((4, 9))
    got, want = (c(x, h) for c in cells)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cells[0](x[0], h[0]), want[0], rtol=1e-12, atol=1e-13)


def test_changing_inputs_or_outputs_after_forward_does_not_change_gradients():
    """The CPU cache reads the layer's input and outputs again in backward: both stay the caller's
    to change (time-major, one direction, where no transpose copies them anyway)."""
    rng = np.random.default_rng(9)
    gru = ng.GRU(3, 5, batch_first=False, dtype="float64", device="cpu", seed=1)
    x = rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((6, 2, 5))
    gru.forward(x, train=True)
    want_dx, _ = gru.backward(dy)
    want = gru.flat_grads.copy()
    gru.zero_grad()
    y, _ = gru.forward(x, train=True)
    y[...] = 7.0
    x[...] = -3.0
    dx, _ = gru.backward(dy)
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(gru.flat_grads, want)

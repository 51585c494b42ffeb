"""Losses against PyTorch (values and gradients, with and without masks) and against central finite
differences in float64; bad targets and masks give named errors."""

import numpy as np
import pytest

import numgru as ng

from helpers import central_differences

torch = pytest.importorskip("torch")


def _finite_diff(f, x):
    """df/dx by central differences (f takes x; x is moved in place and restored)."""
    return central_differences(lambda: f(x), x)


def test_mse_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss, grad = ng.mse_loss(pred, target)
    pt = torch.from_numpy(pred).requires_grad_()
    lt = torch.nn.functional.mse_loss(pt, torch.from_numpy(target))
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-14)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-13)
    fd = _finite_diff(lambda p: ng.mse_loss(p, target)[0], pred.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-10)


def test_masked_mse_is_the_mean_over_valid_steps():
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5, 2))
    mask = np.arange(5)[None, :] < np.array([5, 2, 3])[:, None]
    loss, grad = ng.mse_loss(pred, target, mask)
    pt = torch.from_numpy(pred).requires_grad_()
    mt = torch.from_numpy(mask)
    lt = torch.nn.functional.mse_loss(pt[mt], torch.from_numpy(target)[mt])
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-14)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-13, atol=1e-16)
    fd = _finite_diff(lambda p: ng.mse_loss(p, target, mask)[0], pred.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-10)


def test_cross_entropy_matches_torch_and_finite_differences():
    rng = np.random.default_rng(2)
    logits = 3 * rng.standard_normal((6, 4))
    target = rng.integers(0, 4, 6)
    loss, grad = ng.cross_entropy_loss(logits, target)
    lt_in = torch.from_numpy(logits).requires_grad_()
    lt = torch.nn.functional.cross_entropy(lt_in, torch.from_numpy(target))
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-13)
    np.testing.assert_allclose(grad, lt_in.grad.numpy(), rtol=1e-12, atol=1e-15)
    fd = _finite_diff(lambda z: ng.cross_entropy_loss(z, target)[0], logits.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-10)


def test_masked_cross_entropy_matches_torch_ignore_index():
    """Per-step logits (B, T, C) with a mask = torch's ignore_index on the masked-out steps."""
    rng = np.random.default_rng(3)
    B, T, C = 3, 5, 4
    logits = rng.standard_normal((B, T, C))
    target = rng.integers(0, C, (B, T))
    mask = np.arange(T)[None, :] < np.array([5, 1, 3])[:, None]
    loss, grad = ng.cross_entropy_loss(logits, target, mask)
    ignored = np.where(mask, target, -100)
    zt = torch.from_numpy(logits).requires_grad_()
    lt = torch.nn.functional.cross_entropy(zt.reshape(-1, C), torch.from_numpy(ignored).reshape(-1),
                                           ignore_index=-100)
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    fd = _finite_diff(lambda z: ng.cross_entropy_loss(z, target, mask)[0], logits.copy())
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-10)


def test_cross_entropy_is_stable_for_large_logits_and_keeps_dtype():
    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    loss, grad = ng.cross_entropy_loss(logits, np.array([0]))
    assert loss == pytest.approx(0.0, abs=1e-6) and grad.dtype == np.float32
    assert np.isfinite(grad).all()
    loss, _ = ng.cross_entropy_loss(logits, np.array([1]))
    assert loss == pytest.approx(2000.0)


def test_loss_errors_name_the_argument():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target: expected class labels in \[0, 3\).*got 3"):
        ng.cross_entropy_loss(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="target: expected shape"):
        ng.cross_entropy_loss(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class labels"):
        ng.cross_entropy_loss(z, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="target: expected shape"):
        ng.mse_loss(z, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mask: selects no position"):
        ng.mse_loss(z, z, np.zeros(2, bool))
    with pytest.raises(ValueError, match="mask: expected shape"):
        ng.mse_loss(z, z, np.ones(3, bool))
    with pytest.raises(TypeError, match="pred"):
        ng.mse_loss(np.zeros((2, 3), np.int64), z)
    # A masked-out position may hold any label (it is padding).
    loss, _ = ng.cross_entropy_loss(z, np.array([0, 99]), np.array([True, False]))
    assert loss == pytest.approx(np.log(3))

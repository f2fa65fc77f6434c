"""gradcheck itself: passes right ops, catches wrong ones, and says where."""
import numpy as np
import pytest

from npgan import GradcheckError, Tensor, gradcheck


def R(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def square_off_by(factor):
    def op(x):
        return Tensor.make(x.data ** 2, (x,), lambda g: (g * factor * 2 * x.data,), "square")
    return op


def wrong_at(index, amount=1.0):
    """x * 3 whose backward is wrong at one element only."""
    def op(x):
        def backward(g):
            gx = 3 * g
            gx[index] += amount
            return (gx,)
        return Tensor.make(x.data * 3, (x,), backward, "times3")
    return op


def test_correct_ops_pass():
    assert gradcheck(square_off_by(1.0), R(3, 4)) is True
    assert gradcheck(lambda a, b: (a * b).sigmoid(), R(3, 4), R(4, seed=1)) is True
    assert gradcheck(square_off_by(1.0), R(3, 4), mode="random", n_directions=4) is True


@pytest.mark.parametrize("factor", [1.1, 0.9, -1.0, 0.0])
def test_wrong_backward_is_caught_with_errors_reported(factor):
    with pytest.raises(GradcheckError) as e:
        gradcheck(square_off_by(factor), R(3, 4))
    msg = str(e.value)
    assert "max abs err" in msg and "max rel err" in msg and "worst at index" in msg
    assert "FAIL input 0 (3, 4)" in msg


def test_small_error_is_caught():
    with pytest.raises(GradcheckError):
        gradcheck(square_off_by(1.001), R(3, 4))


def test_worst_index_is_reported():
    with pytest.raises(GradcheckError) as e:
        gradcheck(wrong_at((1, 2)), R(3, 4))
    msg = str(e.value)
    assert "worst at index (1, 2)" in msg
    assert "max abs err 1.000e+00" in msg


def test_scalar_output_is_checked_at_the_stated_tolerance():
    """A scalar loss is not rescaled by a random weight: an error of 2 atol
    where the true gradient is 0 is caught, one of atol / 5 is not."""
    def flat_with_error(err):
        def op(x):     # sum(0 * x), whose backward reports err at (0, 0)
            def backward(g):
                gx = np.zeros(x.shape)
                gx[0, 0] = err * g
                return (gx,)
            return Tensor.make((x.data * 0).sum(), (x,), backward, "flat")
        return op
    with pytest.raises(GradcheckError):
        gradcheck(flat_with_error(2e-5), R(3, 4))
    assert gradcheck(flat_with_error(2e-6), R(3, 4))


def test_only_the_wrong_input_fails():
    def op(a, b):
        return Tensor.make(a.data * b.data, (a, b),
                           lambda g: (g * b.data, g * a.data * 1.5), "bad_mul")
    with pytest.raises(GradcheckError) as e:
        gradcheck(op, R(2, 3), R(2, 3, seed=1))
    msg = str(e.value)
    assert "ok   input 0 (2, 3)" in msg and "FAIL input 1 (2, 3)" in msg


def test_missing_gradient_is_caught():
    def op(a, b):      # forgets b's gradient
        return Tensor.make(a.data * b.data, (a, b), lambda g: (g * b.data, None), "mul_no_b")
    with pytest.raises(GradcheckError, match="FAIL input 1"):
        gradcheck(op, R(2, 3), R(2, 3, seed=1))


@pytest.mark.parametrize("factor", [1.1, 0.0])
def test_random_direction_mode_catches_wrong_op(factor):
    with pytest.raises(GradcheckError) as e:
        gradcheck(square_off_by(factor), R(5, 6), mode="random")
    assert "FAIL direction" in str(e.value)


def test_random_mode_catches_a_single_wrong_element():
    with pytest.raises(GradcheckError):
        gradcheck(wrong_at((0, 0)), R(2, 2), mode="random", n_directions=3)


def test_nan_or_inf_input_is_reported():
    x = R(3)
    x[1] = np.nan
    with pytest.raises(GradcheckError, match="NaN"):
        gradcheck(lambda t: t * 2.0, x)
    x[1] = np.inf
    with pytest.raises(GradcheckError, match="1 of 3"):
        gradcheck(lambda t: t * 2.0, x)


@pytest.mark.filterwarnings("ignore:invalid value encountered in log")
def test_nan_output_is_reported():
    with pytest.raises(GradcheckError, match="NaN"):
        gradcheck(lambda t: t.log(), np.array([-1.0, 2.0]))


def test_float32_fn_is_refused():
    def to32(x):
        return Tensor.make(x.data.astype(np.float32), (x,), lambda g: (g.astype(np.float64),), "cast")
    with pytest.raises(GradcheckError, match="float32"):
        gradcheck(lambda t: to32(t) * 2.0, R(3))


def test_fn_must_return_a_tensor_that_depends_on_inputs():
    with pytest.raises(TypeError, match="Tensor"):
        gradcheck(lambda t: t.data * 2, R(3))
    with pytest.raises(GradcheckError, match="does not depend"):
        gradcheck(lambda t: t.detach() * 2.0, R(3))


def test_bad_mode_refused():
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda t: t * 2.0, R(3), mode="fast")


def test_inputs_are_not_modified_and_tensors_accepted():
    x = R(3, 2)
    keep = x.copy()
    t = Tensor(R(2, seed=1).astype(np.float32))
    assert gradcheck(lambda a, b: a * b, x, t)
    np.testing.assert_array_equal(x, keep)
    assert t.dtype == np.float32 and t.grad is None


def test_gradcheck_error_is_an_assertion_error():
    assert issubclass(GradcheckError, AssertionError)


def test_wrong_shaped_gradient_is_reported_not_an_index_error():
    def colsum(x):      # backward returns (3,) for the (4, 3) input
        return Tensor.make(x.data.sum(axis=0), (x,), lambda g: (g,), "colsum")
    with pytest.raises(GradcheckError, match=r"'colsum'.*\(3,\).*\(4, 3\)"):
        gradcheck(colsum, R(4, 3))

"""vaelab.nn.second_order, the layer-by-layer second-order chain rule, against torch.func: the
activations' closed-form derivatives, the reverse pass of (F(x), J_F(x) @ 1) against vjp of jvp on
stacks that start with a convolution or a linear layer, the folded channel mixing, the chunking."""
import pytest
import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from vaelab.errors import ModelError
from vaelab.nn import ACTIVATIONS, second_order

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_equal_autograd(name):
    act = ACTIVATIONS[name]()
    u = torch.linspace(-25, 25, 2001, dtype=torch.float64)  # both sides of softplus' threshold
    d1, d2 = second_order.activation_derivatives(act, u)
    first = lambda v: grad(lambda w: act(w).sum())(v)  # noqa: E731
    torch.testing.assert_close(d1, first(u), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d2, grad(lambda v: first(v).sum())(u), rtol=1e-12, atol=1e-14)


def test_an_unknown_elementwise_module_falls_back_to_autograd():
    class Cube(nn.Module):
        def forward(self, u):
            return u**3

    u = torch.randn(50, dtype=torch.float64)
    d1, d2 = second_order.activation_derivatives(Cube(), u)
    torch.testing.assert_close(d1, 3 * u**2)
    torch.testing.assert_close(d2, 6 * u)


def _stacks():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.SiLU(), nn.Conv2d(4, 5, 4, 2, 1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(5 * 4 * 4, 7), nn.GELU())
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 9), nn.Softplus(), nn.Linear(9, 7), nn.ELU())
    circular = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, padding_mode="circular"), nn.SiLU(),
                             nn.Conv2d(4, 5, 3, 1, 2, dilation=2, padding_mode="circular"), nn.AvgPool2d(2), nn.Tanh(),
                             nn.Conv2d(5, 5, 4, 2, 1, padding_mode="circular"), nn.SiLU(), nn.Flatten(),
                             nn.Linear(5 * 2 * 2, 7), nn.GELU())
    # grad2vae's trunk: an activation, then the pooling (the reverse pass fuses the two), then a convolution
    act_pool = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.SiLU(), nn.AvgPool2d(2), nn.Conv2d(4, 5, 3, 1, 1), nn.SiLU(),
                             nn.Flatten(), nn.Linear(5 * 4 * 4, 7), nn.SiLU())
    # and the fused step where the gradient stream must go on below it (a linear first layer)
    act_pool_deep = nn.Sequential(nn.Tanh(), nn.AvgPool2d(2), nn.SiLU(), nn.AvgPool2d((2, 1)), nn.Flatten(),
                                  nn.Linear(3 * 2 * 4, 7), nn.GELU())
    return {"conv-first": conv.double(), "linear-first": linear.double(), "circular-pool": circular.double(),
            "act-pool": act_pool.double(), "act-pool-deep": act_pool_deep.double()}


@pytest.mark.parametrize("which", ["conv-first", "linear-first", "circular-pool", "act-pool", "act-pool-deep"])
def test_reverse_equals_vjp_of_jvp(which):
    """d/dx [<p, F(x)> + <g, J_F(x) @ 1>] for k sets of (g, p), against torch.func's vjp of the jvp."""
    stack = _stacks()[which]
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    k = 4
    g, p = torch.randn(k, 5, 7, dtype=torch.float64), torch.randn(k, 5, 7, dtype=torch.float64)
    h, t, tape = second_order.forward(stack, x)
    h_ref, t_ref = jvp(stack, (x,), (torch.ones_like(x),))
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(t, t_ref)
    _, pull = vjp(lambda a: jvp(stack, (a,), (torch.ones_like(a),)), x)
    ref = vmap(lambda gg, pp: pull((pp, gg))[0])(g, p)
    out = second_order.reverse(tape, g, p)
    assert out.shape == (k, 5, 3, 8, 8)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    # p = None is a zero primal cotangent
    torch.testing.assert_close(second_order.reverse(tape, g, None), second_order.reverse(tape, g, torch.zeros_like(p)))
    # the folded mixing equals mixing the per-set tensors, and so do the tiny chunks
    mix = torch.randn(6, k, 3, dtype=torch.float64)
    mixed = torch.einsum("okc,kbchw->bohw", mix, ref)
    torch.testing.assert_close(second_order.reverse(tape, g, p, mix=mix), mixed, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second_order.reverse(tape, g, p, mix=mix, chunk_bytes=1), mixed, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second_order.reverse(tape, g, p, chunk_bytes=3000), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["conv-first", "act-pool"])
def test_reverse_is_differentiable_like_the_reference(which):
    """Training back-propagates through the pass: the parameter gradients of a loss on it equal
    those through torch.func's vjp of the jvp."""
    stack = _stacks()[which]
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    g, p = torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64)

    def grads(fn):
        stack.zero_grad()
        fn().pow(2).sum().backward()
        return [q.grad.clone() for q in stack.parameters()]

    def ref():
        _, pull = vjp(lambda a: jvp(stack, (a,), (torch.ones_like(a),)), x)
        return vmap(lambda gg, pp: pull((pp, gg))[0])(g, p)

    ours = grads(lambda: second_order.reverse(second_order.forward(stack, x)[2], g, p))
    for a, b in zip(ours, grads(ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_refusals():
    with pytest.raises(ModelError, match="zero or circular padding"):
        second_order.forward(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), torch.rand(1, 1, 4, 4))
    with pytest.raises(ModelError, match="average pooling with stride = kernel"):
        second_order.forward(nn.Sequential(nn.AvgPool2d(3, 1)), torch.rand(1, 1, 4, 4))
    _, _, tape = second_order.forward(_stacks()["linear-first"], torch.rand(2, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ModelError, match="mix must be"):
        second_order.reverse(tape, torch.rand(2, 2, 7, dtype=torch.float64), None, mix=torch.rand(4, 3, 3))


@pytest.mark.parametrize("which", ["conv-first", "circular-pool", "act-pool"])
def test_the_compiled_layout_gives_the_same_pass(which, monkeypatch):
    """Under torch.compile a linear layer over flattened maps writes them in (H, W, C) order (the
    channels-last layout inductor runs the convolutions in): the same numbers and the same parameter
    gradients as torch.func's reference, the mixing folded in or not."""
    asked = []

    def compiling():
        asked.append(True)
        return True

    monkeypatch.setattr(torch.compiler, "is_compiling", compiling)
    stack = _stacks()[which]
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    g, p = torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64)
    mix = torch.randn(4, 2, 3, dtype=torch.float64)

    def grads(fn):
        stack.zero_grad()
        out = fn()
        out.pow(2).sum().backward()
        return out.detach(), [q.grad.clone() for q in stack.parameters()]

    def ref():
        _, pull = vjp(lambda a: jvp(stack, (a,), (torch.ones_like(a),)), x)
        return vmap(lambda gg, pp: pull((pp, gg))[0])(g, p)

    for ours, theirs in ((lambda: second_order.reverse(second_order.forward(stack, x)[2], g, p), ref),
                         (lambda: second_order.reverse(second_order.forward(stack, x)[2], g, p, mix=mix),
                          lambda: torch.einsum("okc,kbchw->bohw", mix, ref()))):
        (a, ga), (b, gb) = grads(ours), grads(theirs)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
    assert asked  # the linear step took the compiled layout's branch

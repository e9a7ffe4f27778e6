"""arnet: the erased views are exact, and the restoration scores are what they say."""
import pytest
import torch

from vaelab.errors import ConfigError
from vaelab.models import build, make_config
from vaelab.models.restore import LUMA, gray, rotate


def _model(shape=(3, 8, 8), **over):
    torch.manual_seed(0)
    return build(make_config("arnet", {"latent_dim": 4, **over}), shape).eval()


def test_rotation_is_an_exact_invertible_permutation():
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    for k in range(4):
        y = rotate(x, k)
        assert torch.equal(rotate(y, -k), x)  # bit for bit
        assert torch.equal(torch.sort(y.flatten(1)).values, torch.sort(x.flatten(1)).values)  # a permutation
    assert torch.equal(rotate(rotate(x, 1), 1), rotate(x, 2)) and torch.equal(rotate(x, 4), x)
    assert torch.equal(rotate(x, 1)[0, 0, 0, 0], x[0, 0, 0, -1])  # counter-clockwise: the top-right corner goes top-left
    wide = torch.rand(2, 3, 4, 6)
    for k in range(-5, 6):  # the flips and transpose (which ONNX exports) are torch's own rot90
        assert torch.equal(rotate(x, k), torch.rot90(x, k, dims=(-2, -1)))
        assert torch.equal(rotate(wide, k), torch.rot90(wide, k, dims=(-2, -1)))
    ks = torch.tensor([0, 1, 2, 3, 1])
    per_image = rotate(x, ks)
    for i, k in enumerate(ks.tolist()):
        assert torch.equal(per_image[i], rotate(x[i : i + 1], k)[0])


def test_gray_is_the_luma_idempotent_and_leaves_one_channel_images_alone():
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    g = gray(x)
    want = LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(g[:, c], want, rtol=0, atol=1e-15)
    torch.testing.assert_close(gray(g), g, rtol=0, atol=1e-15)
    m = torch.rand(4, 1, 5, 5)
    assert torch.equal(gray(m), m)


def test_restoration_error_is_the_mean_squared_error_over_the_erased_views():
    m = _model()
    x = torch.rand(6, 3, 8, 8)
    want = torch.stack([(m.reconstruct(rotate(gray(x), k)) - x).pow(2).flatten(1).mean(1) for k in range(4)]).mean(0)
    torch.testing.assert_close(m.restoration_error(x), want)
    only_gray = _model(erase="gray")
    torch.testing.assert_close(only_gray.restoration_error(x), (only_gray.reconstruct(gray(x)) - x).pow(2).flatten(1).mean(1))


def test_transform_head_nll_and_loss_terms():
    m = _model(transform_head=True)
    x = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        logp = [torch.log_softmax(m.head(m.code_of(rotate(gray(x), k))), 1)[:, k] for k in range(4)]
    torch.testing.assert_close(m.transform_nll(x), -torch.stack(logp).mean(0))
    out = m.loss(x)
    assert set(out.terms) == {"rec", "transform_ce"}
    torch.testing.assert_close(out.loss, (out.terms["rec"] + out.terms["transform_ce"]).mean())
    with pytest.raises(ConfigError, match="transform_head=true"):
        _model().transform_nll(x)


def test_head_net_sees_the_colour_image_turned_four_ways():
    """model.head_net: the head is its own classifier of rotate(x, k) (colour kept), trained on all four
    rotations of every image; its transform_nll and loss term are that classifier's cross-entropy."""
    m = _model((3, 16, 16), head_net=True)
    assert m.config.transform_head and not isinstance(m.head, torch.nn.Linear)
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        logp = torch.stack([torch.log_softmax(m.head(torch.rot90(x, k, (-2, -1))), 1)[:, k] for k in range(4)])
        torch.testing.assert_close(m.transform_nll(x), -logp.mean(0))
        # validation (eval mode) sees the images as they are: its loss term is the score
        torch.testing.assert_close(m.loss(x).terms["transform_ce"], m.transform_nll(x))
    m.train()
    out = m.loss(x)
    assert out.terms["transform_ce"].shape == (5,)
    torch.testing.assert_close(out.loss, (out.terms["rec"] + out.terms["transform_ce"]).mean())
    gray_only = x.mean(1, keepdim=True).expand_as(x)  # the head reads colour: a grayed image scores otherwise
    assert not torch.allclose(m.eval().transform_nll(x), m.transform_nll(gray_only))
    with pytest.raises(ConfigError, match="head_width"):
        make_config("arnet", {"head_net": True, "head_width": 0})


def test_head_net_learns_to_tell_rotations_apart():
    """A few steps on one set of images whose top half is dark: the head's cross-entropy falls well below
    ln 4 (chance), with flips and crops on."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    x[:, :, :4] *= 0.2
    m = _model((3, 8, 8), head_net=True, head_width=4).train()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(40):
        loss = m.loss(x)
        opt.zero_grad()
        loss.terms["transform_ce"].mean().backward()
        opt.step()
    assert m.eval().transform_nll(x).mean() < 0.2 < 1.386


def test_augment_keeps_the_shape_and_the_pixels_values():
    torch.manual_seed(1)
    x = torch.rand(4, 3, 16, 16)
    from vaelab.models.restore import RestoreAE

    a = RestoreAE._augment(x)
    assert a.shape == x.shape and a.min() >= x.min() and a.max() <= x.max()


def test_refusals_name_the_fix():
    with pytest.raises(ConfigError, match="square images"):
        _model((3, 8, 6))
    with pytest.raises(ConfigError, match="erase=rotate"):
        _model((1, 8, 8), erase="gray")
    with pytest.raises(ConfigError, match="vectors"):
        _model((10,), arch="mlp")
    with pytest.raises(ConfigError, match="needs model.erase=rotate"):
        make_config("arnet", {"erase": "gray", "transform_head": True})

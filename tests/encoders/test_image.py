import numpy as np
import pytest
import torch

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.errors import ConfigError


def tiny(spatial_dims: int = 2, **kw) -> ImageEncoder:
    torch.manual_seed(0)
    config = ImageEncoderConfig(
        spatial_dims=spatial_dims, dim=12, init_features=8, growth_rate=4, block_config=(1, 1), max_grid=16, **kw
    )
    return ImageEncoder(config)


def test_grid_by_hand():
    enc = tiny()
    # 64 -> stem conv (k7 s2 p3) 32 -> max-pool (k3 s2 p1) 16 -> one transition (/2) 8
    assert enc.grid((64, 64)) == (8, 8)
    # 65 -> 33 -> 17 -> 8 ; 50 -> 25 -> 13 -> 6
    assert enc.grid((65, 50)) == (8, 6)
    # the full input shape works too: only the trailing spatial sizes count
    assert enc.grid((3, 1, 65, 50)) == (8, 6)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (64, 64)), (2, (65, 50)), (2, (33, 97)), (3, (16, 33, 40))])
def test_grid_matches_feature_map(spatial_dims, shape):
    enc = tiny(spatial_dims).eval()
    x = torch.randn(2, 1, *shape)
    fmap = enc.features(x)
    assert tuple(fmap.shape[2:]) == enc.grid(shape)
    tokens, mask = enc(x, torch.tensor([True, True]))
    assert tokens.shape == (2, int(np.prod(enc.grid(shape))), 12)
    assert mask.shape == tokens.shape[:2] and bool(mask.all())


def test_token_is_its_feature_map_cell():
    enc = tiny().eval()
    x = torch.randn(1, 1, 64, 48)
    tokens, _ = enc(x)
    grid = enc.grid((64, 48))
    with torch.no_grad():
        fmap = torch.relu(enc.features(x))[0]  # (F, 8, 6)
        for index in (0, 1, 7, 13, 47):
            i, j = np.unravel_index(index, grid)
            assert enc.token_cell(index, (64, 48)) == (i, j)
            expected = enc.proj_in(fmap[:, i, j]) + enc.pos_axes[0][i] + enc.pos_axes[1][j]
            torch.testing.assert_close(tokens[0, index], expected, rtol=1e-5, atol=1e-6)


def test_token_region_by_hand():
    enc = tiny()
    # 64x48 -> grid 8x6, stride 8 on both axes; token 13 is cell (2, 1)
    assert enc.token_region(13, (64, 48)) == (slice(16, 24), slice(8, 16))
    # 3D: (16, 32, 40) -> grid (2, 4, 5), stride 8; token 27 = (1, 1, 2)
    enc3 = tiny(3)
    assert enc3.grid((16, 32, 40)) == (2, 4, 5)
    assert enc3.token_cell(27, (16, 32, 40)) == (1, 1, 2)
    assert enc3.token_region(27, (16, 32, 40)) == (slice(8, 16), slice(8, 16), slice(16, 24))


def test_absent_rows_are_zero_and_masked_and_do_not_touch_present_rows():
    enc = tiny().train()  # batch norm in training mode: statistics must come from present rows only
    x0 = torch.randn(1, 1, 64, 64)
    garbage = torch.full((1, 1, 64, 64), 1e6)
    tokens, mask = enc(torch.cat([x0, garbage]), torch.tensor([True, False]))
    alone, _ = enc(x0, torch.tensor([True]))
    assert torch.equal(tokens[0], alone[0])
    assert torch.equal(tokens[1], torch.zeros_like(tokens[1]))
    assert mask[0].all() and not mask[1].any()


def test_all_absent_batch():
    enc = tiny()
    tokens, mask = enc(torch.randn(2, 1, 64, 64), torch.tensor([False, False]))
    assert tokens.shape == (2, 64, 12) and not tokens.any() and not mask.any()


def test_gradient_only_through_present_rows():
    enc = tiny().train()
    x = torch.randn(2, 1, 64, 64)
    tokens, _ = enc(x, torch.tensor([True, False]))
    tokens[1].sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in enc.parameters())
    tokens[0].pow(2).sum().backward()
    assert enc.features.conv0.weight.grad.abs().sum() > 0


def test_3d_volume_shapes():
    enc = tiny(3).eval()
    tokens, mask = enc(torch.randn(2, 1, 16, 32, 32), torch.tensor([False, True]))
    assert tokens.shape == (2, 2 * 4 * 4, 12)
    assert mask.tolist() == [[False] * 32, [True] * 32]


def test_errors():
    with pytest.raises(ConfigError, match="spatial_dims"):
        ImageEncoder(ImageEncoderConfig(spatial_dims=4))
    enc = tiny()
    with pytest.raises(ConfigError, match="dimensions"):
        enc(torch.randn(2, 64, 64))
    with pytest.raises(ConfigError, match="max_grid"):
        enc(torch.randn(1, 1, 160, 64))  # grid 20 > max_grid 16
    with pytest.raises(ConfigError, match="too small"):
        enc(torch.randn(1, 1, 2, 2))

"""engine/train/tune_projection.py: the grid search that picks the default model's projection step sizes."""
import pytest
import torch

from engine.models.auxab import AuxAB
from engine.generator import ModelBundle
from engine.models.sngan import ResNetGenerator, SNGANConfig, SNResNetProjectionDiscriminator, SpatialEncoder
from engine.train.tune_projection import tune


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = SNGANConfig(ch=4, bottom_width=4, n_classes=3, resolution=32, gen_mults=(2, 2, 1), dis_mults=(1, 2, 2),
                      latent="spatial", z_channels=4)
    b = ModelBundle(name="tiny", generator=ResNetGenerator(cfg), discriminator=SNResNetProjectionDiscriminator(cfg),
                    encoder=SpatialEncoder(cfg), aux=AuxAB(4, dim_a=8, dim_zeta=16, dim_b=8)).to("cpu")
    xs = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return b, xs, torch.tensor([0, 2])


pytestmark = pytest.mark.usefixtures("one_thread")


def test_picks_the_step_size_with_the_lowest_loss(tiny):
    b, xs, labels = tiny
    grid = {"z": (1e-6, 0.05, 0.2), "zeta": (1e-6, 0.05)}
    res = tune(b, xs, labels, steps=4, grid=grid, log=lambda s: None)
    for space, r in res.items():
        assert set(r["losses"]) == set(grid[space])
        assert r["best"] == min(r["losses"], key=r["losses"].get)
    # a step size of 1e-6 barely moves the latent: a real step size beats it on this loss
    assert res["z"]["best"] != 1e-6


def test_without_aux_only_z_is_tuned(tiny):
    b, xs, labels = tiny
    bare = ModelBundle(name="bare", generator=b.generator, discriminator=b.discriminator, encoder=b.encoder)
    res = tune(bare, xs, labels, steps=2, grid={"z": (0.1,), "zeta": (0.1,)}, log=lambda s: None)
    assert set(res) == {"z"}

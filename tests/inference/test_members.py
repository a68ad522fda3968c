"""Member subsets of an ensemble and joining their samples."""

from __future__ import annotations

import numpy as np
import pytest

from bayescellseg.inference.members import join_member_samples, member_subset
from bayescellseg.inference.sampling import SamplingOptions, members_of, sample_image
from bayescellseg.model.build import Ensemble, build_model
from bayescellseg.model.config import ModelConfig

CONFIG = ModelConfig(base_channels=4, depth=2, method="ensemble", n_members=3, dropout_rate=0.0)


@pytest.fixture(scope="module")
def ensemble():
    return build_model(CONFIG, seed=0).eval()


def test_member_subset_selects_the_same_modules(ensemble) -> None:
    members = members_of(ensemble)
    assert member_subset(ensemble, 0, 1) is members[0]
    rest = member_subset(ensemble, 1)
    assert isinstance(rest, Ensemble) and members_of(rest) == members[1:]
    single = members[2]
    assert member_subset(single, 0, 1) is single
    with pytest.raises(ValueError, match="select none"):
        member_subset(ensemble, 3)


def test_joined_subsets_equal_one_pass_of_all_members(ensemble) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((80, 70, 3), dtype=np.float32)
    options = SamplingOptions(n_samples=0)
    # tiled (tile 48 over 80 x 70), so the joining must commute with the tile blending
    whole = sample_image(ensemble, CONFIG, image, options, tile_size=48)
    parts = [
        sample_image(member_subset(ensemble, 0, 1), CONFIG, image, options, tile_size=48),
        sample_image(member_subset(ensemble, 1), CONFIG, image, options, tile_size=48),
    ]
    joined = join_member_samples(parts)
    for name in ("probability", "entropy", "aleatoric", "epistemic", "variance", "contour"):
        np.testing.assert_allclose(
            getattr(joined.maps, name), getattr(whole.maps, name), atol=2e-6, err_msg=name
        )
    assert joined.foreground.shape == (3, 80, 70)
    np.testing.assert_array_equal(joined.foreground, whole.foreground)
    np.testing.assert_array_equal(joined.contour, whole.contour)
    np.testing.assert_allclose(joined.bottleneck.mean, whole.bottleneck.mean, rtol=1e-5)
    np.testing.assert_allclose(joined.bottleneck.std, whole.bottleneck.std, rtol=1e-4, atol=1e-6)
    assert joined.foreground_logits is None
    # the inputs are not modified
    np.testing.assert_array_equal(parts[0].foreground, whole.foreground[:1])


def test_join_weights_by_the_number_of_samples(ensemble) -> None:
    image = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    one = sample_image(member_subset(ensemble, 0, 1), CONFIG, image, SamplingOptions(n_samples=0))
    two = sample_image(member_subset(ensemble, 1), CONFIG, image, SamplingOptions(n_samples=0))
    joined = join_member_samples([one, two])
    expected = (one.maps.probability + 2 * two.maps.probability) / 3
    np.testing.assert_allclose(joined.maps.probability, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no samples"):
        join_member_samples([])
    small = sample_image(
        member_subset(ensemble, 1), CONFIG, image[:16], SamplingOptions(n_samples=0)
    )
    with pytest.raises(ValueError, match="different shapes"):
        join_member_samples([one, small])

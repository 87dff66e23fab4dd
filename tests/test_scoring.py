"""The candidate scorer: which answers it reorders and how, that masks stay paired with their
logits and token, how it is stored and loaded, and its inputs."""

import numpy as np
import pytest
import torch

from napari_segany import Predictor, load_model
from napari_segany.engine.scoring import SIZE, CandidateScorer, predicted_ious, scorer_inputs
from napari_segany.engine.zoom import ZoomPredictor

CLICK = (346, 70)


def area_scorer() -> CandidateScorer:
    """A scorer that predicts sigmoid(log of the candidate's area relative to the largest one):
    it prefers larger candidates, whatever the image."""
    net = CandidateScorer(width=8)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        first, last = net.head[0], net.head[2]
        first.weight[0, 4 * net.width + 1] = 1.0  # the scalar "log relative area"
        first.bias[0] = 10.0  # keeps the ReLU open: 10 + log ratio > 0
        last.weight[0, 0], last.bias[0] = 1.0, -10.0
    return net.eval()


@pytest.fixture(scope="module")
def scored_model(tiny_model_path):
    model = load_model(tiny_model_path, device="cpu")
    model.scorer = area_scorer()
    return model


@pytest.fixture(scope="module")
def scored_predictor(scored_model, nuclei2d):
    pred = Predictor(scored_model)
    pred.set_image(nuclei2d[0])
    return pred


def test_a_click_is_answered_in_the_scorers_order_with_its_scores(scored_predictor):
    res = scored_predictor.predict(points=[CLICK])
    areas = res.masks.reshape(len(res), -1).sum(1)
    assert list(np.argsort(-areas, kind="stable")) == [0, 1, 2] and areas[0] > areas[-1]
    largest = areas.max()
    np.testing.assert_allclose(res.scores, 1 / (1 + (largest + 1) / (areas + 1)), rtol=1e-5)
    # each mask stays paired with its own logits and decoder token
    decoder = scored_predictor._predict(points=[CLICK])
    for i in range(len(res)):
        j = int(np.flatnonzero(decoder.token_index == res.token_index[i])[0])
        np.testing.assert_array_equal(res.logits[i], decoder.logits[j])
        np.testing.assert_array_equal(res.masks[i], decoder.mask(j))


@pytest.mark.parametrize("prompts", [
    {"box": (330, 55, 362, 85)},
    {"points": [CLICK, (352, 76)]},
    {"points": [CLICK], "labels": [0]},
    {"points": [CLICK], "multimask": False},
])
def test_other_prompts_keep_the_decoders_order_and_scores(scored_predictor, prompts):
    res, decoder = scored_predictor.predict(**prompts), scored_predictor._predict(**prompts)
    np.testing.assert_array_equal(res.scores, decoder.scores)
    np.testing.assert_array_equal(res.token_index, decoder.token_index)


def test_zoom_predictor_scores_its_final_answer_and_corrections_follow_it(scored_model, nuclei2d):
    zoom = ZoomPredictor(Predictor(scored_model))
    zoom.set_image(nuclei2d[0])
    res = zoom.predict(points=[CLICK])
    areas = res.masks.reshape(len(res), -1).sum(1)
    assert list(np.argsort(-areas, kind="stable")) == [0, 1, 2]
    # the scores are the scorer's for the final masks (this scorer reads only their areas)
    np.testing.assert_allclose(res.scores, predicted_ious(scored_model.scorer, zoom.embedding.guide, res.masks,
                                                          np.zeros(3), CLICK), rtol=1e-6)
    # the reordered answer's logits are still recognised as the latest ones for a correction
    again = zoom.predict(points=[CLICK, (340, 90)], labels=[1, 0], mask_input=res.logits[1], multimask=False)
    assert len(again) == 1


def test_scorer_inputs_describe_the_candidates_around_the_click(nuclei2d):
    image = nuclei2d[0].astype(np.float32) / nuclei2d[0].max()
    masks = np.zeros((3, *image.shape), bool)
    masks[0, 340:352, 64:76] = True
    masks[1, 330:362, 54:86] = True
    images, scalars = scorer_inputs(image, masks, np.array([0.9, 0.5, 0.1]), CLICK)
    assert images.shape == (3, 5, SIZE, SIZE) and scalars.shape == (3, 4)
    spot = images[0, 2]
    peak = np.unravel_index(int(spot.argmax()), spot.shape)
    assert abs(peak[0] - SIZE / 2) <= 2 and abs(peak[1] - SIZE / 2) <= 2  # the click is near the crop's centre
    assert images[2, 4].sum() == 0 and images[1, 4].sum() > images[0, 4].sum() > 0  # each candidate's own mask
    assert torch.allclose(images[0, :4], images[2, :4])  # the shared planes are the same for all
    np.testing.assert_allclose(scalars[:, 0], [0.9, 0.5, 0.1])
    assert scalars[1, 1] == 0 and scalars[0, 1] < 0 < scalars[1, 2]
    assert scorer_inputs(image, np.zeros_like(masks), np.zeros(3), CLICK) is None


def test_scorer_is_stored_and_loaded_with_the_model(tiny_model_path, tmp_path):
    state = torch.load(tiny_model_path, weights_only=True)
    net = area_scorer()
    state.update({"scorer." + k: v.half() for k, v in net.state_dict().items()})
    path = tmp_path / "scored.pt"
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024, "scorer": net.config}}, path)
    model = load_model(path, device="cpu")
    assert isinstance(model.scorer, CandidateScorer) and model.scorer.width == 8 and model.refiner is None
    for k, v in net.state_dict().items():
        torch.testing.assert_close(model.scorer.state_dict()[k], v.half().float())
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024}}, path)
    with pytest.raises(ValueError, match="scorer weights but no scorer settings"):
        load_model(path, device="cpu")
    torch.save({"model": state, "config": {"arch": "vit_t", "image_size": 1024, "scorer": {"width": 8, "size": 32}}},
               path)
    with pytest.raises(ValueError, match="scorer settings .* do not fit"):
        load_model(path, device="cpu")

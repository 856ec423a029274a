"""AppTest of the Model Zoo page: listing, details, an offline pull, comparing two models."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment, make_bundle

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
SECOND_ID = "unet-second"
REMOTE = {
    "id": "unet-remote",
    "repo_id": "tiledseg-tests/unet-remote",
    "revision": "0123456789abcdef0123456789abcdef01234567",
    "description": "A Hub model that is not downloaded.",
    "task": "binary-segmentation",
    "dataset": "isic2017",
}


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    make_bundle(root)
    make_bundle(root, SECOND_ID)
    with app_environment(root, registry_models=[REMOTE]):
        yield root


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 with an empty cache, as huggingface_hub reads them (at import)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def _zoo_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page("app_pages/model_zoo.py").run()


def test_lists_every_model_with_metrics_curves_and_card(zoo_root, offline_hub):
    at = _zoo_page()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["model"]) == [MODEL_ID, SECOND_ID, REMOTE["id"]]
    assert list(table["offline"]) == ["yes", "yes", "no"]
    assert list(table["headline metric"])[:2] == ["dice 0.500 (isic2017/valid)"] * 2
    assert at.dataframe[1].value.to_dict("records") == [{"dice": 0.5, "jaccard": 0.38}]
    assert len(at.get("plotly_chart")) == 2  # loss; dice and IoU
    card = [m.value for m in at.markdown if "A colour model standing in" in m.value]
    assert card and card[0].startswith(f"# {MODEL_ID}")  # the card, without its front matter


def test_pull_offline_says_what_to_do(zoo_root, offline_hub):
    at = _zoo_page()
    at.selectbox(key="model_choice").set_value(REMOTE["id"]).run()  # the one model selector
    assert "not downloaded yet" in at.info[0].value
    at.button(key="model_zoo_pull").click().run()
    assert not at.exception
    message = at.error[0].value
    assert "is not in the Hugging Face cache" in message and "HF_HUB_OFFLINE is set" in message


def test_compare_two_models_on_one_image(zoo_root, offline_hub, shared_data):
    folder = shared_data / "isic2017" / "valid"
    at = _zoo_page()
    assert at.selectbox(key="model_zoo_first").value == MODEL_ID
    assert at.selectbox(key="model_zoo_second").value == SECOND_ID
    at.radio(key="model_zoo_compare_source").set_value("Sample").run()
    at.selectbox(key="model_zoo_compare_sample").set_value(
        f"isic2017/valid · {sorted((folder / 'images').iterdir())[0].name}"
    ).run()
    assert not at.exception and not at.error
    metrics = {metric.label: metric.value for metric in at.metric}
    # Both bundles hold the same weights, so their Dice must agree, and be a real score.
    assert metrics[f"{MODEL_ID} Dice"] == metrics[f"{SECOND_ID} Dice"]
    assert 0.0 < float(metrics[f"{MODEL_ID} Dice"]) <= 1.0
    assert "Each model runs with its own recommended settings" in at.caption[-1].value


def test_choosing_a_hub_model_offline_and_not_cached_is_an_error(zoo_root, offline_hub):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="model_choice").set_value(REMOTE["id"]).run()
    assert not at.exception
    message = at.error[0].value
    assert f"Model {REMOTE['id']}" in message
    assert "is not in the Hugging Face cache" in message and "HF_HUB_OFFLINE is set" in message
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception and "is not in the Hugging Face cache" in at.error[0].value

"""AppTest of the frame (app.py): Home, the sidebar's model picker and environment, model errors."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120  # the first model load (and TensorFlow import) on a shared 2-core CPU


def _run_home() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def test_home_opens_on_the_default_bundled_model(zoo_root):
    at = _run_home()
    assert not at.exception and not at.error
    assert at.title[0].value == "tiledseg"
    assert at.selectbox(key="model_choice").value == MODEL_ID
    assert at.subheader[0].value == f"Model: {MODEL_ID}"
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics == {"Dice": "0.500", "Jaccard": "0.380"}
    facts = at.table[0].value
    summary = dict(zip(facts.iloc[:, 0], facts.iloc[:, 1], strict=True))
    assert summary["Dataset"] == "ISIC 2017 Task 1"
    assert summary["Scale"] == "short_side 256 px"
    assert summary["Weights licence"] == "apache-2.0"
    environment = " ".join(markdown.value for markdown in at.sidebar.markdown)
    assert "**Keras backend**: tensorflow" in environment and "**GPU**:" in environment
    links = [link.proto.page for link in at.get("page_link")]
    assert links == ["predict", "evaluate", "tiling_lab", "model_zoo"]


def test_chosen_model_persists_across_pages(zoo_root):
    at = _run_home()
    at.switch_page("app_pages/model_zoo.py").run()
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="model_choice").value == MODEL_ID
    assert f"Model **{MODEL_ID}**" in at.caption[1].value


def test_unknown_model_is_an_error_with_the_known_ids(zoo_root):
    at = _run_home()
    at.selectbox(key="model_choice").set_value("Another Hub model…").run()
    at.text_input(key="model_custom_ref").set_value("unet-isic2071").run()
    assert not at.exception
    message = at.error[0].value
    assert "Unknown model id 'unet-isic2071'" in message
    assert f"Did you mean '{MODEL_ID}'" in message


def test_a_server_path_is_refused(zoo_root):
    at = _run_home()
    at.selectbox(key="model_choice").set_value("Another Hub model…").run()
    at.text_input(key="model_custom_ref").set_value(str(zoo_root / MODEL_ID)).run()
    assert not at.exception
    message = at.error[0].value
    assert "other references (such as file paths) are refused" in message
    assert message.count(str(zoo_root)) == 1  # only where it echoes what was typed

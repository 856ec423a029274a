"""Tests for training.config: TOML files, --set overrides, and the seeds' INI files."""

from __future__ import annotations

import math
import textwrap
import tomllib
from pathlib import Path

import pytest

from training.augment import Augmenter
from training.config import (
    DEFAULTS,
    apply_override,
    check_inference_config,
    load_config,
    read_seed_config,
    to_toml,
)
from training.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"

# A realistic seeds' train_eval_infer.config (TensorflowSlightlyFlexibleUNet style).
SEED_INI = """\
; train_eval_infer.config
; 2024/06/10 (C) antillia.com

[model]
model          = "TensorflowUNet"
generator      = True
image_width    = 512
image_height   = 512
image_channels = 3
input_normalize= False
num_classes    = 1
base_filters   = 16
base_kernels   = (7,7)
num_layers     = 6
dropout_rate   = 0.05
learning_rate  = 0.00007
clipvalue      = 0.5
dilation       = (2,2)
loss           = "bce_dice_loss"
metrics        = ["binary_accuracy"]
show_summary   = False
normalization  = True

[dataset]
datasetclass   = "BaseImageMaskDataset"
color_order    = "bgr"

[train]
epochs         = 50
batch_size     = 2
steps_per_epoch  = 200
validation_steps = 100
patience       = 10
metrics        = ["binary_accuracy", "val_binary_accuracy"]
model_dir      = "./models"
eval_dir       = "./eval"
image_datapath = "../../../dataset/Skin-Lesion/train/images/"
mask_datapath  = "../../../dataset/Skin-Lesion/train/masks/"
create_backup  = False
learning_rate_reducer = True
reducer_factor        = 0.2
reducer_patience      = 4
save_weights_only     = True
epoch_change_infer     = True
epoch_change_infer_dir =  "./epoch_change_infer"
num_infer_images       = 2

[eval]
image_datapath = "../../../dataset/Skin-Lesion/valid/images/"
mask_datapath  = "../../../dataset/Skin-Lesion/valid/masks/"

[test]
image_datapath = "../../../dataset/Skin-Lesion/test/images/"
mask_datapath  = "../../../dataset/Skin-Lesion/test/masks/"

[tiledinfer]
overlapping = 64
images_dir    = "./mini_test/images/"
output_dir    = "./tiled_mini_test_output"

[augmentor]
vflip    = True
hflip    = True
rotation = True
angles   = [90, 180, 270]
shrinks  = [0.6, 0.8]
shears   = [0.1]
deformation = True
distortion  = True

[deformation]
alpah    = 1300
sigmoids = [8]

[distortion]
gaussian_filter_rsigma= 40
gaussian_filter_sigma = 0.5
distortions           = [0.02, 0.03]
"""


@pytest.fixture
def seed_ini(tmp_path):
    project = tmp_path / "projects" / "TensorflowSlightlyFlexibleUNet" / "Skin-Lesion"
    project.mkdir(parents=True)
    path = project / "train_eval_infer.config"
    path.write_text(SEED_INI)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda path: path.name)
def test_shipped_configs_load_and_their_augmentation_is_valid(path):
    config = load_config(path)
    assert config["name"] == {"isic2017": "unet-isic2017", "bloodcell": "unet-bloodcell"}.get(
        path.stem, path.stem
    )
    assert config["eval"]["split"] and config["dataset"]["licence"]
    check_inference_config(config)
    Augmenter(config["augment"])
    assert tomllib.loads(to_toml(config)) == config


def test_overrides_use_toml_syntax_and_fall_back_to_strings():
    config = apply_override(DEFAULTS, "train.epochs=5")
    config = apply_override(config, "train.learning_rate=1e-4")
    config = apply_override(config, 'data.scale={mode="short_side", value=128}')
    config = apply_override(config, "name=my-run")
    config = apply_override(config, "inference.threshold=[0.4, 0.5]")
    assert config["train"]["epochs"] == 5
    assert config["train"]["learning_rate"] == pytest.approx(1e-4)
    assert config["data"]["scale"] == {"mode": "short_side", "value": 128}
    assert config["name"] == "my-run"
    assert config["inference"]["threshold"] == [0.4, 0.5]
    assert DEFAULTS["train"]["epochs"] == 50  # the defaults are never changed


def test_unknown_keys_and_wrong_types_are_rejected_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match=r"'train.epoch'.*Did you mean 'epochs'"):
        load_config(overrides=["train.epoch=5"])
    with pytest.raises(TypeError, match=r"`train.epochs` must be an integer"):
        load_config(overrides=["train.epochs=five"])
    with pytest.raises(TypeError, match="true or false"):
        load_config(overrides=["model.batch_norm=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(overrides=["train.epochs"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_file_then_overrides_then_defaults(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        textwrap.dedent("""
        name = "exp"
        [data]
        train = { images = "a/images", masks = "a/masks" }
        [augment]
        hflip = true
        [train]
        epochs = 7
    """)
    )
    config = load_config(path, overrides=["train.batch_size=2"])
    assert config["train"]["epochs"] == 7 and config["train"]["batch_size"] == 2
    assert config["train"]["loss"] == "bce_dice"  # from the defaults
    assert config["data"]["train"] == {"images": "a/images", "masks": "a/masks"}
    assert config["augment"]["hflip"] is True and config["augment"]["vflip"] is False
    assert tomllib.loads(to_toml(config)) == config


def test_the_seeds_ini_is_translated(seed_ini):
    fragment = read_seed_config(seed_ini)
    base = seed_ini.parent
    assert fragment["name"] == "Skin-Lesion"
    assert fragment["model"] == {
        "architecture": "unet",
        "input_channels": 3,
        "num_classes": 1,
        "base_filters": 16,
        "num_levels": 6,
        "base_kernel": 7,
        "dilation": 2,
        "dropout": 0.05,
        "batch_norm": True,
    }
    assert fragment["data"]["crop_size"] == 512
    assert fragment["data"]["train"] == {
        "images": str((base / "../../../dataset/Skin-Lesion/train/images/").resolve()),
        "masks": str((base / "../../../dataset/Skin-Lesion/train/masks/").resolve()),
    }
    assert fragment["data"]["valid"]["images"].endswith("Skin-Lesion/valid/images")
    assert fragment["eval"]["split"]["masks"].endswith("Skin-Lesion/test/masks")
    train = fragment["train"]
    assert (train["epochs"], train["batch_size"], train["steps_per_epoch"]) == (50, 2, 200)
    assert train["learning_rate"] == pytest.approx(7e-5) and train["clipvalue"] == 0.5
    assert (train["loss"], train["schedule"], train["early_stopping_patience"]) == (
        "bce_dice",
        "plateau",
        10,
    )
    assert (train["plateau_factor"], train["plateau_patience"]) == (0.2, 4)
    assert fragment["preview"] == {"count": 2}
    assert fragment["inference"] == {"tile": [512], "overlap": [0.125]}
    augment = fragment["augment"]
    assert augment["hflip"] and augment["vflip"] and augment["rot90"]
    assert augment["scale"] == [0.6, 1.0]
    assert augment["shear"] == pytest.approx(math.degrees(math.atan(0.1)))
    assert (augment["elastic_alpha"], augment["elastic_sigma"]) == (1300.0, 8.0)
    assert augment["grid_limit"] == pytest.approx(0.15)


def test_a_seed_config_becomes_a_complete_buildable_config(seed_ini):
    config = load_config(seed_config=seed_ini)
    Augmenter(config["augment"])
    model_cfg = config["model"]
    model = build_model(
        "unet",
        **{
            k: model_cfg[k]
            for k in (
                "base_filters",
                "num_levels",
                "base_kernel",
                "dilation",
                "dropout",
                "batch_norm",
            )
        },
    )
    assert model.get_layer("enc0_conv1").kernel_size == (7, 7)
    assert model.get_layer("enc0_conv1").dilation_rate == (2, 2)
    assert model.get_layer("enc1_conv1").dilation_rate == (1, 1)


def test_a_non_seed_ini_is_refused(tmp_path):
    path = tmp_path / "other.ini"
    path.write_text("[server]\nport = 80\n")
    with pytest.raises(ValueError, match=r"no \[model\] section"):
        read_seed_config(path)
    with pytest.raises(FileNotFoundError):
        read_seed_config(tmp_path / "absent.config")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('inference.select_metric="dise"', "Did you mean 'dice'"),
        ('inference.tta=["flip"]', "Did you mean 'flips'"),
        ("inference.postprocess=[{fill_hole=true}]", "Did you mean 'fill_holes'"),
        ("inference.overlap=[1.0]", r"must be in \[0.0, 1.0\)"),
        ("inference.threshold=[1.5]", "inference.threshold"),
        ("inference.select_margin=-0.01", r"inference\.select_margin.*must be in \[0.0, 1.0\)"),
        ('inference.blend="gauss"', "Did you mean 'gaussian'"),
        ('inference.classes=[{name="x"}]', "exactly `name` and `color`"),
    ],
)
def test_inference_candidates_are_checked_before_training(override, message):
    check_inference_config(load_config(CONFIGS / "isic2017.toml"))
    with pytest.raises(ValueError, match=message):
        check_inference_config(load_config(CONFIGS / "isic2017.toml", overrides=[override]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-3", r"train\.epochs` must be in \[1, inf\]"),
        ("train.epochs=0", r"train\.epochs"),
        ("train.learning_rate=0", r"train\.learning_rate` must be in \(0, inf\]"),
        ("train.learning_rate=nan", r"train\.learning_rate` must be a finite number"),
        ("train.batch_size=0", r"train\.batch_size"),
        ("train.plateau_factor=1.5", r"train\.plateau_factor` must be in \(0, 1\]"),
        ("train.weight_decay=-0.1", r"train\.weight_decay"),
    ],
)
def test_training_numbers_are_checked_when_the_config_loads(override, message):
    """Before, `train.epochs=-3` made a run folder and ended in a traceback after the data
    loaded, and a zero learning rate in a ZeroDivisionError."""
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS / "isic2017.toml", overrides=[override])


def test_a_config_extends_another_relative_to_itself(tmp_path):
    """``extends`` takes a file's settings first: single values and lists are replaced, tables
    merge key by key, and chains resolve in order."""
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "base.toml").write_text(
        'name = "base"\n[model]\nbase_filters = 8\nnum_levels = 3\n'
        "[train]\nepochs = 4\n[inference]\nthreshold = [0.4, 0.5]\n"
        '[dataset]\nname = "Base"\nid = "b"\n',
        encoding="utf-8",
    )
    (tmp_path / "middle.toml").write_text(
        'extends = "bases/base.toml"\nname = "middle"\n[train]\nepochs = 6\n', encoding="utf-8"
    )
    (tmp_path / "child.toml").write_text(
        'extends = "middle.toml"\n[model]\nnum_levels = 4\n'
        '[inference]\nthreshold = [0.6]\n[dataset]\nid = "c"\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path / "child.toml", overrides=["train.epochs=7"])
    assert config["name"] == "middle" and "extends" not in config
    assert (config["model"]["base_filters"], config["model"]["num_levels"]) == (8, 4)
    assert config["inference"]["threshold"] == [0.6]  # a list is replaced, not appended to
    assert config["dataset"] == {"name": "Base", "id": "c"}
    assert config["train"]["epochs"] == 7  # --set comes last
    assert load_config(tmp_path / "middle.toml")["train"]["epochs"] == 6
    # The resolved config is what a run directory stores: it stands alone.
    written = tmp_path / "resolved.toml"
    written.write_text(to_toml(config), encoding="utf-8")
    assert load_config(written) == config


def test_extends_errors_name_the_files(tmp_path):
    (tmp_path / "orphan.toml").write_text('extends = "gone.toml"\n', encoding="utf-8")
    with pytest.raises(
        FileNotFoundError, match=r"gone\.toml does not exist \(extended by .*orphan"
    ):
        load_config(tmp_path / "orphan.toml")
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"cycle: .*a\.toml -> .*b\.toml -> .*a\.toml"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "number.toml").write_text("extends = 3\n", encoding="utf-8")
    with pytest.raises(TypeError, match=r"must be a path to another TOML file\. Received: 3"):
        load_config(tmp_path / "number.toml")
    (tmp_path / "typo.toml").write_text("[train]\nepoch = 3\n", encoding="utf-8")
    (tmp_path / "on_typo.toml").write_text('extends = "typo.toml"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="Did you mean 'epochs'"):
        load_config(tmp_path / "on_typo.toml")


@pytest.mark.parametrize(
    ("child", "base", "changed"),
    [
        ("effunet-bloodcell-fullres", "effunet-bloodcell", {("model", "input_skip_filters")}),
        (
            "effunet-bloodcell-frame",
            "effunet-bloodcell-ft512",
            {
                ("data", "frame"),
                ("train", "epochs"),
                ("train", "learning_rate"),
            },
        ),
    ],
)
def test_shipped_experiments_differ_from_their_base_only_where_they_say(child, base, changed):
    ours, theirs = load_config(CONFIGS / f"{child}.toml"), load_config(CONFIGS / f"{base}.toml")
    differing = {
        (table, key)
        for table, values in ours.items()
        if isinstance(values, dict)
        for key in values
        if values[key] != theirs[table].get(key)
    }
    assert differing == changed and ours["name"] == child

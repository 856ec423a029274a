"""The inference contract lives in the core: tiledseg imports nothing above it, the zoo plugs in.

Checks the import direction (an AST scan of every module, function-level imports included),
that the zoo has no import cycle, that the old names still import, and the resolver hook: the
zoo's resolver is registered as an entry point, a path loads without any resolver, and a zoo id
without one says what to install.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, build_tiny_unet

from tiledseg.contract import META_FILE, ModelMeta, load_meta
from tiledseg.errors import ModelNotFoundError
from tiledseg.loading import (
    RESOLVER_GROUP,
    LoadedModel,
    installed_resolvers,
    load_model,
    read_model_meta,
)

UPWARD = ("model_zoo", "training", "app", "app_pages", "app_support", "streamlit", "benchmarks")
BUNDLED = REPO_ROOT / "model_zoo" / "bundled" / "unet-bloodcell"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it, including importlib.import_module("...")."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_tiledseg_imports_nothing_from_the_zoo_training_or_the_app():
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(
            name for name in _imports(path) if name.split(".")[0] in UPWARD
        )
        for path in sorted((REPO_ROOT / "tiledseg").rglob("*.py"))
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"tiledseg imports upward: {offenders}"


def test_the_scan_sees_lazy_and_dynamic_imports(tmp_path):
    # The scan above must be able to fail: imports inside functions and by name count too.
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f():\n"
        "    from model_zoo.metadata import ModelMeta\n"
        "    importlib.import_module('training.models')\n"
    )
    assert {"model_zoo.metadata", "training.models"} <= _imports(module)


def test_the_zoo_has_no_import_cycle():
    modules = {p.stem: p for p in (REPO_ROOT / "model_zoo").glob("*.py") if p.stem != "__init__"}
    graph = {
        name: {
            imported.split(".")[1]
            for imported in _imports(path)
            if imported.startswith("model_zoo.") and imported.split(".")[1] in modules
        }
        - {name}
        for name, path in modules.items()
    }
    assert "staging" not in graph["loader"], "model_zoo.loader imports model_zoo.staging"

    def cycle_from(node, stack):
        if node in stack:
            return [*stack[stack.index(node) :], node]
        for child in sorted(graph[node]):
            found = cycle_from(child, [*stack, node])
            if found:
                return found
        return None

    cycles = [cycle for name in sorted(graph) if (cycle := cycle_from(name, []))]
    assert not cycles, f"import cycles in model_zoo: {cycles[0]}"


def test_the_old_names_still_import_and_are_the_cores():
    import model_zoo
    import tiledseg
    from model_zoo import errors, layout, metadata
    from tiledseg import contract
    from tiledseg import errors as core_errors

    assert metadata.ModelMeta is model_zoo.ModelMeta is contract.ModelMeta is tiledseg.ModelMeta
    assert metadata.load_meta is model_zoo.load_meta is contract.load_meta
    assert metadata.FORMAT_VERSION == model_zoo.FORMAT_VERSION == contract.FORMAT_VERSION
    assert layout.META_FILE == contract.META_FILE == "tiledseg.json"
    assert layout.SAVEDMODEL_META_FILE == contract.SAVEDMODEL_META_FILE
    for name in ("MetadataError", "MetadataVersionError", "ModelNotFoundError", "UnsafeModelError"):
        assert getattr(errors, name) is getattr(core_errors, name) is getattr(model_zoo, name)


def test_the_zoo_registers_its_resolver_as_an_entry_point():
    from importlib import metadata

    from model_zoo.plugin import RESOLVER

    points = {p.name: p.value for p in metadata.entry_points(group=RESOLVER_GROUP)}
    assert points.get("zoo") == "model_zoo.plugin:RESOLVER", (
        f"no 'zoo' entry point in {RESOLVER_GROUP!r}: reinstall with `pip install -e .`"
    )
    assert RESOLVER in installed_resolvers()


def test_a_zoo_id_without_a_resolver_says_what_to_install():
    with pytest.raises(ModelNotFoundError) as info:
        load_model("unet-bloodcell", resolvers=())
    message = str(info.value)
    assert "pip install -e ." in message and RESOLVER_GROUP in message
    assert "'unet-bloodcell'" in message
    with pytest.raises(ModelNotFoundError, match="pip install"):
        read_model_meta("hf://acme/unet@main", resolvers=())


def test_a_model_folder_and_a_keras_file_load_in_the_core_without_a_resolver(tmp_path):
    loaded = load_model(BUNDLED, resolvers=())
    assert isinstance(loaded, LoadedModel)
    assert loaded.meta == load_meta(BUNDLED / META_FILE)
    assert read_model_meta(BUNDLED, resolvers=()) == loaded.meta

    # A bare .keras file: defaults read from the network; with tiledseg.json beside it, that.
    net = build_tiny_unet(levels=2)
    net.save(tmp_path / "tiny.keras")
    bare = load_model(tmp_path / "tiny.keras", resolvers=())
    assert bare.meta.downsampling == 4 and bare.meta.name == tmp_path.name
    ModelMeta(name="tiny", tile=128, downsampling=4).write(tmp_path)
    assert load_model(tmp_path / "tiny.keras", resolvers=()).meta.tile == 128


def test_resolvers_are_asked_in_turn_and_a_path_is_the_cores(tmp_path):
    from model_zoo.plugin import RESOLVER

    class OneModel:
        """A resolver that knows one name (a real implementation of the protocol)."""

        def load(self, ref, revision):
            if ref != "only-this":
                raise ModelNotFoundError(f"OneModel knows only 'only-this'. Received: {ref!r}")
            return load_model(BUNDLED, resolvers=())

        def read_meta(self, ref, revision):
            return self.load(ref, revision).meta

    # The first resolver's message is the one raised when nobody knows the reference.
    with pytest.raises(ModelNotFoundError, match="OneModel knows only"):
        read_model_meta("nothing-like-this", resolvers=[OneModel(), RESOLVER])
    assert read_model_meta("only-this", resolvers=[OneModel()]).name == "unet-bloodcell"
    # The zoo answers what the first one does not know.
    assert read_model_meta("unet-bloodcell", resolvers=[OneModel(), RESOLVER]).tile == 512
    # A model folder no resolver claims is loaded by the core.
    folder = tmp_path / "copy"
    shutil.copytree(BUNDLED, folder)
    assert read_model_meta(folder, resolvers=[OneModel()]).name == "unet-bloodcell"

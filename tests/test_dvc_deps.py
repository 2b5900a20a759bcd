"""Every project file a stage runs is among its DVC deps, so ``dvc repro`` is never stale."""

import shutil

import yaml

from tests.dvc_deps import dvc_stages, import_closure, uncovered
from tests.project import ROOT, run


def test_every_stage_depends_on_all_the_code_it_runs():
    missing = uncovered(ROOT, dvc_stages(ROOT))
    assert not missing, "\n".join(f"stage {stage}: {file} is run but not among its deps" for stage, file in missing)


def test_the_closure_follows_imports_inside_functions_and_lazy_registry_names():
    closure = {str(p) for p in import_closure(ROOT, "tasks.train")}
    assert "visionflow/models/localizer/network.py" in closure  # a lazy registry name, then a function's import
    assert "visionflow/data/augment.py" in closure  # imported inside a function
    assert "tasks/__init__.py" in closure and "visionflow/models/localizer/__init__.py" in closure


def test_a_dep_removed_on_purpose_is_named_with_its_stage(tmp_path):
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc_yaml["stages"]["split"]["do"]["deps"].remove("visionflow/io.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    assert sorted(uncovered(ROOT, dvc_stages(tmp_path))) == [("split@scenes", "visionflow/io.py"),
                                                             ("split@shapes", "visionflow/io.py"),
                                                             ("split@shapes_mixed", "visionflow/io.py")]

"""The MLflow UI in a real browser: the runs, a training run's curves, the champion model.

A store of the test's own is filled through the project's tracking code (a pipeline run, a
training run whose Keras callback logs each epoch, a registered version with the alias
``champion``), ``mlflow server`` serves it on loopback, and Debian's ``chromium``, driven by
Playwright (its Python package brings its own driver; no browser download), opens three
pages. A full-page screenshot of each goes to the folder the test prints and to
``reports/ui/`` (git-ignored), also when an assertion fails.

MLflow 3.17's UI chooses between its GenAI and its model-training views from a switch of
the browser's own (``localStorage``, GenAI until a user picks "Model training") or from
``?workflowType=`` in the page's address, not from the experiment's ``mlflow.experimentKind``
tag (``visionflow.tracking.runs`` sets it all the same; ``tests/test_tracking_runs.py``
checks it). The pages are opened with ``?workflowType=machine_learning``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.servers import free_port, stop, wait_until_up
from visionflow.tracking.callback import keras_callback
from visionflow.tracking.models import log_keras_model
from visionflow.tracking.runs import ARTIFACTS_DIR, PARENT_RUN_ENV, default_uri, pipeline_run, stage_run

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the test extras (make test installs them)")
expect = sync_api.expect

pytestmark = pytest.mark.e2e

EXPERIMENT, STAGE, MODEL, EPOCHS = "visionflow", "train@localizer", "visionflow-localizer", 3
REPORTS = Path(__file__).resolve().parents[2] / "reports" / "ui"  # git-ignored
MODEL_TRAINING = "workflowType=machine_learning"
WAIT_MS = 60_000  # a cold single-page app on two busy cores
# A returning user who closed the assistant panel: it would take a quarter of each screenshot.
NO_ASSISTANT = """
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
"""


@dataclass(frozen=True)
class Store:
    root: Path
    experiment_id: str
    pipeline_run_id: str
    training_run_id: str


def train(root: Path, parent_run_id: str) -> tuple[str, str]:
    """A stage's run: a tiny Keras model fitted with the training callback, then logged as training logs it."""
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8), np.float32), rng.random((32, 4), np.float32)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, {"box": keras.layers.Dense(4, activation="sigmoid")(inputs)})
    model.compile(optimizer="adam", loss={"box": "mse"})
    with stage_run(STAGE, EXPERIMENT, {"epochs": EPOCHS}, root=root, parent_run_id=parent_run_id) as run:
        model.fit(x, {"box": y}, validation_split=0.25, epochs=EPOCHS, batch_size=8, verbose=0,
                  callbacks=[keras_callback("finetune")])
        logged = log_keras_model(model, x[:2])
    return run.info.run_id, logged.model_uri


def promote(model_uri: str) -> None:
    """The registry's own steps, as promote@<family> takes them: a challenger, then the gate's promotion."""
    from visionflow.tracking import registry

    version = registry.register(MODEL, model_uri, {"test.mean_iou": "0.8"}, "localizer, tested")
    registry.record_decision(MODEL, str(version.version), {"promote": True, "reason": "no champion yet"})


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("the MLflow UI test needs Debian's chromium: sudo apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def store(chromium, tmp_path_factory) -> Store:  # without chromium, skipped before the training
    root = tmp_path_factory.mktemp("mlflow_ui_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv(PARENT_RUN_ENV, raising=False)
        try:
            with pipeline_run(EXPERIMENT, root=root) as parent:
                # Stages run in processes of their own; a thread has its own active run too.
                with ThreadPoolExecutor(1) as stage:
                    run_id, model_uri = stage.submit(train, root, parent.info.run_id).result()
            promote(model_uri)
        finally:
            mlflow.set_tracking_uri(None)  # it also set MLFLOW_TRACKING_URI for the rest of the session
    return Store(root, parent.info.experiment_id, parent.info.run_id, run_id)


@pytest.fixture(scope="module")
def server(store):
    url, log = f"http://127.0.0.1:{free_port()}", store.root / "server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", default_uri(store.root),
               "--default-artifact-root", (store.root / ARTIFACTS_DIR).as_uri(),
               "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1"]
    # No background job runner (it starts a handful of workers the UI does not need), no telemetry.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=store.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_until_up(process, f"{url}/health", log)
            yield url
        finally:
            stop(process)


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow_ui_screenshots")
    print(f"MLflow UI screenshots: {folder} (copied to {REPORTS})")
    return folder


@pytest.fixture
def page(browser, server):
    """A new browser profile per page, that reaches only the server."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.add_init_script(NO_ASSISTANT)
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                  else route.abort())
    page = context.new_page()
    yield page
    context.close()


def shoot(page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, REPORTS / path.name)
    print(f"screenshot: {path}")


def test_the_experiment_lists_the_pipeline_run_and_its_training_run(store, server, page, screenshots):
    page.goto(f"{server}/#/experiments/{store.experiment_id}?{MODEL_TRAINING}")
    try:
        parent_row = page.locator(".ag-row").filter(has=page.locator(f'a[href$="/runs/{store.pipeline_run_id}"]'))
        expect(parent_row).to_contain_text("pipeline", timeout=WAIT_MS)
        parent_row.locator("button").first.click()  # child runs are folded under their parent
        expect(page.locator(f'a[href$="/runs/{store.training_run_id}"]')).to_have_text(STAGE)
        # The model-training view: a runs table and the registry; none of the GenAI view's pages.
        expect(page.get_by_role("link", name="Model registry")).to_be_visible()
        for genai_only in ("Judges", "Observability", "Token Usage"):
            expect(page.get_by_text(genai_only, exact=True)).to_have_count(0)
    finally:
        shoot(page, screenshots, "1_experiment_runs")


def test_the_training_run_shows_its_loss_curves(store, server, page, screenshots):
    page.goto(f"{server}/#/experiments/{store.experiment_id}/runs/{store.training_run_id}/model-metrics"
              f"?{MODEL_TRAINING}")
    try:
        charts = page.get_by_test_id("experiment-view-compare-runs-card")
        expect(charts).to_have_count(2, timeout=WAIT_MS)
        for metric in ("loss", "val_loss"):
            chart = charts.filter(has=page.get_by_text(metric, exact=True))
            expect(chart).to_have_count(1)
            # A point on the curve for each epoch (beside it, a faint unsmoothed copy without points)
            expect(chart.locator(".js-plotly-plot g.trace path.point")).to_have_count(EPOCHS)
            expect(chart).to_contain_text(f"{STAGE} ({metric})")  # the legend
    finally:
        shoot(page, screenshots, "2_training_run_metrics")


def test_the_registered_model_shows_its_champion(server, page, screenshots):
    page.goto(f"{server}/#/models/{MODEL}?{MODEL_TRAINING}")
    try:
        version = page.get_by_role("row").filter(has=page.get_by_role("link", name="Version 1"))
        expect(version.get_by_role("status", name="champion", exact=True)).to_be_visible(timeout=WAIT_MS)
    finally:
        shoot(page, screenshots, "3_registered_model")

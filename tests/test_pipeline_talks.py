"""A pipeline that talks: ``downscale run`` with its output to a pipe (as a scheduled run's log file gets it)
shows the progress of training, generation and evaluation, one summary line per stage, a timestamp on every
line — and none of the library noise a user once had to read past (the ``tests`` preset cut to 4 training
steps, generation on a two-thread Dask cluster: ~1 min on 2 cores). Also the progress lines' own rules."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from downscale.pipeline_config import demo_config
from downscale.progress_log import ProgressLog, duration

REPO = Path(__file__).resolve().parents[1]

#: Lines a user once had to read past; none may appear.
NOISE = {
    "zarr's v3 consolidated-metadata warning": "Consolidated metadata is currently not part in the Zarr format 3",
    "Lightning's litlogger advertisement": "litlogger",
    "torch's LeafSpec deprecation (from Lightning)": "LeafSpec",
    "a WARNING for a normal fresh start": "resume requested but",
    "Lightning's own console handler (each Lightning line twice)": "\nINFO: ",
    "pyshp's note on the coastline file": "misses the EOF byte",
    "Dask's cluster housekeeping": "distributed.scheduler",
    "Dask's scratch folder in the system's temporary folder": "Local Directory",
    "a Python warning's source line": "warnings.warn(",
}
STAGES = ["synthetic", "prepare", "train", "generate", "evaluate", "report"]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def _run(config: Path) -> str:
    """The stderr of ``downscale run --config`` (stdout and stderr to pipes)."""
    proc = subprocess.run([sys.executable, "-m", "downscale.cli", "run", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == "", "`downscale run` talks through its log (stderr), one line per event"
    return proc.stderr


@pytest.fixture(scope="module")
def run_log(tmp_path_factory) -> tuple[str, Path]:
    """The log of ``downscale run --config`` on the cut ``tests`` preset, and its work directory."""
    workdir = tmp_path_factory.mktemp("talks") / "run"
    doc = demo_config(workdir, "tests").model_dump(mode="json")
    doc["train"].update(max_steps=4, log_every_n_steps=2)
    doc["train"]["optimizer"]["warmup_steps"] = 2
    doc["train"]["validation"]["every_n_steps"] = 4
    doc["train"]["checkpoint"]["every_n_steps"] = 4
    doc["generate"]["workers"] = 2          # the Dask LocalCluster path, as the demo's
    path = workdir.parent / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return _run(path), workdir


def _lines(log: str, logger: str) -> list[str]:
    return [line.split(f" {logger}: ", 1)[1] for line in log.splitlines() if f" {logger}: " in line]


def test_every_line_has_a_timestamp_and_no_noise_appears(run_log):
    log, _ = run_log
    unstamped = [line for line in log.splitlines() if not STAMP.match(line)]
    assert not unstamped, f"lines without timestamp and level: {unstamped[:5]}"
    found = {what: text for what, text in NOISE.items() if text in "\n" + log}
    assert not found, f"library noise in the log: {found}"
    lightning = _lines(log, "lightning.pytorch.utilities.rank_zero")
    assert lightning and len(lightning) == len(set(lightning)), "each Lightning line once"
    assert " INFO downscale.training.trainer: no checkpoint in " in log, "a fresh start is said at INFO"


def test_training_logs_step_loss_speed_and_eta(run_log):
    progress = [line for line in _lines(run_log[0], "downscale.progress") if line.startswith("train: ")]
    # (a line without the loss is a heartbeat: 30 s without a step, on a busy machine)
    pattern = re.compile(r"^train: (\d)/4 steps \(\d+ %\), [\d.]+ steps/s, ETA (\d+ s|\d+ min \d\d s)"
                         r"( — loss [-\d.e]+)?$")
    assert progress and all(pattern.match(line) for line in progress), progress
    assert progress[0].startswith("train: 1/4 steps") and progress[-1].startswith("train: 4/4 steps (100 %)")
    assert " — loss " in progress[0] and " — loss " in progress[-1]


def test_generate_logs_work_items_done_with_eta(run_log):
    log, workdir = run_log
    store = workdir / "outputs" / "0002.zarr"
    progress = [line for line in _lines(log, "downscale.progress")
                if line.startswith(f"generate {store}: ") and " — " in line]      # (not the heartbeats)
    assert len(progress) == 2, progress          # both items logged: 2 work items, every tenth is one
    for done, line in enumerate(progress, 1):
        assert re.match(rf"generate {re.escape(str(store))}: {done}/2 work items \({50 * done} %\), "
                        r"[\d.e-]+ work items/s, ETA .* — item t\d+-\d+-m\d+ written$", line), line
    # the Dask workers' scratch space is in the work directory, not the system's temporary folder
    assert (workdir / "outputs" / "dask-scratch-space").is_dir()


def test_evaluate_logs_its_phases(run_log):
    progress = [line for line in _lines(run_log[0], "downscale.progress")
                if line.startswith("evaluate ") and " — " in line]                # (not the heartbeats)
    phases = [re.search(r": (\d)/3 phases .* — (\w+)", line).groups() for line in progress]
    assert phases == [("0", "reading"), ("1", "scoring"), ("2", "writing"), ("3", "wrote")], progress


def test_every_stage_ends_with_one_summary_line(run_log):
    log, workdir = run_log
    summaries = _lines(log, "downscale.stages.done")
    assert [s.split(":", 1)[0] for s in summaries] == STAGES, summaries
    wrote = dict(re.match(r"^(\w+): wrote (\S+) in (\d+ s|\d+ min \d\d s)", s).group(1, 2) for s in summaries)
    assert wrote["train"] == str(workdir / "train" / "model.bundle.safetensors")
    assert wrote["report"] == str(workdir / "report.html") and Path(wrote["report"]).is_file()


def test_a_rerun_says_each_stage_was_skipped_once(run_log):
    _, workdir = run_log
    log = _run(workdir.parent / "pipeline.yaml")
    summaries = _lines(log, "downscale.stages.done")
    assert [s.split(":", 1)[0] for s in summaries] == STAGES, summaries
    assert all(re.match(r"^\w+: skipped in \d+ s, kept \S+$", s) for s in summaries), summaries
    assert "downscale.progress" not in log and all(STAMP.match(line) for line in log.splitlines())


# ---- the progress lines' rules, on a clock of our own ------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_first_then_every_interval_or_tenth_and_at_the_end(caplog):
    clock = _Clock()
    progress = ProgressLog("job", 100, "items", interval_s=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="downscale.progress"):
        for done in range(1, 101):
            clock.now = done * 0.5           # 2 items/s: a tenth (10 items) comes every 5 s, before 30 s do
            progress.update(done)
    lines = [r.getMessage() for r in caplog.records]
    assert [int(m.split(": ")[1].split("/")[0]) for m in lines] == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100]
    assert lines[1] == "job: 11/100 items (11 %), 2 items/s, ETA 44 s"
    assert lines[-1] == "job: 100/100 items (100 %), 2 items/s, ETA 0 s"


def test_a_resumed_job_counts_its_rate_from_where_it_started(caplog):
    clock = _Clock()
    progress = ProgressLog("train", 1000, "steps", start=900, interval_s=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="downscale.progress"):
        clock.now = 40.0
        progress.update(920, lambda: "loss 0.5")
    assert caplog.records[-1].getMessage() == "train: 920/1000 steps (92 %), 0.5 steps/s, ETA 2 min 40 s — loss 0.5"


def test_the_heartbeat_fills_a_silence(caplog):
    progress = ProgressLog("slow job", 3, "items", interval_s=0.2)
    with caplog.at_level(logging.INFO, logger="downscale.progress"), progress.heartbeat():
        progress.advance(note="first")
        time.sleep(0.7)                      # one slow item: the heartbeat speaks meanwhile
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 3 and all(line.startswith("slow job: 1/3 items (33 %), ") for line in lines), lines
    assert lines[0].endswith(" — first") and not any(" — " in line for line in lines[1:]), "no stale note"


def test_durations_read_as_words():
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3600, 7322)] == ["0 s", "59 s", "1 min 01 s", "59 min 59 s",
                                                                      "1 h 00 min", "2 h 02 min"]

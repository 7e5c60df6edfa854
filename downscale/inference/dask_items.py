"""Work items on Dask: every worker holds one :class:`~downscale.inference.runner.ItemRunner` of the store
while its items run, owned by a worker plugin (built by the worker's first item, dropped when the plugin
is removed), so a worker loads the model once and its threads share it.

    with item_runners(client, config, spec) as name:
        futures = client.map(run_on_worker, [name] * len(items), items, pure=False)

:func:`run_on_worker` runs one item (once claimed) with the runner of the worker it lands on. The Prefect flow does the
same through its DaskTaskRunner's client; ``generate`` through a LocalCluster of ``workers`` threads or
the scheduler at ``scheduler``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dask
import torch
from distributed import Client, Worker, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from downscale.inference.config import GenerateConfig
from pathlib import Path

from downscale.inference.runner import ItemRunner, run_claimed
from downscale.inference.store_plan import WorkItem
from downscale.inference.store_schema import OutputSpec


def plugin_name(spec: OutputSpec) -> str:
    """The name of the runner plugin of the store ``spec`` lays out (unique on a shared scheduler)."""
    return f"downscale-runner-{spec.fingerprint[:16]}"


class RunnerPlugin(WorkerPlugin):
    """Gives each Dask worker one :class:`ItemRunner` for ``spec``; torch's threads are split among the
    worker's threads while it holds the plugin (a worker of one thread keeps them all).

    The runner is built by the first item that asks for it, in the worker's task thread (loading in
    :meth:`setup` would block the worker's event loop), with dask's synchronous scheduler: the grids it
    reads are small, and the worker's other threads, waiting for the runner, could not run their tasks."""

    def __init__(self, config: GenerateConfig, spec: OutputSpec) -> None:
        self.config, self.spec = config, spec
        self._runner: ItemRunner | None = None
        self._lock: threading.Lock | None = None
        self._torch_threads = 0

    def setup(self, worker: Worker) -> None:
        self._lock = threading.Lock()
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self._torch_threads // worker.state.nthreads))

    def teardown(self, worker: Worker) -> None:
        self._runner = None
        torch.set_num_threads(self._torch_threads)

    def runner(self) -> ItemRunner:
        """The worker's runner; the first caller builds it while the worker's other threads wait."""
        with self._lock:
            if self._runner is None:
                with dask.config.set(scheduler="synchronous"):
                    self._runner = ItemRunner(self.config, self.spec)
            return self._runner


@contextmanager
def item_runners(client: Client, config: GenerateConfig, spec: OutputSpec) -> Iterator[str]:
    """While inside: every worker of ``client``'s cluster holds a runner for ``spec`` (built by its first
    item). Yields the plugin's name for :func:`run_on_worker`."""
    name = plugin_name(spec)
    client.register_plugin(RunnerPlugin(config, spec), name=name)
    try:
        yield name
    finally:
        client.unregister_worker_plugin(name)


def run_on_worker(name: str, item: WorkItem, wait: bool = True) -> str:
    """Run ``item`` with the runner the plugin ``name`` gave this Dask worker, if this worker claims it
    (:func:`~downscale.inference.runner.run_claimed`; ``wait``: for another process writing it); returns
    the item's key and what happened to it."""
    plugin = get_worker().plugins.get(name)
    if plugin is None:
        raise RuntimeError(f"Dask worker {get_worker().address}: no item runner {name!r}; run items inside "
                           f"item_runners(client, config, spec)")
    return run_claimed(plugin.runner, Path(plugin.config.output), item, wait)

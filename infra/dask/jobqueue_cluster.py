"""Start a Dask cluster of SLURM jobs (dask-jobqueue) for the array stages, print its address, wait.

The ensemble generation's work items (time block × members, see docs/inference.md) and their Dask
graph run on the workers of this cluster when the pipeline YAML names its scheduler::

    generate:
      scheduler: tcp://HOST:PORT        # downscale.inference.config.GenerateConfig.scheduler

The Prefect ``downscale`` flow then hands its work items to this scheduler (prefect-dask's
DaskTaskRunner connected to the address) instead of a LocalCluster. Workers read and write the same
paths as the flow, so stores and the model bundle must be on a shared file system (NFS, Lustre) or in
object storage, and ``--python`` must be the project's environment on the compute nodes.

Run it on a login node (or in a small CPU job) with the project's Python; it keeps the scheduler in
this process, so leave it running (tmux/screen) and stop it with Ctrl-C::

    pip install dask-jobqueue                      # not a core dependency of fv3-downscale
    python infra/dask/jobqueue_cluster.py --queue gpu --gpus-per-job 1 --cores 8 --memory 64GB --jobs 8
    python infra/dask/jobqueue_cluster.py --queue cpu --cores 32 --memory 128GB --jobs 4 --adapt

One job = one Dask worker process. A GPU job (``--gpus-per-job 1``) runs one work item at a time
(``--threads`` to overlap host work, at that many times the GPU memory; docs/performance.md); a CPU job
runs ``--cores`` items at once, each with one torch thread. ``python jobqueue_cluster.py --help``
lists every option; ``--dry-run`` prints the SLURM job script without submitting anything.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jobqueue_cluster.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--queue", required=True, help="SLURM partition of the worker jobs (#SBATCH -p)")
    p.add_argument("--account", help="SLURM account (#SBATCH -A)")
    p.add_argument("--cores", type=int, default=8, help="CPUs per job (default 8)")
    p.add_argument("--memory", default="64GB", help="memory per job, e.g. 64GB (default); also the worker's limit")
    p.add_argument("--jobs", type=int, default=4, help="jobs to start (with --adapt: at most this many)")
    p.add_argument("--walltime", default="12:00:00", help="time limit per job, HH:MM:SS (default 12:00:00)")
    p.add_argument("--gpus-per-job", type=int, default=0, choices=(0, 1),
                   help="0 = CPU workers (default), 1 = one GPU per job (scale GPUs with --jobs)")
    p.add_argument("--threads", type=int, help="work items at once per worker (default: 1 on a GPU, --cores on CPU)")
    p.add_argument("--python", default=sys.executable, help="Python of the workers (default: this one)")
    p.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    p.add_argument("--port", type=int, default=8786, help="scheduler port (default 8786; 0 = any free port)")
    p.add_argument("--prologue", action="append", default=[],
                   help="shell line run in each job before the worker starts, e.g. 'module load cuda' (repeatable)")
    p.add_argument("--adapt", action="store_true", help="scale between 0 and --jobs jobs with the load")
    p.add_argument("--dry-run", action="store_true", help="print the job script and exit")
    args = p.parse_args(argv)
    if args.cores < 1 or args.jobs < 1:
        p.error("--cores and --jobs must be at least 1")
    return args


def cluster_kwargs(args: argparse.Namespace) -> dict:
    """SLURMCluster keyword arguments: one worker process per job, ``threads`` work items at once."""
    gpu = args.gpus_per_job > 0
    threads = args.threads or (1 if gpu else args.cores)
    torch_threads = max(1, args.cores // threads)  # no oversubscription: items × torch threads = cores
    return dict(
        queue=args.queue,
        account=args.account,
        cores=threads,                 # Dask threads of the worker (= work items at once)
        processes=1,
        job_cpu=args.cores,            # CPUs booked in SLURM
        memory=args.memory,
        walltime=args.walltime,
        python=args.python,
        interface=args.interface,
        job_extra_directives=[f"--gpus-per-node={args.gpus_per_job}"] if gpu else [],
        job_script_prologue=[f"export OMP_NUM_THREADS={torch_threads}", "export PYTHONUNBUFFERED=1",
                             *args.prologue],
        scheduler_options={"port": args.port},
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from dask_jobqueue import SLURMCluster
        from distributed import Client
    except ImportError as err:
        print(f"error: {err.name or 'dask-jobqueue'} is not installed; run: pip install dask-jobqueue",
              file=sys.stderr)
        return 2

    cluster = SLURMCluster(**cluster_kwargs(args))
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        if args.adapt:
            cluster.adapt(minimum_jobs=0, maximum_jobs=args.jobs)
        else:
            cluster.scale(jobs=args.jobs)
        address = cluster.scheduler_address
        print(f"scheduler: {address}\ndashboard: {cluster.dashboard_link}\n"
              f"pipeline YAML:  generate: {{scheduler: {address}}}\n"
              f"{'up to ' if args.adapt else ''}{args.jobs} SLURM job(s) requested; Ctrl-C stops the cluster",
              flush=True)
        signal.signal(signal.SIGTERM, _interrupt)  # scancel or kill stop it like Ctrl-C
        with Client(cluster) as client:
            while True:
                time.sleep(60)
                print(f"{time.strftime('%H:%M:%S')} {len(client.nthreads())} worker(s) connected", flush=True)
    except KeyboardInterrupt:
        print("stopping: cancelling the worker jobs", flush=True)
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

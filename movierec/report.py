"""Execute a notebook with papermill into a report folder and render it to HTML.

    python -m movierec.report NOTEBOOK PARAMS.yaml OUTPUT_DIR [-p NAME=VALUE ...]

Parameter names are checked against the notebook's ``parameters`` cell first (papermill itself
only warns about a misspelt name), and the output folder must be writable before anything runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

KERNEL = "python3"  # the kernel of the environment running this module
PATH_PARAMETERS = ("DATASET", "DATA_ROOT", "CACHE_DIR", "CHECKPOINT_DIR", "MODEL_DIR")


def notebook_parameters(notebook: str | os.PathLike) -> set[str]:
    import papermill

    params = papermill.inspect_notebook(str(notebook))
    if not params:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    return set(params)


def notebook_defaults(notebook: str | os.PathLike) -> dict:
    """The parameters cell's default values (its literals), by name."""
    import ast

    import papermill

    return {name: ast.literal_eval(p["default"])
            for name, p in papermill.inspect_notebook(str(notebook)).items()}


def check_parameters(notebook: str | os.PathLike, params: dict) -> None:
    """Raise ValueError naming any parameter the notebook does not define."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{notebook}: unknown parameter(s) {unknown}; "
                         f"the parameters cell defines {sorted(known)}")


NOT_RECORDED = ("DATA_ROOT", "CACHE_DIR", "OUTPUT_DIR", "CHECKPOINT_DIR", "PROGRESS")


def recorded_parameters(namespace: dict) -> dict:
    """A notebook's parameters that define the run, for metrics.json: its upper-case names, in
    the parameters cell's order, less paths and the progress display. Call it right after the
    parameters cell, before an import binds an upper-case name."""
    return {k: v for k, v in namespace.items() if k.isupper() and k not in NOT_RECORDED}


MIN_FREE_BYTES = 200 * 2**20  # an executed notebook with figures, its HTML and metrics.json


def check_writable(folder: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """Fail early (before hours of work) if reports cannot be written to ``folder``: not
    writable, or less than ``min_free`` bytes free on its disk."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test"):
            pass
    except OSError as exc:
        raise OSError(f"report folder {folder} is not writable: {exc}") from exc
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise OSError(f"report folder {folder}: only {free / 2**20:.0f} MiB free on its disk, "
                      f"need {min_free / 2**20:.0f} MiB")


def parse_value(text: str):
    """A -p value as YAML (numbers, booleans, lists), else the plain string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def portable(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder (the checkout, where ``make`` runs) when it lies
    inside it, so that a report records no machine path; else as given."""
    resolved = Path(path).resolve()
    return (str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd())
            else str(path))


def run_report(notebook: str | os.PathLike, output_dir: str | os.PathLike, params: dict,
               *, html: bool = True) -> Path:
    """Execute ``notebook`` with ``params`` into ``output_dir`` (ipynb + html), its kernel in
    the working folder (relative paths in ``params`` are read from there). A notebook with an
    OUTPUT_DIR parameter writes its own files there (metrics.json, the model). What the run is
    doing is reported on stderr as it goes (:mod:`movierec.progress`)."""
    import papermill

    notebook, out = Path(notebook), Path(portable(output_dir))
    if "OUTPUT_DIR" in notebook_parameters(notebook):  # explore.ipynb writes nothing
        params = {**params, "OUTPUT_DIR": str(out)}
    for key in PATH_PARAMETERS:  # a registry name stays as it is
        if isinstance(params.get(key), str):
            params[key] = portable(params[key])
    check_parameters(notebook, params)
    check_writable(out)
    executed = out / notebook.name
    start = time.perf_counter()
    try:
        with following_progress(f"{portable(notebook)} -> {out}"), local_kernel() as km:
            papermill.execute_notebook(str(portable(notebook)), str(executed),
                                       parameters=params, kernel_name=KERNEL, km=km,
                                       progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:  # keep what ran, readable, then fail
        if html:
            render_html(executed)
        write_run_record(out / "run.json", time.perf_counter() - start, params,
                         status=f"failed: {exc.ename}: {exc.evalue}")
        raise
    if html:
        render_html(executed)
    write_run_record(out / "run.json", time.perf_counter() - start, params)
    return executed


@contextmanager
def local_kernel():
    """A kernel manager on IPC sockets in a private temporary folder (kernel and client are on
    one machine; over TCP without encryption ipykernel warns on every start). The kernelspec's
    environment (``MKL_CBWR``, for a kernel started from JupyterLab) is a default: a variable
    set where this runs wins (``make small MKL_CBWR=``, ``make tolerance``'s reruns)."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="movierec-kernel-") as folder:
        km = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(folder) / "k"))
        spec_env = km.kernel_spec.env  # jupyter_client lets it override the caller's environment:
        spec_env.update({k: os.environ[k] for k in spec_env if k in os.environ})  # a default only
        try:
            yield km
        finally:  # nbclient shuts down only the kernels it started itself
            if km.has_kernel:
                km.shutdown_kernel(now=True)


@contextmanager
def following_progress(what: str, poll: float = 0.5):
    """Point ``MOVIEREC_PROGRESS`` at a new file for the duration and copy its lines to
    stderr as they come (the kernel's own streams go to the notebook)."""
    from movierec import progress

    folder = tempfile.mkdtemp(prefix="movierec-progress-")
    path = Path(folder) / "progress.log"
    path.touch()
    before, os.environ[progress.ENV] = os.environ.get(progress.ENV), str(path)
    done = threading.Event()

    def follow() -> None:
        with open(path, encoding="utf-8") as lines:
            while True:
                stopping = done.is_set()
                chunk = lines.read()
                if chunk:
                    sys.stderr.write(chunk)
                    sys.stderr.flush()
                if stopping:
                    return
                done.wait(poll)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    progress.say(f"running {what}")
    try:
        yield path
    finally:
        progress.say(f"finished in {progress.duration(time.perf_counter() - t0)}")
        done.set()
        thread.join()
        if before is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def render_html(executed: Path) -> Path:
    """The executed notebook as HTML beside it."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    path = executed.with_suffix(".html")
    path.write_text(body, encoding="utf-8")
    return path


def write_run_record(path: Path, seconds: float, params: dict, status: str = "ok") -> None:
    """The report's wall time (kernel start to rendered HTML), whether it passed, the machine
    it ran on, and the runner's note on the run (``MOVIEREC_RUN_NOTE``, e.g. that the machine
    was shared, which its wall time cannot show), if any."""
    from movierec.provenance import cpu_name, write_json

    note = os.environ.get("MOVIEREC_RUN_NOTE", "").strip()
    write_json(path, {"wall_seconds": seconds, "status": status, "cpu": cpu_name(),
                      "cpu_count": os.cpu_count(),
                      "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                      / 2**30, "dataset": params.get("DATASET"),
                      "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                      **({"note": note} if note else {})})


def rerun_copy(report: str | os.PathLike, folder: str | os.PathLike, **changes) -> Path:
    """Copy an executed report notebook into ``folder`` for ``pytest --nbval-lax``, which reruns
    it and compares the cells marked ``# NBVAL_CHECK_OUTPUT`` with their stored outputs. The
    copy keeps every parameter and output, except that OUTPUT_DIR points to ``folder`` (so the
    rerun writes nothing into the report folder) and that paths, which the report records
    relative to the working folder, are made absolute (nbval runs the copy in ``folder``);
    ``changes`` override parameters (a machine's: ``THREADS=1``)."""
    import nbformat
    from papermill.parameterize import parameterize_notebook

    from movierec.data import DATASETS

    report, folder = Path(report), Path(folder).resolve()
    nb = nbformat.read(report, as_version=4)
    params = nb.metadata.get("papermill", {}).get("parameters")
    if params is None:
        raise ValueError(f"{report}: not a papermill report (no papermill parameters in its "
                         "metadata)")
    folder.mkdir(parents=True, exist_ok=True)
    params = {**params, **changes, "OUTPUT_DIR": str(folder)}
    for key in PATH_PARAMETERS:
        if isinstance(params.get(key), str) and params[key] not in DATASETS:
            params[key] = str(Path(params[key]).resolve())
    nb = parameterize_notebook(nb, params, report_mode=False)
    copy = folder / report.name
    nbformat.write(nb, copy)
    return copy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook")
    ap.add_argument("params", help="YAML file of parameters")
    ap.add_argument("output_dir")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text()) or {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"-p expects NAME=VALUE, got {item!r}")
        params[name] = parse_value(value)
    os.environ.setdefault("MKL_CBWR", "AVX2")  # as the Makefile: the kernel inherits it
    try:
        path = run_report(args.notebook, args.output_dir, params)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

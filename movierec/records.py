"""Records of val searches, made once by ``make tune`` (our models: the main model and
``MODELS``) and ``make tune-baselines`` (the baselines) and replayed by the report
(:func:`movierec.protocol.replay`).

A record holds each model's search as the protocol ran it (every setting's row of val figures,
the chosen setting, the seconds the search took) and what proves it current: the data's
checksums, the seed, the search's budget, the **code version** it was made with (a hash of the
code of every movierec module the searched models run: :func:`code_version`) and the machine
fingerprint it ran on (an exact replay needs the same fingerprint). A record that is not of this
code, data, seed or budget is refused with the command that remakes it (:func:`load`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
import yaml

from movierec.baselines import baseline
from movierec.compare import fingerprint
from movierec.experiment import Experiment
from movierec.provenance import device_info, git_state, package_versions, write_json
from movierec.variants import main_spec

PACKAGE = Path(__file__).resolve().parent
# a record's kind -> (the module whose code its searches run, the command that makes it)
KINDS = {"main": ("movierec.variants", "make tune"),
         "baselines": ("movierec.baselines", "make tune-baselines")}


class StaleRecord(ValueError):
    """A record that is not of this code, data, seed or budget (its message says how to remake
    it)."""


class OtherSeed(StaleRecord):
    """A record searched with another seed than the run's (the run may search for itself)."""


def path_of(root: Path, dataset: str, kind: str) -> Path:
    """Where the record of ``kind`` for ``dataset`` lives: reports/tune/<dataset>.json (the
    main model's) or reports/tune/<dataset>-baselines.json."""
    return root / "reports" / "tune" / f"{dataset}{'' if kind == 'main' else '-' + kind}.json"


def _source(module: str) -> Path:
    return PACKAGE / f"{module.removeprefix('movierec.')}.py"


def _imports(tree: ast.Module) -> set[str]:
    """The movierec modules a module imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("movierec.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "movierec":
            out |= {f"movierec.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("movierec."):
            out.add(node.module)
    return {m for m in out if _source(m).exists()}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def import_closure(module: str) -> list[str]:
    """``module`` and every movierec module it imports, directly or not, sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _imports(ast.parse(_source(name).read_text(encoding="utf-8")))
    return sorted(seen)


@lru_cache(maxsize=8)
def code_version(module: str) -> str:
    """A hash of the code ``module`` runs: its import closure's syntax trees, without comments,
    docstrings or layout (an edit of those does not make a record stale)."""
    digest = hashlib.sha256()
    for name in import_closure(module):
        tree = _without_docstrings(ast.parse(_source(name).read_text(encoding="utf-8")))
        digest.update(name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:16]


def machine(device: torch.device) -> dict:
    """This machine's fingerprint (what CPU bits depend on: :func:`~.compare.fingerprint`)."""
    return fingerprint({**device_info(device), "versions": package_versions()})


def commits(made: dict) -> str:
    """The commit a record was made at, and those of the runs that resumed it: "commit
    abc1234" or "commit abc1234, resumed at def5678"."""
    def short(git: dict) -> str:
        return (git["commit"] or "unknown")[:7] + (" (uncommitted changes)" if git.get("dirty")
                                                   else "")
    resumed = ", ".join(short(g) for g in made.get("resumed", []))
    return f"commit {short(made['git'])}" + (f", resumed at {resumed}" if resumed else "")


def made(kind: str, device: torch.device, repo: str | os.PathLike = ".") -> dict:
    """What a new record of ``kind`` states of its making: the code version, the machine and
    the commit."""
    return {"code": code_version(KINDS[kind][0]), "machine": machine(device),
            "git": git_state(repo)}


def writer(path: Path, about: dict) -> Callable[[dict, bool], None]:
    """A function that writes the record of ``path`` (``about``: its data, seed, budget and
    making) with the searches so far: ``write(searches, complete)``, after each search so that
    a long one keeps what it found."""
    def write(searches: dict, complete: bool) -> None:
        write_json(path, {**about, "searches": searches, "complete": complete})
    return write


def command(kind: str, dataset: str | None = None) -> str:
    """The command that makes a record of ``kind`` for ``dataset`` (the ``DATASET`` the run
    was given: a registry name or a folder's path), as a user types it."""
    return KINDS[kind][1] + (f" DATASET={dataset}" if dataset else "")


def refusal(record: dict, path: Path, kind: str, *, checksums: dict[str, str], seed: int,
            budget: dict | None = None, dataset: str | None = None) -> StaleRecord | None:
    """Why the record read from ``path`` is not of this data (``checksums``), seed, ``budget``
    or code (:func:`code_version`), as the error that names the command remaking it (for
    ``dataset``); None when it is."""
    module, command_ = KINDS[kind][0], command(kind, dataset)
    again = f"run `{command_}` again (it remakes {path.name})"
    if record["checksums"] != checksums:
        return StaleRecord(f"{path}: searched on other data (file checksums differ): {again}")
    if record["seed"] != seed:
        return OtherSeed(f"{path}: searched with seed {record['seed']}, this run's is {seed}: "
                         f"{again} with that seed, or search in the run")
    if budget is not None and record.get("budget") != budget:
        return StaleRecord(f"{path}: searched with {record.get('budget')}, the notebook now "
                           f"asks for {budget}: {again}")
    code = code_version(module)
    if record["made"]["code"] != code:
        return StaleRecord(f"{path}: made by other code (version {record['made']['code']}, "
                           f"this checkout's {code}: {module} or a module it imports changed): "
                           f"{again}")
    return None


def load(path: Path, kind: str, *, checksums: dict[str, str], seed: int, device: torch.device,
         budget: dict | None = None, dataset: str | None = None) -> dict[str, dict] | None:
    """The searches of the record at ``path`` (None if there is none), each with ``exact``
    (recorded on this machine fingerprint) and ``made`` (the record's commit, code version and
    machine, and the commits that resumed it). Refused, naming the command that remakes it,
    when it is unfinished, of other data (``checksums``), another seed, another ``budget``
    (e.g. the main model's trials) or other code (:func:`refusal`; the command for
    ``dataset``)."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if not record.get("complete"):
        raise StaleRecord(f"{path}: an unfinished search ({KINDS[kind][1]} stopped): run "
                          f"`{command(kind, dataset)}` again (it resumes {path.name} if "
                          "nothing changed, else remakes it)")
    refused = refusal(record, path, kind, checksums=checksums, seed=seed, budget=budget,
                      dataset=dataset)
    if refused is not None:
        raise refused
    exact = record["made"]["machine"] == machine(device)
    made = {**record["made"], **({"resumed": record["resumed"]} if "resumed" in record else {})}
    return {name: {**s, "exact": exact, "made": made} for name, s in record["searches"].items()}


def resumable(path: Path, kind: str, *, checksums: dict[str, str], seed: int,
              device: torch.device, budget: dict | None = None, dataset: str | None = None
              ) -> tuple[dict | None, str]:
    """The unfinished record at ``path`` that a new run of its command may go on from (its
    finished searches kept), and why or why not: it must be of this data, seed, budget and
    code (:func:`refusal`) and of this machine fingerprint, so that every search in it ran on
    one machine, its seconds and figures alike. (None, the reason) when there is none such."""
    if not path.exists():
        return None, "no record yet"
    record = json.loads(path.read_text())
    if record.get("complete"):
        return None, "the record there is complete: searched again from the start"
    refused = refusal(record, path, kind, checksums=checksums, seed=seed, budget=budget,
                      dataset=dataset)
    if refused is not None:
        return None, f"not resumed ({refused})"
    if record["made"]["machine"] != machine(device):
        return None, "not resumed: made on another machine fingerprint"
    return record, (f"resumed: {len(record['searches'])} finished searches kept from "
                    f"{path.name} ({commits(record['made'])})")


TUNED = Path("notebooks") / "params" / "tuned.yaml"  # under the checkout
TUNED_HEADER = """\
# The main model's settings chosen on each dataset's val by `make tune DATASET=...`, which
# writes this file; the report trains them (the notebook's MAIN_SETTING = "tuned") after
# replaying their search, every trial of it, from reports/tune/<dataset>.json.
"""


def tuned_settings(root: Path) -> dict[str, dict]:
    """The main model's chosen settings by dataset (notebooks/params/tuned.yaml)."""
    path = root / TUNED
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def write_tuned(root: Path, dataset: str, setting: dict) -> Path:
    """``setting`` as ``dataset``'s entry of notebooks/params/tuned.yaml (others kept)."""
    settings = {**tuned_settings(root), dataset: dict(setting)}
    path = root / TUNED
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TUNED_HEADER + yaml.safe_dump(settings, sort_keys=False))
    return path


def main_search(params: dict, exp: Experiment, root: Path | None
                ) -> tuple[object, dict[str, dict], str]:
    """The main model as the parameters ask for it (``MAIN_SETTING``): (its spec, make tune's
    record of our models' searches to replay by name (the main model's and ``MODELS``'), or
    none, and where the main model's setting comes from).

    ``"tuned"``: the dataset's entry of notebooks/params/tuned.yaml, which must be the choice of
    its current record (reports/tune/<dataset>.json, made by ``make tune`` with this seed and
    ``MAIN_TRIALS``), replayed with the other searches the record holds; a dataset without
    either is searched in the run (as is a run with another seed). ``"search"``: every search
    of our models in the run. A dict: that setting, not searched (the other models' searches
    in the run).
    """
    choice, name = params["MAIN_SETTING"], exp.prep.name
    if isinstance(choice, dict):
        return main_spec(params, choice), {}, "given in MAIN_SETTING, not searched"
    if choice not in ("tuned", "search"):
        raise ValueError(f"MAIN_SETTING must be 'tuned', 'search' or a dict of settings, got "
                         f"{choice!r}")
    spec = main_spec(params)
    here = f"searched in this run ({spec.trials} trials of TPE)"
    if choice == "search" or root is None:
        return spec, {}, here
    setting = tuned_settings(root).get(name)
    path = path_of(root, name, "main")
    try:
        record = load(path, "main", checksums=exp.prep.checksums, seed=params["SEED"],
                      device=exp.device, budget={"trials": spec.trials},
                      dataset=params["DATASET"])
    except OtherSeed:
        return spec, {}, here + " (its record was searched with another seed than this run's)"
    if setting is None and record is None:
        return spec, {}, here + f" (no record for {name})"
    if record is None:
        raise StaleRecord(f"{TUNED} names {name}'s settings, but their search's record "
                          f"{path} is missing: run `{command('main', params['DATASET'])}`")
    if setting is None or record[spec.name]["setting"] != setting:
        raise StaleRecord(f"{TUNED}'s {name} entry {setting} is not the choice of its record "
                          f"{path} ({record[spec.name]['setting']}): run "
                          f"`{command('main', params['DATASET'])}`, which writes both")
    return spec, record, f"{TUNED}, make tune's choice, its search replayed from {path.name}"


def probe_setup(params_file: str = "small.yaml", root: Path | None = None):
    """A probe's start (docs/probes): the report's parameters (the notebook's defaults with
    notebooks/params/``params_file`` over them), its set-up
    (:func:`movierec.experiment.setup`), the main model's spec and make tune's setting for the
    dataset, whose record must be current (:func:`main_search`):
    (params, setup, spec, setting)."""
    from movierec.experiment import setup
    from movierec.provenance import project_root
    from movierec.report import notebook_defaults

    root = root or project_root()
    params = {**notebook_defaults(root / "notebooks" / "movierec.ipynb"),
              **yaml.safe_load((root / "notebooks" / "params" / params_file).read_text())}
    s = setup(params)
    spec, recorded, _ = main_search(params, s.exp, root)
    if spec.name not in recorded:
        raise StaleRecord(f"a probe reads make tune's choice for {s.exp.prep.name}, which has "
                          f"none: run `{command('main', params['DATASET'])}`")
    return params, s, spec, recorded[spec.name]["setting"]


def baseline_searches(params: dict, exp: Experiment, root: Path | None
                      ) -> tuple[dict[str, dict], str]:
    """The baselines' recorded searches to replay, by name, as ``BASELINE_SEARCH`` asks
    ("auto": reports/tune/<dataset>-baselines.json if there is one of this seed; None: none,
    every grid searched in the run; or a path), and a sentence saying where they come from."""
    where = params["BASELINE_SEARCH"]
    if where is None or (where == "auto" and root is None):
        return {}, "the baselines' searches: every grid searched in this run"
    path = path_of(root, exp.prep.name, "baselines") if where == "auto" else Path(where)
    try:
        record = load(path, "baselines", checksums=exp.prep.checksums, seed=params["SEED"],
                      device=exp.device, dataset=params["DATASET"])
    except OtherSeed:
        if where != "auto":
            raise
        record = None
    if record is None:
        return {}, "the baselines' searches: every grid searched in this run (no record)"
    lacking = [n for n in params["BASELINES"] if n not in record
               and baseline(n).skip_reason(exp.prep, len(exp.train)) is None]
    first = next(iter(record.values()))
    minutes = sum(s["seconds"] for s in record.values()) / 60
    machine_said = "this machine fingerprint" if first["exact"] else "another machine"
    return record, (f"the baselines' searches: recorded by make tune-baselines at "
                    f"{commits(first['made'])} ({minutes:.0f} min "
                    f"there, on {machine_said}); each recorded choice is fitted again here"
                    + (f"; searched here, the record lacking them: {', '.join(lacking)}"
                       if lacking else ""))

"""``python -m validate.mutation [GROUP ...]``: mutation testing of the formula-bearing modules (not run in CI).

Each group mutates a few modules with mutmut (operators, constants, comparisons, arguments, strings) in a scratch
copy of the committed tree and runs, for every mutant, the fast tests that cover the mutated function (mutmut maps
tests to functions by coverage and stops at the first failure). A mutant no test fails "survives". Survivors are
sorted into three kinds, because only one of them is a wrong number that went unseen:

* ``message`` — only a string literal changed (an error message, a name in a record, the name a ``check_*``
  validator puts in its message, also when replaced by ``None``);
* ``guard`` — the condition of an ``if ...: raise`` (input validation; the table in tests/test_bad_input.py pins the
  common cases, not every boundary);
* ``number`` — anything else: arithmetic, a default, an argument; some of these are equivalent (``device=None`` on
  a CPU-only run), counted here anyway.

The goal (docs/validation.md) is at most 10 % of a group's decided mutants (killed or survived; a timeout decides
nothing) surviving as ``number``. Runs take minutes to
hours per group on 2 cores (``--max-children`` parallel workers); ``--limit`` stops a group after that many seconds
and reports what was checked.

Example:
    python -m validate.mutation losses schedules --work /tmp/mutation --json mutation.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tokenize
from pathlib import Path

from interp.cli import Parser, StagedOutputs, output_dir, output_file, positive_float, positive_int

ROOT = Path(__file__).resolve().parents[1]
FAST = ["tests/test_bad_input.py"]

GROUPS: dict[str, tuple[list[str], list[str]]] = {  # modules mutated, test files that may kill them
    "losses": (["interp/losses.py"], ["tests/test_losses.py", "-k", "not training"]),
    "schedules": (["interp/schedules.py"], ["tests/test_schedules.py", "tests/test_interpolants.py"]),
    "interpolants": (
        ["interp/interpolants.py"],
        ["tests/test_interpolants.py", "tests/test_losses.py", "-k", "not training"],
    ),  # fmt: skip
    "solvers": (
        ["interp/solvers/ode.py", "interp/solvers/sde.py"],
        ["tests/test_solvers.py", "tests/test_integrate.py"],
    ),  # fmt: skip
    "fast-solvers": (["interp/solvers/dpm_solver.py", "interp/solvers/prediction.py"], ["tests/test_fast_solvers.py"]),
    "density": (["interp/density/ode.py", "interp/density/ito.py"], ["tests/test_density.py"]),
    "feynman-kac": (
        ["interp/feynman_kac/correctors.py", "interp/feynman_kac/_loop.py"],
        ["tests/test_feynman_kac.py", "tests/test_smc.py"],
    ),
    "bridges": (["interp/bridges/gaussian.py", "interp/bridges/matching.py"], ["tests/test_bridges.py"]),
}


_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _config(modules: list[str], tests: list[str], timeout_multiplier: float = 15.0) -> str:
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["interp"]\n'
        f"only_mutate = {json.dumps(modules)}\n"
        'also_copy = ["validate", "problems", "paper_figs", "docs", "README.md", "mkdocs.yml"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(FAST + tests)}\n"
        "mutate_only_covered_lines = true\n"
        # torch's thread pool does not survive a fork from a process that has used it: mutmut's fork server
        # keeps the forking process free of torch work.
        'process_isolation = "forkserver"\n'
        # a mutant is stopped after 2 x this x (the covering tests' time + 1 s) of CPU time (mutmut's default 15)
        f"timeout_multiplier = {float(timeout_multiplier)}\n"
    )


def _checkout(folder: Path) -> None:
    """The committed tree (``git archive HEAD``) into ``folder``: mutants of uncommitted edits would mislead."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def _strip_strings(line: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return line
    # The arguments of the check_* validators are names used in their messages only: None there is a message change.
    names_only = bool(tokens) and tokens[0].string.startswith("check_")
    return " ".join(
        "S" if t.type == tokenize.STRING or (names_only and t.string == "None") else t.string for t in tokens
    )


def classify(diff: str, source: str) -> str:
    """``message``, ``guard`` or ``number`` for one survivor's unified diff against the module's source."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if (
        removed
        and len(removed) == len(added)
        and all(_strip_strings(a) == _strip_strings(b) for a, b in zip(removed, added, strict=True))
    ):
        return "message"
    lines = source.splitlines()
    for old in removed:
        stripped = old.strip()
        if stripped.startswith("raise "):
            return "guard"
        for i, line in enumerate(lines):
            if line.strip() == stripped and stripped.startswith(("if ", "elif ")):
                following = next((n.strip() for n in lines[i + 1 :] if n.strip()), "")
                if following.startswith("raise "):
                    return "guard"
    return "number"


def run_group(name: str, work: Path, *, max_children: int, limit: int, timeout_multiplier: float = 15.0) -> dict:
    modules, tests = GROUPS[name]
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    _checkout(folder)
    with open(folder / "pyproject.toml", "a") as f:
        f.write(_config(modules, tests, timeout_multiplier))
    started = time.time()
    with open(folder / "mutmut.log", "w") as log:
        try:
            subprocess.run(
                ["mutmut", "run", "--max-children", str(max_children)],
                cwd=folder, env=_ENV, stdout=log, stderr=subprocess.STDOUT, timeout=limit,
            )  # fmt: skip
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
    return summarise(name, work, finished=finished, seconds=round(time.time() - started))


def summarise(name: str, work: Path, *, finished: bool | None = None, seconds: int | None = None) -> dict:
    """The summary of a group's run in ``work`` (read back from mutmut's results, so it can be redone)."""
    modules, tests = GROUPS[name]
    folder, env = work / name, _ENV
    listing = subprocess.run(
        ["mutmut", "results", "--all", "true"], cwd=folder, env=env, capture_output=True, text=True
    ).stdout
    statuses = dict(re.findall(r"^\s*(\S+): (.+)$", listing, flags=re.M))
    counts: dict[str, int] = {}
    survivors: dict[str, list[str]] = {"message": [], "guard": [], "number": []}
    sources = {m: (folder / m).read_text() for m in modules}
    for mutant, status in statuses.items():
        counts[status] = counts.get(status, 0) + 1
        if status == "survived":
            diff = subprocess.run(["mutmut", "show", mutant], cwd=folder, env=env, capture_output=True, text=True)
            module = next((m for m in modules if mutant.startswith(m[:-3].replace("/", "."))), modules[0])
            survivors[classify(diff.stdout, sources[module])].append(mutant)
    checked = sum(v for k, v in counts.items() if k != "not checked")
    # The rate is over mutants the tests decided (killed or survived): a timeout says nothing either way, and
    # under CPU contention mutmut's timeout (a multiple of the unmutated run) fires on correct code too.
    decided = counts.get("killed", 0) + counts.get("survived", 0)
    return {
        "group": name,
        "modules": modules,
        "tests": tests,
        "mutants": len(statuses),
        "checked": checked,
        "finished": finished,
        "seconds": seconds,
        "counts": counts,
        "survived": {kind: len(names) for kind, names in survivors.items()},
        "number_survival_rate": round(len(survivors["number"]) / decided, 4) if decided else None,
        "number_survivors": survivors["number"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m validate.mutation", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"default: all of {', '.join(GROUPS)}")
    parser.add_argument("--work", default="mutation_work", help="scratch folder for the mutated copies")
    parser.add_argument("--json", metavar="PATH", help="write the per-group summary here")
    parser.add_argument("--max-children", type=positive_int, default=2)
    parser.add_argument("--limit", type=positive_int, default=7200, help="seconds per group at most")
    parser.add_argument(
        "--timeout-multiplier", type=positive_float, default=15.0,
        help="mutmut's CPU-time limit per mutant, as a multiple of its covering tests' time (default 15)",
    )  # fmt: skip
    parser.add_argument(
        "--summarise", action="store_true", help="do not run: summarise the runs already in --work again"
    )
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from {', '.join(GROUPS)}")
    try:
        output_dir(args.work)
        if args.json:
            output_file(args.json)
    except ValueError as error:
        parser.error(str(error))
    summaries = []
    for name in args.groups or list(GROUPS):
        if args.summarise:
            if not (Path(args.work) / name / "mutants").is_dir():
                parser.error(f"no run of group {name} in {args.work}")
            summary = summarise(name, Path(args.work))
        else:
            summary = run_group(name, Path(args.work), max_children=args.max_children, limit=args.limit,
                                timeout_multiplier=args.timeout_multiplier)  # fmt: skip
        summaries.append(summary)
        rate = summary["number_survival_rate"]
        print(
            f"{name:<13} {summary['checked']:>4}/{summary['mutants']:<4} checked ({summary['counts'].get('timeout', 0)}"
            f" timed out)  survived: "
            f"{summary['survived']['number']} number, {summary['survived']['guard']} guard, "
            f"{summary['survived']['message']} message  number-survival {rate if rate is None else f'{rate:.1%}'}"
            f"{'  (stopped at --limit)' if summary['finished'] is False else ''}",
            flush=True,
        )
    if args.json:
        with StagedOutputs() as staging:
            staging.stage(args.json).write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m ftlib run | pretrain | context-sweep | retrieval-sweep | chat-sweep | tune | refresh |
clean-copies | site | bench | finetune | predict``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from .course.runner import CELL_TIMEOUT, parse_value, run_course
    from .course.versions import warn_if_different

    warn_if_different("the stored lesson outputs")
    parameters = {name: parse_value(value) for name, value in args.parameter}
    timeout = CELL_TIMEOUT if args.timeout is None else args.timeout
    try:
        if timeout < 1:
            raise ValueError(f"--timeout {timeout} is not allowed: give the seconds a cell may run (e.g. 180)")
        runs = run_course(args.notebooks or None, args.out, parameters, kernel=args.kernel, timeout=timeout)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [r for r in runs if r.status != "ok"]
    for r in failed:
        print(f"FAILED {r.notebook}: {r.error} (see {r.output})", file=sys.stderr)
    return 1 if failed else 0


LANGUAGE_MODELS = {"tinylm": "pretrain_lm", "tinylm-retrieval": "pretrain_retrieval"}  # --model: its module


def _builder(model: str, variant: str):
    """The pretraining function of ``model`` (GlyphNet: with ``variant`` bound), its shipped file, its recipe."""
    if model in LANGUAGE_MODELS:
        lm = importlib.import_module(f"ftlib.course.{LANGUAGE_MODELS[model]}")
        if variant != "full":
            raise ValueError(f"--variant {variant} is for glyphnet; {model} has one recipe")
        return lm.pretrain, lm.CHECKPOINT, lm.SETTINGS
    from .course import pretrain as glyph

    build = lambda path, **settings: glyph.pretrain(path, variant=variant, **settings)
    return build, glyph.checkpoint_path(variant), glyph.SETTINGS


def _pretrain_settings(args: argparse.Namespace, recipe: dict) -> dict:
    """``steps``, ``seed`` and ``threads`` from the flags, else the recipe's; a ``ValueError`` naming a bad flag."""
    from .checks import check_seed

    settings = {name: recipe[name] if getattr(args, name) is None else getattr(args, name)
                for name in ("steps", "seed", "threads")}
    for name in ("steps", "threads"):
        if settings[name] < 1:
            raise ValueError(f"--{name} {settings[name]} is not allowed: choose a positive integer "
                             f"(the recipe's is {recipe[name]})")
    check_seed(settings["seed"], "--seed")
    return settings


def _check_out(args: argparse.Namespace, suffix: str, siblings: tuple[str, ...] = ()) -> Path | None:
    """``--out`` as a path, checked before any work: it must end in ``suffix``, be (or become) a file, not
    come with ``--check`` (which writes only to a temporary folder), and neither it nor its ``siblings`` (the same
    name with those suffixes, also written) may lie in data/, notebooks/ or ftlib/weights/ without
    ``--overwrite-shipped``."""
    from .paths import in_course_folders

    if args.out is None:
        return None
    if args.check:
        raise ValueError(f"--check rebuilds into a temporary folder and compares it with the shipped file: "
                         f"--out {args.out} has no meaning with it; give one or the other")
    target = Path(args.out)
    if target.suffix != suffix:
        raise ValueError(f"--out {target} is not allowed: the file name must end in {suffix}")
    if target.exists() and not target.is_file():
        raise ValueError(f"--out {target} is not a file path (it is a folder or a special file)")
    if not target.parent.is_dir():
        raise ValueError(f"--out {target}: its folder {target.parent} does not exist")
    written = [target, *(target.with_suffix(s) for s in siblings)]
    shipped = [p for p in written if in_course_folders(p)]
    if shipped and not args.overwrite_shipped:
        raise ValueError(f"--out {target} would write {', '.join(map(str, shipped))} in a shipped folder (data/, "
                         "notebooks/ or ftlib/weights/); give a path outside them (or --overwrite-shipped if you mean "
                         "it)")
    return target


def _pretrain_target(args: argparse.Namespace, shipped: Path, settings: dict, recipe: dict) -> Path:
    """Where to write: ``--out`` (see :func:`_check_out`), else the shipped file, but only for the recipe's own
    settings (the documented bit-identical rebuild) or with ``--overwrite-shipped``; anything else would replace
    the course's model."""
    target = _check_out(args, ".safetensors", siblings=(".json",)) or shipped
    ships = target.resolve() == shipped.resolve()
    own_recipe = all(settings[name] == recipe[name] for name in settings)
    if ships and not own_recipe and not args.overwrite_shipped:
        changed = ", ".join(f"--{name} {settings[name]}" for name in settings if settings[name] != recipe[name])
        raise ValueError(f"{changed} would overwrite the shipped {shipped} with a model that differs from the "
                         "course's; give --out PATH for a copy of your own (or --overwrite-shipped if you mean it)")
    return target


def _check_flags(args: argparse.Namespace, settings: dict, recipe: dict) -> None:
    """``--check`` with flags it cannot honour is a ``ValueError``: it compares a rebuild with the shipped file,
    which only the recipe's own settings can match, and it never writes to the shipped file."""
    if args.check and args.overwrite_shipped:
        raise ValueError("--check never writes to the shipped file: --overwrite-shipped has no meaning with it")
    changed = [f"--{name} {settings[name]}" for name in settings if settings[name] != recipe[name]]
    if args.check and changed:
        raise ValueError(f"--check compares a rebuild with the shipped file, which only the recipe's settings "
                         f"rebuild: {', '.join(changed)} could never pass; drop them or --check")


def _pretrain(args: argparse.Namespace) -> int:
    try:
        build, shipped, recipe = _builder(args.model, args.variant)
        settings = _pretrain_settings(args, recipe)
        _check_flags(args, settings, recipe)
        target = _pretrain_target(args, shipped, settings, recipe)  # also checks --out against --check
        if args.check and not shipped.exists():
            raise ValueError(f"--check compares a rebuild with the shipped {shipped}, which is missing")
        target = None if args.check else target
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def saved(path: Path) -> str:
        metadata = build(path, **settings)
        if "test_accuracy" in metadata:
            return f"test accuracy {metadata['test_accuracy']:.2%} on {metadata['test_set']}"
        retrieval = (f"; held-out retrieval {metadata['exact_8_lines']:.1%} exact on 8-line records"
                     if "exact_8_lines" in metadata else "")
        return f"{metadata['val_bpc']:.3f} bits per character on {metadata['val_text']}{retrieval}"

    return _rebuild(saved, shipped, target, args.check)


def _rebuild(build: Callable[[Path], str], shipped: Path, target: Path | None, check: bool) -> int:
    """``build(path)`` (it returns what it saved, in words) into ``target``, or with ``check`` into a temporary
    folder, comparing the bytes with ``shipped`` and removing the copy: exit status 0, or 1 where they differ."""
    from .checkpoint import file_digest

    with tempfile.TemporaryDirectory(prefix="ftlib-check-") as scratch:
        target = Path(scratch) / shipped.name if check else target
        print(f"saved {target}: {build(target)}")
        if check:
            same = file_digest(target) == file_digest(shipped)
            print(f"bit-identical to {shipped}: {'yes' if same else 'NO'}")
            return 0 if same else 1
    return 0


def _stored_sweep(args: argparse.Namespace, module: str) -> int:
    """Rebuild a lesson's shipped sweep (``module`` under ``ftlib.course.lessons``: its ``SWEEP`` file and its
    ``build``), or, with ``--check``, rebuild it aside and compare the bytes."""
    import importlib

    sweep = importlib.import_module(f"ftlib.course.lessons.{module}")
    try:
        if args.check and args.overwrite_shipped:
            raise ValueError("--check never writes to the shipped file: --overwrite-shipped has no meaning with it")
        target = _check_out(args, ".json") or sweep.SWEEP
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return _rebuild(lambda path: f"{len(sweep.build(path)['records'])} runs", sweep.SWEEP, target, args.check)


def _context_sweep(args: argparse.Namespace) -> int:
    """Rebuild lesson 10's shipped step sweep (or check it bit for bit)."""
    return _stored_sweep(args, "context_sweep")


def _retrieval_sweep(args: argparse.Namespace) -> int:
    """Rebuild lesson 10's shipped retrieval sweep (or check it bit for bit)."""
    return _stored_sweep(args, "retrieval_sweep")


def _chat_sweep(args: argparse.Namespace) -> int:
    """Rebuild lesson 09's shipped rate sweep (or check it bit for bit)."""
    return _stored_sweep(args, "chat_sweep")


def _tune(args: argparse.Namespace) -> int:
    """Rebuild the course's tuning table (or, with ``--check``, rebuild it aside and compare the bytes); with
    ``--lessons``, only those lessons' arms, the others kept from the shipped table."""
    from .course.lessons import tuning
    from .course.lessons.workers import worker_count

    shipped = tuning.TABLE
    try:
        worker_count()  # a bad FTLIB_WORKERS is named before any training
        if args.check and args.overwrite_shipped:
            raise ValueError("--check never writes to the shipped file: --overwrite-shipped has no meaning with it")
        target = _check_out(args, ".json") or shipped
        known = sorted({arm.lesson for arm in tuning.ARMS})
        bad = [lesson for lesson in args.lessons or [] if lesson not in known]
        if bad:
            raise ValueError(f"--lessons {bad[0]} is not allowed: lessons with arms in the table are "
                             f"{', '.join(known)}")
        if args.lessons and not shipped.is_file():
            raise ValueError(f"--lessons rebuilds part of {shipped}, which does not exist: rebuild it all first")
        if args.lessons:
            tuning.load(shipped)  # a damaged table is named before any training
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def saved(path: Path) -> str:
        table = tuning.build(path, args.lessons, base=shipped if args.lessons else None,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
        return f"{len(table['arms'])} arms, {sum(len(a['records']) for a in table['arms'])} validation runs"

    return _rebuild(saved, shipped, target, args.check)


def _refresh(args: argparse.Namespace) -> int:
    """Re-execute notebooks in place and keep only outputs and counts (for course authors)."""
    from .course.versions import warn_if_different

    warn_if_different("the other lessons' stored outputs")
    missing = [tool for tool in ("jupyter", "nbstripout") if shutil.which(tool) is None]
    if missing:  # checked first: a notebook is never left executed but not stripped
        print(f"error: refresh needs {' and '.join(missing)} on PATH (pip install -e \".[dev]\"); "
              "no notebook was changed", file=sys.stderr)
        return 2
    from .course.learner_copies import write_learner_copies
    from .course.replay import RECORD_FRAMES

    lesson = re.compile(r"\d\d_.+\.ipynb")
    env = {**os.environ, RECORD_FRAMES: "1"}  # replay sliders store every value's output, for the rendered course
    for nb in args.notebooks:
        for command in (["jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                         f"--ExecutePreprocessor.timeout={args.timeout}", nb],
                        ["nbstripout", "--keep-output", "--keep-count", nb]):
            if subprocess.run(command, env=env).returncode:
                return 1
        if lesson.fullmatch(Path(nb).name):
            print(f"learner copy: {write_learner_copies([nb])[0]}")
    return 0


def _clean_copies(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` compare) the learner copies of the lessons: no outputs, same sources."""
    from .course.learner_copies import lesson_notebooks, mismatches, write_learner_copies

    try:
        notebooks = lesson_notebooks(args.notebooks)
        if not args.check:
            for path in write_learner_copies(notebooks):
                print(f"wrote {path}")
            return 0
        problems = [line for nb in notebooks for line in mismatches(nb)]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(notebooks)} learner copies checked: {'up to date' if not problems else 'STALE'}")
    return 1 if problems else 0


def _site(args: argparse.Namespace) -> int:
    """Build the rendered course (static HTML) from the executed lessons' stored outputs."""
    from .course.site import build_site

    try:
        index = build_site(args.out)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    print(f"rendered course: {index} (open it in a browser)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .course.bench import format_report, run_benchmark

    out = Path(args.json)
    try:  # checked before the benchmark, which takes minutes
        if args.repeats < 1:
            raise ValueError(f"--repeats {args.repeats} is not allowed: choose a positive integer (e.g. 5)")
        if out.exists() and not out.is_file():
            raise ValueError(f"--json {out} is not a file path (it is a folder or a special file)")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise ValueError(f"--json {out}: its folder {out.parent} cannot be written")
    except (ValueError, OSError) as error:
        text = error if isinstance(error, ValueError) else f"--json {out}: {error.strerror or error}"
        print(f"error: {text}", file=sys.stderr)
        return 2
    report = run_benchmark(with_lessons=not args.no_lessons, repeats=args.repeats)
    print(format_report(report))
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")
    failed = [name for name, r in report.get("lessons", {}).items() if r["status"] != "ok"]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; output piped into a reader that stops early (``| head -1``) ends it quietly (status 141,
    as a program stopped by SIGPIPE), without a traceback."""
    try:
        return _command(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout would raise again
        return 141


def _command(argv: list[str]) -> int:
    if argv[:1] == ["finetune"]:  # these two have their own parsers (also used under torchrun)
        from .recipe import cli

        return cli(argv[1:])
    if argv[:1] == ["predict"]:
        from .export import cli

        return cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m ftlib", description="Fine-Tuning Lab commands")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the lessons headless through papermill and print a summary")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: every lesson)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a notebook parameter, e.g. -p seeds 2 (passed to each notebook that declares it)")
    run.add_argument("--out", default="runs", help="folder for the executed notebooks (default: runs/)")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.add_argument("--timeout", type=int,
                     help="seconds a cell may run before the lesson fails, naming the cell (default: 180)")
    run.set_defaults(func=_run)

    pre = commands.add_parser("pretrain", help="rebuild a shipped checkpoint (bit-identical)")
    pre.add_argument("--model", default="glyphnet", choices=["glyphnet", *LANGUAGE_MODELS],
                     help="glyphnet (default): the --variant's file; tinylm: data/tinylm.* (lesson 09); "
                          "tinylm-retrieval: data/tinylm_retrieval.* (lesson 10's key-value retrieval base)")
    pre.add_argument("--variant", default="full", choices=["full", "narrow"],
                     help="glyphnet only: full (ftlib/weights/glyphnet_letters.*, default) or narrow "
                          "(data/glyphnet_narrow.*, lesson 07's flawed model)")
    pre.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare bytes")
    pre.add_argument("--out", help="where to write the checkpoint, a .safetensors file (its .json beside it; "
                                   "default: the shipped file, for the recipe's own settings only)")
    pre.add_argument("--overwrite-shipped", action="store_true",
                     help="allow other --steps/--seed/--threads to replace the shipped file (the lessons use it), "
                          "or --out to write into a shipped folder (data/, notebooks/, ftlib/weights/)")
    pre.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    pre.add_argument("--seed", type=int, help="seed (default: the recipe's, 0)")
    pre.add_argument("--threads", type=int, help="torch threads (default: the recipe's, 2; bit-identity needs it)")
    pre.set_defaults(func=_pretrain)

    for name, what, func in (
            ("context-sweep", "lesson 10's step sweep, data/context_sweep.json (bit-identical; about 60 min on "
             "2 cores)", _context_sweep),
            ("retrieval-sweep", "lesson 10's retrieval sweep, data/retrieval_sweep.json (bit-identical; about 2 h 15 "
             "min on 2 cores)", _retrieval_sweep),
            ("chat-sweep", "lesson 09's rate sweep, data/chat_sweep.json (bit-identical; about 15 min on 2 cores)",
             _chat_sweep)):
        sweep = commands.add_parser(name, help=f"rebuild {what}")
        sweep.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare bytes")
        sweep.add_argument("--out", help="where to write the sweep, a .json file (default: the shipped file)")
        sweep.add_argument("--overwrite-shipped", action="store_true",
                           help="allow --out to write into a shipped folder (data/, notebooks/, ftlib/weights/)")
        sweep.set_defaults(func=func)

    tune = commands.add_parser("tune", help="rebuild the tuning table, data/tuning.json: every arm's setting chosen "
                                             "on validation (bit-identical; about 20 min on 2 cores)")
    tune.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare bytes")
    tune.add_argument("--lessons", nargs="+", metavar="NN",
                      help="rebuild only these lessons' arms (e.g. 03 04), keeping the others from the shipped table")
    tune.add_argument("--out", help="where to write the table, a .json file (default: the shipped file)")
    tune.add_argument("--overwrite-shipped", action="store_true",
                      help="allow --out to write into a shipped folder (data/, notebooks/, ftlib/weights/)")
    tune.set_defaults(func=_tune)

    refresh = commands.add_parser("refresh", help="re-execute notebooks in place, strip volatile metadata and "
                                                  "rewrite their learner copies (notebooks/clean/)")
    refresh.add_argument("notebooks", nargs="+")
    refresh.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (default: 600)")
    refresh.set_defaults(func=_refresh)

    clean = commands.add_parser("clean-copies", help="write the learner copies (notebooks/clean/: the lessons "
                                                     "without outputs), or --check them")
    clean.add_argument("notebooks", nargs="*", help="lesson notebooks (default: every lesson)")
    clean.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a copy is missing, stale or keeps outputs")
    clean.set_defaults(func=_clean_copies)

    site = commands.add_parser("site", help="build the rendered course, static HTML, from the stored outputs "
                                            "(needs the site extra: pip install -e \".[site]\")")
    site.add_argument("--out", default="site", help="folder for the HTML (default: site/)")
    site.set_defaults(func=_site)

    bench = commands.add_parser("bench", help="time the lessons, fit vs a plain loop, data throughput, imports")
    bench.add_argument("--json", default="runs/bench.json", help="where to save the results (default: runs/bench.json)")
    bench.add_argument("--no-lessons", action="store_true", help="skip the lesson runs (the slow part)")
    bench.add_argument("--repeats", type=int, default=5, help="timed rounds of fit vs the plain loop (default: 5)")
    bench.set_defaults(func=_bench)

    commands.add_parser("finetune", help="fine-tune on an image folder, report and export "
                                         "(python -m ftlib finetune --help)")
    commands.add_parser("predict", help="label image files with an exported model (python -m ftlib predict --help)")

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

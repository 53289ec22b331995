"""The `dalkit` command line: run, compare, train, distill, labelling projects, and the listings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dalkit.errors import DalkitError
from dalkit.options import parse_options
from dalkit.project.cli import add_project_commands


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset", help="data set name (see `dalkit datasets`) or folder:PATH; default: digits or the method's"
    )
    g.add_argument("--data-root", default="data", help="folder holding the data set (torchvision layout)")
    g.add_argument(
        "--download",
        action="store_true",
        help="download the data set if it is missing (and a timm:NAME model's pretrained weights)",
    )
    g.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="e.g. imbalance=100")


def training_arguments(p: argparse.ArgumentParser, model_flag: str = "--model") -> None:
    g = p.add_argument_group("model and training")
    if model_flag == "--model":
        g.add_argument("--method", help="a paper's preset of model, objectives and strategy (see `dalkit methods`)")
        g.add_argument("--model", help="model name (see `dalkit models`); default: small-cnn or the method's")
    else:
        g.add_argument(model_flag, dest="model", required=True, help="the student's model (see `dalkit models`)")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="e.g. width=32, dropout=0.3")
    g.add_argument("--epochs", type=int, help="training epochs per cycle (default: the model's)")
    g.add_argument("--lr", type=float, help="learning rate (default: the model's)")
    g.add_argument("--batch-size", type=int, help="training batch size (default: the model's)")
    g.add_argument("--milestones", type=int_list, help="epochs at which lr is multiplied by 0.1, e.g. 160")
    g.add_argument("--weight-decay", type=float, help="weight decay (default: the model's)")
    g.add_argument("--schedule", choices=["step", "cosine"], help="lr schedule: step (at --milestones) or cosine")
    g.add_argument(
        "--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum (default: off)"
    )
    g.add_argument("--optimizer", choices=["sgd", "adam"], help="sgd (momentum) or adam (default: the model's)")
    g.add_argument(
        "--weight-decay-per-label",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="divide --weight-decay by the number of labelled images, Gal et al. 2017's c/N (default: the model's)",
    )
    g.add_argument(
        "--epoch-samples",
        type=int,
        help="at least this many images per epoch, the labelled set repeated (BatchBALD: 5056)",
    )
    g.add_argument(
        "--validation",
        type=int,
        metavar="N",
        help="hold N random pool images out as a validation set (never queried, never trained on); default 0",
    )
    g.add_argument(
        "--patience",
        type=int,
        metavar="P",
        help="early stopping: stop after P epochs without a better validation accuracy, keep the best epoch's "
        "weights (--epochs is then the maximum; needs --validation)",
    )
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the data set's batch augmentation (default: on, off for the Bayesian AL presets)",
    )
    g.add_argument("--objectives", help="training losses to sum, e.g. ce,cskd (see `dalkit objectives`); default: ce")
    g.add_argument("--objective-option", action="append", metavar="NAME.KEY=VALUE", help="e.g. cskd.temperature=4")


def active_learning_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("active learning")
    g.add_argument("--warm-start", action="store_true", help="keep training the previous cycle's model")
    g.add_argument("--initial", type=int, help="labelled images before the first cycle; default 20")
    g.add_argument("--initial-mode", choices=["random", "balanced"], help="default: random or the method's")
    g.add_argument("--budget", type=int, help="images labelled per cycle; default 20")
    g.add_argument("--cycles", type=int, help="training rounds (one query between two rounds); default 6")
    g.add_argument("--candidates", type=int, help="random subset of the unlabelled pool scored per cycle")
    g.add_argument(
        "--strategy-option",
        action="append",
        metavar="KEY=VALUE",
        help="e.g. samples=20; with compare, bald.samples=20 goes to bald only",
    )
    g.add_argument(
        "--no-take-remaining",
        dest="take_remaining",
        action="store_false",
        help="refuse, instead of taking what is left, when fewer images remain than the budget",
    )


def run_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--out", metavar="DIR", help=out_help)
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def experiment_arguments(out_help: str) -> argparse.ArgumentParser:
    """Options of `run` and `compare`."""
    p = argparse.ArgumentParser(add_help=False)
    data_arguments(p)
    training_arguments(p)
    active_learning_arguments(p)
    run_arguments(p, out_help)
    return p


def supervised_arguments(model_flag: str, out_help: str) -> argparse.ArgumentParser:
    """Options of `train` (with the data set's) and `distill` (the data set is the teacher's)."""
    p = argparse.ArgumentParser(add_help=False)
    if model_flag == "--model":
        data_arguments(p)
    training_arguments(p, model_flag)
    run_arguments(p, out_help)
    p.add_argument("--seed", type=int, default=0)
    return p


def build_config(args: argparse.Namespace, **fields):
    """ExperimentConfig from the parsed options: defaults, then the --method preset, then explicit options.

    Option dictionaries merge key by key: `--strategy-option k=v` overrides only the preset's `k`.
    """
    from dalkit.loop import ExperimentConfig
    from dalkit.presets import method_fields

    given = {
        "dataset": getattr(args, "dataset", None),
        "initial_mode": getattr(args, "initial_mode", None),
        "schedule": args.schedule,
        "nesterov": args.nesterov,
        "model": args.model,
        "strategy": getattr(args, "strategy", None),
        **{key: getattr(args, key, None) for key in ("initial", "budget", "cycles", "candidates")},
        "objectives": tuple(n.strip() for n in args.objectives.split(",") if n.strip()) if args.objectives else None,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "milestones": tuple(args.milestones) if args.milestones is not None else None,
        "weight_decay": args.weight_decay,
        "optimizer": args.optimizer,
        "weight_decay_per_label": args.weight_decay_per_label,
        "epoch_samples": args.epoch_samples,
        "validation": args.validation,
        "patience": args.patience,
        "augment": args.augment,
    }
    method = getattr(args, "method", None)
    chosen = method_fields(method) if method else {}
    chosen.update({k: v for k, v in given.items() if v is not None})
    for name, flag in [
        ("dataset_options", "--dataset-option"),
        ("model_options", "--model-option"),
        ("strategy_options", "--strategy-option"),
        ("objective_options", "--objective-option"),
    ]:
        given_options = parse_options(getattr(args, flag[2:].replace("-", "_"), None), flag)
        chosen[name] = {**chosen.get(name, {}), **given_options}
    chosen.update(fields)
    if getattr(args, "download", False) and str(chosen.get("model", "")).startswith("timm:"):
        chosen["model_options"] = {"download": True, **chosen.get("model_options", {})}  # timm's pretrained weights
    return ExperimentConfig(
        method=method,
        data_root=getattr(args, "data_root", "data"),  # `distill` takes the teacher's data set instead
        download=getattr(args, "download", False),
        warm_start=getattr(args, "warm_start", False),
        take_remaining=getattr(args, "take_remaining", True),
        device=args.device,
        out_dir=args.out,
        progress=args.progress,
        **chosen,
    )


def command_run(args: argparse.Namespace) -> None:
    from dalkit.loop import results_table, run_experiment

    if args.distributed:
        from dalkit.runtime import distributed, process_group

        with process_group(args.device) as args.device:
            result = run_experiment(build_config(args, seed=args.seed))
            if distributed()[0]:
                return  # rank 0 prints and writes
    else:
        result = run_experiment(build_config(args, seed=args.seed))
    print()
    print(results_table(result.records))
    print(f"\nrun directory: {result.directory} (learning curve: {result.directory / 'curve.png'})")


DEFAULT_STRATEGIES = "random,entropy,margin,coreset"


def names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def command_compare(args: argparse.Namespace) -> int:
    from dalkit.compare import run_comparison
    from dalkit.executors import Resources

    if args.datasets and args.dataset:
        raise DalkitError("give --dataset or --datasets, not both; --datasets a,b runs every data set in the grid.")
    comparison = run_comparison(
        build_config(args),
        names(args.strategies) if args.strategies or args.methods else names(DEFAULT_STRATEGIES),
        args.seeds,
        resume=args.resume,
        targets=args.targets,
        executor=args.executor,
        jobs=args.jobs,
        retries=args.retries,
        datasets=names(args.datasets) or None,
        methods=names(args.methods),
        resources=Resources(address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run),
    )
    print()
    print(f"test accuracy (%) by labelled images, mean +- std over seeds {args.seeds}:")
    print(comparison.table())
    if comparison.targets:
        print(f"\nlabels needed to first reach each test accuracy, mean +- std over seeds {args.seeds}:")
        print(comparison.targets_table())
    if comparison.failed:
        print("\nfailed runs (left out of the means; --resume DIR runs them again):")
        print(comparison.failures())
    if comparison.others:
        print(f"\n{comparison.others_note()}")
    print(f"\ncomparison directory: {comparison.directory} (plot: {comparison.directory / 'curves.png'})")
    return 1 if comparison.failed else 0


def command_report(args: argparse.Namespace) -> None:
    from dalkit.collect import build_report

    report = build_report(args.dirs, published=args.published, out=args.out)
    print(report.table)
    print(f"\n{report.runs} run(s); report directory: {report.directory} (report.md, cycles.csv, curves.png)")


def command_train(args: argparse.Namespace) -> None:
    from dalkit.supervised import metrics_table, train_supervised

    result = train_supervised(build_config(args, seed=args.seed, strategy="random"))
    print()
    print(metrics_table(result.records[-1]))
    print(f"\nrun directory: {result.directory} (model: {result.directory / 'model.pt'})")


def command_distill(args: argparse.Namespace) -> None:
    from dalkit.supervised import distill

    args.objectives = args.objectives or "kd"
    distilled = distill(args.teacher, build_config(args, seed=args.seed, strategy="random"))
    print()
    print(distilled.table)
    print(f"\nrun directory: {distilled.result.directory} (student: {distilled.result.directory / 'model.pt'})")


def command_list(kind: str) -> None:
    from dalkit.report import format_table

    if kind == "strategies":
        from dalkit.strategies import STRATEGIES

        rows = [[name, _first_line(STRATEGIES.get(name).__doc__)] for name in STRATEGIES.names()]
    elif kind == "models":
        from dalkit.models import MODELS, model_entry

        rows = []
        for name in MODELS.names():
            entry = model_entry(name)
            d = entry.train_defaults
            schedule = f"{d.epochs} ep, lr {d.lr}, batch {d.batch_size}"
            rows.append([name, entry.summary, schedule])
    elif kind == "methods":
        from dalkit.presets import METHODS

        rows = [[name, METHODS.create(name).summary] for name in METHODS.names()]
    elif kind == "objectives":
        from dalkit.objectives import OBJECTIVES

        rows = [[name, _first_line(OBJECTIVES.get(name).__doc__)] for name in OBJECTIVES.names()]
    else:
        from dalkit.data import DATASETS

        rows = [[name, _first_line(DATASETS.get(name).__doc__)] for name in DATASETS.names()]
    headers = {
        "strategies": ["strategy", "what it does"],
        "models": ["model", "what it is", "default training"],
        "objectives": ["objective", "what it adds to the loss"],
        "methods": ["method", "what it bundles"],
    }
    print(format_table(headers.get(kind, ["data set", "what it is"]), rows))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dalkit", description="Deep active learning for image classification.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        parents=[experiment_arguments("the run directory; default: a new runs/DATASET-STRATEGY-seedN/")],
        help="run one active learning experiment",
    )
    run.add_argument("--strategy", help="query strategy (see `dalkit strategies`); default: margin or the method's")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: train each cycle's model with DistributedDataParallel over the ranks (rank 0 selects "
        "and writes); `torchrun --nproc-per-node N -m dalkit.cli run ... --distributed`",
    )
    run.set_defaults(handler=command_run)
    compare = sub.add_parser(
        "compare",
        parents=[
            experiment_arguments(
                "the comparison's directory (its runs go in STRATEGY/ folders); default: a new "
                "runs/compare-DATASET-MODEL/"
            )
        ],
        help="compare strategies over several seeds",
    )
    compare.add_argument(
        "--strategies",
        help=f"comma-separated strategy names; default {DEFAULT_STRATEGIES}, or none when --methods is given",
    )
    compare.add_argument(
        "--methods",
        metavar="A,B",
        help="comma-separated methods (see `dalkit methods`) as rows beside the strategies: each brings its model, "
        "objectives and strategy into this comparison's protocol (e.g. cskd-sa and its ablations)",
    )
    compare.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="comma-separated seeds; default 0,1,2")
    compare.add_argument(
        "--targets",
        type=float_list,
        metavar="ACC,...",
        help="test accuracies in %% (e.g. 90,95): report the labels each seed needed to first reach each",
    )
    compare.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the comparison in DIR: its runs that finished with the same settings are reused",
    )
    compare.add_argument(
        "--datasets",
        metavar="A,B",
        help="comma-separated data sets: the grid becomes data sets x strategies x seeds (one table per data set)",
    )
    compare.add_argument(
        "--grid",
        metavar="FILE",
        help="a TOML file of compare's options (datasets, strategies, seeds, epochs, ...); the command line wins",
    )
    compare.add_argument(
        "--executor",
        choices=["local", "processes", "ray"],
        default="local",
        help="local: one run after another here; processes: each run in its own process, --jobs at once; "
        "ray: each run a Ray task (needs dalkit[ray])",
    )
    compare.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once with --executor processes")
    compare.add_argument(
        "--address", metavar="ADDR", help="with --executor ray: the Ray cluster to join; default a local Ray"
    )
    compare.add_argument(
        "--cpus-per-run", type=float, default=1.0, metavar="N", help="with --executor ray: CPUs per run; default 1"
    )
    compare.add_argument(
        "--gpus-per-run", type=float, default=0.0, metavar="F", help="with --executor ray: GPUs per run, e.g. 0.5"
    )
    compare.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="R",
        help="tries again a run that fails, R times; one that still fails is reported and the command exits 1",
    )
    compare.set_defaults(handler=command_compare, parser=compare)
    report = sub.add_parser(
        "report",
        help="tables, a CSV and a plot rebuilt from finished run directories",
        description="Rebuild from finished runs (comparison directories or single run directories, mixed) a "
        "Markdown table (mean +- std per budget, AULC), a CSV of every cycle and a plot with mean +- std bands.",
    )
    report.add_argument("dirs", nargs="+", metavar="DIR", help="comparison or run directories")
    report.add_argument(
        "--published",
        metavar="FILE",
        help="CSV of published results (columns method, labelled, accuracy in %%, optional std, source) to overlay",
    )
    report.add_argument("--out", metavar="DIR", help="where report.md, cycles.csv, curves.png go; default runs/report/")
    report.set_defaults(handler=command_report)
    train = sub.add_parser(
        "train",
        parents=[supervised_arguments("--model", "the run directory; default: a new runs/DATASET-MODEL-train-seedN/")],
        help="train a model on every training image (no AL)",
    )
    train.set_defaults(handler=command_train)
    distill = sub.add_parser(
        "distill",
        parents=[
            supervised_arguments("--student", "the run directory; default: a new runs/DATASET-MODEL-distill-seedN/")
        ],
        help="distil a run's final model into a student",
    )
    distill.add_argument("--teacher", required=True, help="directory of the finished run whose model teaches")
    distill.set_defaults(handler=command_distill)
    add_project_commands(sub, parse_options)
    for kind in ("methods", "strategies", "models", "objectives", "datasets"):
        sub.add_parser(kind, help=f"list the {kind}").set_defaults(handler=lambda a, k=kind: command_list(k))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if getattr(args, "grid", None):
            from dalkit.gridfile import grid_arguments

            given = list(sys.argv[1:] if argv is None else argv)
            args = parser.parse_args([args.command, *grid_arguments(args.grid, args.parser), *given[1:]])
        code = args.handler(args)
    except DalkitError as error:
        print(f"dalkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dalkit: interrupted; what was recorded so far is in the run directory.", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

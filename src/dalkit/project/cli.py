"""`dalkit project ...`: create a labelling project, ask, import labels, serve the page, report, export."""

from __future__ import annotations

import argparse
from pathlib import Path

from dalkit.errors import DalkitError
from dalkit.project.store import QUESTIONS_CSV
from dalkit.report import format_table

#: a labelling project starts from the bundled pretrained encoder: useful answers after tens of labels
DEFAULT_MODEL = "efficientnet-lite0"
#: the side images are stored at for a pretrained encoder (it resizes them to its own resolution)
PRETRAINED_IMAGE_SIZE = 160


def add_project_commands(sub: argparse._SubParsersAction, parse_options) -> None:
    """The `project` command and its actions, on the main parser's sub-parsers."""
    project = sub.add_parser("project", help="label your own images: dalkit asks, you answer (CSV or web page)")
    actions = project.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="start a project over a folder of unlabelled images")
    create.add_argument("directory", help="the project's folder (created)")
    create.add_argument("--images", required=True, help="folder of unlabelled images (sub-folders are searched)")
    create.add_argument("--classes", required=True, help="comma-separated class names, e.g. cat,dog,bird")
    create.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"see `dalkit models`; default {DEFAULT_MODEL} (pretrained, frozen features + a head: seconds a round)",
    )
    create.add_argument("--model-option", action="append", metavar="KEY=VALUE", default=[])
    create.add_argument("--strategy", default="margin", help="see `dalkit strategies`; default margin")
    create.add_argument("--strategy-option", action="append", metavar="KEY=VALUE", default=[])
    create.add_argument("--budget", type=int, default=20, help="images asked per round; default 20")
    create.add_argument(
        "--image-size",
        type=int,
        help=f"images are resized to this square; default {PRETRAINED_IMAGE_SIZE} for a pretrained encoder, else 32",
    )
    create.add_argument("--channels", type=int, default=3, choices=(1, 3), help="3 colour (default), 1 grey")
    create.add_argument("--epochs", type=int, help="training epochs per round; default: the model's")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--device", default="auto")
    create.set_defaults(
        handler=lambda a: command_create(
            a, parse_options(a.model_option, "--model-option"), parse_options(a.strategy_option, "--strategy-option")
        )
    )

    ask = actions.add_parser("ask", help=f"train on the labels so far and write the next images to {QUESTIONS_CSV}")
    ask.add_argument("directory")
    ask.add_argument("--budget", type=int, help="images to ask for; default: the project's")
    ask.set_defaults(handler=command_ask)

    label = actions.add_parser(
        "import", help="record the labels of a filled-in CSV (columns image, label) or of Label Studio's JSON export"
    )
    label.add_argument("directory")
    label.add_argument(
        "csv",
        metavar="FILE",
        help=f"a CSV (e.g. the project's {QUESTIONS_CSV} filled in), or a .json Label Studio export",
    )
    label.set_defaults(handler=command_import)

    serve = actions.add_parser("serve", help="label in a web page: the asked images with one button per class")
    serve.add_argument("directory")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="default 127.0.0.1 (this computer only); another address needs the token in the printed link",
    )
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(handler=command_serve)

    status = actions.add_parser(
        "status", help="labels per class, per round how often the model guessed right, and its estimated accuracy"
    )
    status.add_argument("directory")
    status.set_defaults(handler=command_status)

    export = actions.add_parser(
        "export", help="write every image's label, the model's prediction and the strategy's score to a CSV"
    )
    export.add_argument("directory")
    export.add_argument("--out", help="default: DIRECTORY/labels.csv (DIRECTORY/label-studio.json)")
    export.add_argument(
        "--format",
        choices=("csv", "label-studio"),
        default="csv",
        help="csv (default) or label-studio: tasks JSON with the model's guess and dalkit's score",
    )
    export.add_argument(
        "--document-root",
        help="label-studio: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the image folder)",
    )
    export.set_defaults(handler=command_export)

    predict = actions.add_parser(
        "predict", help="each image's class and confidence by the project's last model, as CSV"
    )
    predict.add_argument("directory")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files (need not be in the project)")
    predict.add_argument("--out", help="write the CSV here instead of to the terminal")
    predict.set_defaults(handler=command_predict)


def command_create(args: argparse.Namespace, model_options: dict, strategy_options: dict) -> None:
    from dalkit.models import model_entry
    from dalkit.project.project import Project

    plain = ("model", "strategy", "budget", "image_size", "channels", "epochs", "seed", "device")
    settings = {name: getattr(args, name) for name in plain}
    if settings["image_size"] is None:
        settings["image_size"] = PRETRAINED_IMAGE_SIZE if model_entry(args.model).pretrained else 32
    project = Project.create(
        args.directory,
        args.images,
        args.classes.split(","),
        model_options=model_options,
        strategy_options=strategy_options,
        **settings,
    )
    images = len(project.store.images())
    print(f"project {args.directory}: {images} images, classes {', '.join(project.settings.classes)}")
    print(f"next: dalkit project ask {args.directory}")


def command_ask(args: argparse.Namespace) -> None:
    project = open_project(args.directory)
    asked = project.ask(args.budget)
    rows = [
        [k + 1, path, guess or "-", "-" if score is None else f"{score:.4g}"]
        for k, (path, guess, score) in enumerate(zip(asked.paths, asked.guesses, asked.scores))
    ]
    print(format_table(["#", "image", "model guess", "score"], rows))
    print(
        f"\nround {asked.number}: {len(asked.paths)} images asked in {asked.seconds:.1f} s. Label them in "
        f"{project.directory / QUESTIONS_CSV} (label column), then `dalkit project ask` again; or "
        f"`dalkit project serve {args.directory}` to label in a web page."
    )


def command_import(args: argparse.Namespace) -> None:
    project = open_project(args.directory)
    if args.csv.lower().endswith(".json"):
        changed = project.import_label_studio(args.csv)  # tasks older than a label given since are named
    else:
        changed = project.import_csv(args.csv)  # rows older than a label given since are named, not imported
    print(f"{changed} label(s) recorded; {sum(project.class_counts().values())} images are labelled.")


def command_serve(args: argparse.Namespace) -> None:
    try:
        from dalkit.project.web import serve
    except ImportError as error:
        raise DalkitError(
            f"the labelling page needs the web extra ({error.name} is missing); install it with "
            "pip install 'dalkit[web]'."
        ) from None

    serve(open_project(args.directory), args.host, args.port)


def command_status(args: argparse.Namespace) -> None:
    project = open_project(args.directory)
    counts = project.class_counts()
    print(format_table(["class", "labelled"], [[name, n] for name, n in counts.items()]))
    rounds = [
        [
            r["round"],
            r["asked"],
            r["labelled"],
            r["set_aside"],
            "-" if r["agreement"] is None else f"{100 * r['agreement']:.0f}%",
        ]
        for r in project.rounds()
    ]
    if rounds:
        print()
        print(format_table(["round", "asked", "labelled", "skipped/unsure", "model guess right"], rounds))
    print(f"\n{sum(counts.values())} of {len(project.store.images())} images labelled")
    print(project.estimate_text())


def command_export(args: argparse.Namespace) -> None:
    project = open_project(args.directory)
    if args.format == "label-studio":
        from dalkit.project.labelstudio import CONFIG_FILE, export

        root = None if args.document_root is None else Path(args.document_root)
        path = export(project, Path(args.out or project.directory / "label-studio.json"), root)
        print(
            f"{len(project.store.images())} Label Studio tasks written to {path}, with the labelling configuration "
            f"in {path.with_name(CONFIG_FILE)}; serve the images with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root or project.settings.images}."
        )
        return
    path = project.export_csv(args.out or project.directory / "labels.csv")
    print(f"{len(project.store.images())} images ({sum(project.class_counts().values())} labelled) written to {path}")


def open_project(directory: str):
    from dalkit.project.project import Project

    return Project.open(directory)


def command_predict(args: argparse.Namespace) -> None:
    import csv
    import io
    import sys

    from dalkit.project.project import spreadsheet_cell, write_atomically

    project = open_project(args.directory)
    found = project.predict_files(args.images)
    rows = [("image", "prediction", "confidence", "error")]
    rows += [(f, c or "", "" if p is None else f"{p:.4f}", why or "") for f, c, p, why in found]
    for *_, why in found:
        if why is not None:
            print(f"{why}; it is left without a prediction.", file=sys.stderr)
    if args.out:
        write_atomically(Path(args.out), rows)
        print(f"{len(found)} prediction(s) written to {args.out}", file=sys.stderr)
    else:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([spreadsheet_cell(c) for c in row] for row in rows)
        sys.stdout.write(text.getvalue())

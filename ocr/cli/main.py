"""``python -m ocr synth|download-kaggle|import|train|evaluate|predict|export|publish|export-web``.

Heavy imports (torch) happen inside the commands so ``--help`` is instant. Every expected failure
exits non-zero with one readable line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ocr.data.synth import KINDS
from ocr.engines import ENGINE_HELP, ENGINES
from ocr.sharing.export import FORMATS
from ocr.training.config import (
    add_label_options,
    add_training_options,
    finite_float,
    label_rules,
    positive_float,
    training_options,
)


class CLIError(Exception):
    """A failure explained in one line."""


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from ocr.data.synth import generate

    with tqdm(total=args.n, desc="synthesizing", unit="img", file=sys.stderr, disable=args.quiet) as bar:
        generate(args.out, args.n, seed=args.seed, split=args.split, workers=args.workers, progress=bar.update,
                 kind=args.kind)
    print(f"wrote {args.n:,} images and written_name_{args.split}_v2.csv to {args.out}")
    return 0


def cmd_import(args) -> int:
    from ocr.data.datasets import import_kaggle, summary_text

    result = import_kaggle(args.source, check_images=not args.no_image_check, rules=label_rules(args))
    summary = result.summary()
    print(json.dumps(summary) if args.json else summary_text(summary))
    return 0 if result.samples else 1


def cmd_download(args) -> int:
    from ocr.data.datasets import import_kaggle, summary_text
    from ocr.data.kaggle import KaggleError, download

    try:
        folder = download(args.out, dataset=args.dataset)
    except KaggleError as exc:
        raise CLIError(str(exc)) from None
    summary = import_kaggle(folder).summary()
    print(json.dumps(summary) if args.json else summary_text(summary))
    return 0


def _load_samples(specs: list[str], rules=None):
    """The usable samples of ``--data``/``--val`` folders, each summarised in a line; a folder where none is usable
    says why (which characters, and the option that admits them)."""
    from ocr.data.datasets import default_train_splits, import_kaggle, parse_data_arg

    samples = []
    for spec in specs:
        folder, splits = parse_data_arg(spec)
        result = import_kaggle(folder, splits, rules=rules)
        if splits is None:
            result.samples = result.split(*default_train_splits(result))
        summary = result.summary()
        ex = summary["excluded"]
        _print_err(f"{folder}: {len(result.samples):,} usable samples"
                   + (f" (excluded: {', '.join(f'{k} {v}' for k, v in ex.items() if v)})" if any(ex.values()) else ""))
        for e in result.errors:
            _print_err(f"  {e}")
        if not result.samples and ex["bad_chars"]:
            raise CLIError(f"no usable samples in {folder}: {_outside_the_set(summary)}")
        if ex["bad_chars"]:
            _print_err(f"  {_outside_the_set(summary)}")
        samples += result.samples
    return samples


def _outside_the_set(summary: dict) -> str:
    """Which characters kept labels out, how often, and the option that admits them."""
    chars = summary["bad_characters"]
    shown = " ".join(f"{c!r} ({n:,})" for c, n in list(chars.items())[:20]) + (" ..." if len(chars) > 20 else "")
    charset = summary["label_rules"]["charset"]
    return (f"{summary['excluded']['bad_chars']:,} label(s) have characters outside the {charset!r} set: {shown}; "
            "--label-charset digits, latin or any admits them (--keep-case keeps lower case)")


def _launch_ranks(args) -> int | None:
    """``--gpus N`` / ``--devices``: this same command again under torchrun, N ranks on one machine (its exit code); None
    when this process is to train (one device, or already a rank)."""
    from ocr.training.distributed import Ranks

    env = dict(os.environ)
    gpus = args.gpus
    if args.devices:
        names = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not names or not all(n.startswith("cuda:") and n[5:].isdigit() for n in names) or len(set(names)) < len(names):
            raise CLIError(f"--devices takes distinct GPUs such as cuda:0,cuda:1, not {args.devices!r}")
        env["CUDA_VISIBLE_DEVICES"], gpus = ",".join(n[5:] for n in names), len(names)
        args.device = "cuda"
    if gpus < 1:
        raise CLIError("--gpus must be at least 1")
    world = Ranks.from_env().world
    if world > 1:
        if gpus not in (1, world):
            raise CLIError(f"--gpus {gpus} under a torchrun of {world} processes: give one or the other")
        return None
    if gpus == 1:
        return None
    if args.self_train > 0:
        raise CLIError("--self-train runs in one process for now: leave out --gpus / --devices")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
               "-m", "ocr", *args.argv]
    return subprocess.run(command, env=env).returncode


def cmd_train(args) -> int:
    from ocr.checkpoint import load_checkpoint
    from ocr.data.datasets import holdout_split
    from ocr.training.distributed import Ranks, end
    from ocr.training.loop import Callback, TrainConfig
    from ocr.training.selftrain import check_self_training, fit_self_training, pool_files

    if (code := _launch_ranks(args)) is not None:
        return code

    out = Path(args.out)
    run_file = out / "run.json"
    if args.resume and not args.data:
        if not run_file.exists():
            raise CLIError(f"{out}: nothing to resume (no run.json / last.pt); give --data to start a run")
        saved = json.loads(run_file.read_text())
        args.data, args.val = saved["data"], saved["val"]
        args.unlabelled = saved.get("unlabelled", [])
    if not args.data:
        raise CLIError("give at least one --data DIR[:SPLITS]")
    if args.resume and not ((out / "last.pt").exists() or (out / "teacher" / "last.pt").exists()):
        raise CLIError(f"{out / 'last.pt'} not found: nothing to resume")
    cfg = TrainConfig(**training_options(args), device=args.device, workers=args.workers, diagnose=args.diagnose,
                      data_on_device=args.data_on_device)
    if cfg.self_train > 0 and not args.unlabelled:
        raise CLIError("--self-train needs --unlabelled DIR: a folder of images without labels")
    if args.teacher and cfg.self_train == 0:
        raise CLIError("--teacher reads the unlabelled images for --self-train; give --self-train SHARE too")
    if args.teacher and not args.resume:
        load_checkpoint(args.teacher)  # a model that cannot be read says so before anything is written
    ranks = Ranks.from_env()  # under torchrun: this process's rank of the run
    if ranks.world > 1 and cfg.self_train > 0:
        raise CLIError("--self-train runs in one process for now; start it without torchrun")
    pool = [f for folder in args.unlabelled for f in pool_files(folder)]
    if not args.resume:
        check_self_training(cfg, pool)
    if pool:
        _print_err(f"unlabelled pool: {len(pool):,} images")
    train = _load_samples(args.data, label_rules(args))
    if args.val:
        val = _load_samples(args.val, label_rules(args))
    else:
        train, val = holdout_split(train, cfg.val_fraction, cfg.seed)
        _print_err(f"holding out {len(val):,} of the training samples for validation (seed {cfg.seed})")
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume and ranks.main:
        run_file.write_text(json.dumps({"data": args.data, "val": args.val, "unlabelled": args.unlabelled}, indent=1))

    class Printer(Callback):
        def on_start(self, info):
            _print_err(f"training {info['model']} ({info['parameters']:,} parameters) on {info['device']}: "
                       f"{info['train_samples']:,} train / {info['val_samples']:,} validation samples, "
                       f"{info['epochs']} epoch(s)")

        def on_epoch(self, m):
            print(f"epoch {m['epoch']:3d}  train_loss {m['train_loss']:.4f}  val_loss {m['val_loss']:.4f}  "
                  f"val_exact_match {m['val_exact_match']:.3f}  val_cer {m['val_cer']:.4f}  ({m['seconds']:.0f} s)",
                  flush=True)

        def on_message(self, text):
            _print_err(text)

    try:
        summary = fit_self_training(train, val, pool, out, cfg, init=args.init, resume=args.resume, callback=Printer(),
                                    progress=not args.quiet and sys.stderr.isatty(), teacher=args.teacher)
    finally:
        end(ranks)  # leave the run's process group before the process ends
    best = summary["best"]
    if not ranks.main:
        return 0  # rank 0 reports the run
    print(f"done: {summary['epochs']} epoch(s); best val_cer {best.get('val_cer', float('nan')):.4f}, "
          f"val_exact_match {best.get('val_exact_match', float('nan')):.3f}; checkpoints in {out}"
          + (f" ({summary['stopped']})" if summary["stopped"] else ""))
    return 0


def _decoder_config(args):
    from ocr.decoding.decoder import DecoderConfig

    return DecoderConfig(beam=args.beam, lm=args.lm, lm_weight=args.lm_weight, lexicon=args.lexicon,
                         lexicon_ratio=args.lexicon_ratio, top_k=getattr(args, "top_k", 5), views=args.views)


def _decoder(rec, args):
    """The reader's decoder; a language model or lexicon that cannot be read is one line naming it."""
    try:
        config = _decoder_config(args)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        return rec.decoder(config)
    except (OSError, ValueError) as exc:
        what = f"language model {args.lm!r}" if args.lm else f"lexicon {args.lexicon!r}"
        raise CLIError(f"{what}: {exc}") from None


def cmd_evaluate(args) -> int:
    from ocr.evaluation.evaluate import evaluate

    metrics = evaluate(args.checkpoint, args.data, args.split, args.out, decoder=_decoder_config(args),
                       device=args.device, engine=args.engine)
    print(json.dumps(metrics) if args.json else
          f"n {metrics['n']}  exact_match {metrics['exact_match']:.4f}  cer {metrics['cer']:.4f}  "
          f"wer {metrics['wer']:.4f}  char_accuracy {metrics['char_accuracy']:.4f}  -> {args.out}")
    return 0


def cmd_find_label_errors(args) -> int:
    from ocr.curation.label_errors import LabelErrorConfig, find_label_errors

    cfg = LabelErrorConfig(folds=args.folds, max_minutes=args.max_minutes, lm="names" if args.lm else None,
                           device=args.device, seed=args.seed)
    issues = find_label_errors(_load_samples(args.data), args.checkpoint, args.out, cfg)
    doubted = [x for x in issues if x.score > 0]
    for x in doubted[:args.top]:
        agree = "  (the start model reads it too)" if x.agrees else ""
        print(f"{x.score:8.2f}  {x.sample.path.name}  label {x.sample.label!r}  read {x.reading!r}{agree}")
    _print_err(f"{len(doubted):,} of {len(issues):,} labels doubted out of fold; all scores in "
               f"{Path(args.out) / 'label_issues.json'}")
    return 0


def cmd_predict(args) -> int:
    from ocr.recognize import Recognizer

    rec = Recognizer(args.checkpoint, device=args.device, engine=args.engine)
    decoder = _decoder(rec, args)
    failed = 0
    readings = (p for batch in rec.read_stream(args.images, decoder) for p in batch)
    for path, p in zip(args.images, readings):
        if isinstance(p, ValueError):
            _print_err(f"{path}: {p}")
            failed += 1
        elif args.json:
            print(json.dumps({"file": str(path), "text": p.text, "confidence": p.confidence,
                              "candidates": [{"text": t, "probability": q} for t, q in p.candidates]}))
        else:
            extra = "  |  " + "  ".join(f"{t} {q:.3f}" for t, q in p.candidates[1:]) if p.candidates[1:] else ""
            print(f"{path}\t{p.text}\t{p.confidence:.3f}{extra}")
    return 1 if failed else 0


def cmd_export(args) -> int:
    from ocr.sharing.export import ExportError, export

    try:
        paths = export(args.checkpoint, args.out, formats=args.format)
    except ExportError as exc:
        raise CLIError(str(exc)) from None
    for p in paths:
        print(p)
    return 0


def cmd_publish(args) -> int:
    import tempfile

    from ocr.sharing.publish import Evaluation, PublishError, publish

    evaluation = None
    if args.eval_data:
        from ocr.evaluation.evaluate import evaluate

        with tempfile.TemporaryDirectory(prefix="hwr-publish-eval-") as tmp:
            evaluate(args.model, args.eval_data, args.eval_split, tmp, decoder=_decoder_config(args))
            evaluation = Evaluation.from_run(tmp, args.eval_name or f"{Path(args.eval_data).name} ({args.eval_split})",
                                             dataset_id=args.eval_dataset_id)
    try:
        result = publish(args.model, args.repo, evaluation, private=args.private, license=args.license,
                         datasets=args.dataset, dry_run=args.dry_run, out=args.out)
    except PublishError as exc:
        raise CLIError(str(exc)) from None
    if evaluation:
        _print_err(f"evaluated on {evaluation.n} images: exact match {evaluation.exact_match:.3f}, "
                   f"CER {evaluation.cer:.3f}")
    print(f"wrote {', '.join(result['files'])} to {result['folder']} (dry run: nothing uploaded)" if args.dry_run else
          f"published {', '.join(result['files'])} to {result['url']}")
    return 0


def cmd_export_web(args) -> int:
    from ocr.sharing.webdemo import WebExportError, export_web

    try:
        result = export_web(args.model, args.out)
    except WebExportError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {len(result['files'])} files to {result['folder']} (model.onnx {result['model_bytes'] / 1e6:.1f} MB, "
          f"{result['total_bytes'] / 1e6:.1f} MB in all); serve it with: python -m http.server -d {result['folder']}")
    return 0


def _engine_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)


def _decoder_args(s: argparse.ArgumentParser, beam: int = 0) -> None:
    """The decoding options ``evaluate``, ``predict`` and ``publish`` share (``DecoderConfig``'s fields)."""
    s.add_argument("--beam", type=int, default=beam,
                   help=f"beam width (0: greedy; 10 with --lexicon, 20 with --lm; default {beam})")
    s.add_argument("--lexicon", metavar="names|FILE",
                   help="prefer a known name among the beam candidates (names-dataset, or a word list)")
    s.add_argument("--lexicon-ratio", type=finite_float, default=0.01,
                   help="a name replaces the best reading if at least this fraction as probable (default 0.01)")
    s.add_argument("--lm", metavar="names|labels|names+labels|FILE",
                   help="beam search with a character language model of names (names-dataset), of the model's own "
                        "training labels (what 'names' becomes for a model whose character set is not the names set; "
                        "names+labels, a mixture of both, for a set grown from the names set), or of a word list; "
                        "open vocabulary, unlike --lexicon")
    from ocr.decoding.types import DEFAULT_WEIGHT

    s.add_argument("--lm-weight", type=finite_float, default=DEFAULT_WEIGHT,
                   help=f"weight of the language model (default {DEFAULT_WEIGHT})")
    s.add_argument("--views", type=int, default=1,
                   help="test-time augmentation: read each image this many times, moved up and down by 1-3 rows of "
                        "the model's input, and average the model's outputs (1-7; each view is one more run of the "
                        "model; default 1)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ocr", description="Handwritten-name recognition (CRNN + CTC).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate synthetic handwritten form fields in Kaggle layout")
    s.add_argument("--n", type=int, default=20000, help="number of images (default 20000)")
    s.add_argument("--kind", default="names", choices=KINDS,
                   help="names: upper-case Kaggle names, accents left out of the label (default); capitals: the "
                        "same with accents kept; dates, numbers, words (lower and mixed case, accents kept), or "
                        "mixed: capitals, dates, numbers and words")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", default="train", choices=["train", "validation", "test"])
    s.add_argument("--workers", type=int, default=1, help="processes (output is the same for any number)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("download-kaggle", help="download landlord/handwriting-recognition with the kaggle API, then import")
    s.add_argument("--out", required=True, help="folder to download and extract into")
    s.add_argument("--dataset", default="landlord/handwriting-recognition")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("import", help="check a Kaggle-layout folder or zip and print what is usable")
    s.add_argument("source", help="folder or .zip in Kaggle layout")
    s.add_argument("--json", action="store_true", help="one JSON object: rows, usable, excluded, splits, ...")
    s.add_argument("--no-image-check", action="store_true", help="skip decoding every image")
    add_label_options(s)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("train", help="train a CRNN; writes RUNDIR/best.pt, last.pt, metrics.jsonl")
    s.add_argument("--data", action="append", default=[], metavar="DIR[:SPLITS]",
                   help="Kaggle-layout folder or zip; SPLITS a comma list of train,validation,test "
                        "(default: all present but test). Repeatable.")
    s.add_argument("--val", action="append", default=[], metavar="DIR[:SPLITS]",
                   help="validation data (default: a seeded share of the training rows)")
    s.add_argument("--out", required=True, metavar="RUNDIR")
    add_training_options(s)
    add_label_options(s)
    s.add_argument("--init", metavar="CKPT", help="fine-tune from this checkpoint")
    s.add_argument("--unlabelled", action="append", default=[], metavar="DIR",
                   help="a folder of images without labels for --self-train (repeatable)")
    s.add_argument("--teacher", metavar="CKPT",
                   help="with --self-train: this model (the one you are retraining, say) reads the unlabelled images "
                        "instead of a teacher trained first, and the whole run trains on labels + its pseudo-labels")
    s.add_argument("--resume", action="store_true", help="continue RUNDIR/last.pt exactly")
    s.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps")
    s.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="train on N devices as N DDP ranks: the command starts itself under torchrun (N GPUs; with "
                        "--device cpu, N gloo processes)")
    s.add_argument("--devices", metavar="cuda:0,cuda:1",
                   help="train on these GPUs as one DDP rank each (sets CUDA_VISIBLE_DEVICES and --gpus)")
    s.add_argument("--workers", type=int, default=-1, help="DataLoader workers (default: 0 on CPU, 4 on GPU)")
    s.add_argument("--diagnose", action="store_true", help="print batch statistics before training")
    s.add_argument("--data-on-device", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the images on the training device and augment there (default: on CUDA only)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("find-label-errors", help="score every label out of fold (k-fold fine-tuning from CKPT): "
                                                "the likeliest wrong labels first")
    s.add_argument("--checkpoint", required=True, help="each fold is fine-tuned from it")
    s.add_argument("--data", action="append", required=True, metavar="DIR[:SPLITS]")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--folds", type=int, default=4)
    s.add_argument("--max-minutes", type=positive_float, default=8.0, help="fine-tuning budget of all the folds")
    s.add_argument("--no-lm", dest="lm", action="store_false",
                   help="score with the model alone (greedy), not with the names language model")
    s.add_argument("--top", type=int, default=30, help="how many to print")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_find_label_errors)

    s = sub.add_parser("evaluate", help="metrics, predictions, misclassified images and a Markdown/PDF report")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True, help="Kaggle-layout folder or zip")
    s.add_argument("--split", default="validation")
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="cpu")
    _engine_arg(s)
    s.add_argument("--json", action="store_true")
    _decoder_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="read images: text and confidence (top-k with --beam)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("images", nargs="+")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--device", default="cpu")
    _engine_arg(s)
    s.add_argument("--json", action="store_true")
    _decoder_args(s, beam=10)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("export", help="write the model folder (model.safetensors + config.json), model.pt, "
                                      "a torch.export program (model.pt2) and ONNX")
    s.add_argument("--checkpoint", required=True, help="a checkpoint, a model folder or a Hub id (hf://USER/NAME)")
    s.add_argument("--out", required=True)
    s.add_argument("--format", action="append", choices=list(FORMATS),
                   help="repeatable (default: all); config.json is always written")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("publish", help="publish a model to the Hugging Face Hub (safetensors, config, ONNX, model card)")
    s.add_argument("--model", required=True, help="a checkpoint or a model folder")
    s.add_argument("--repo", required=True, metavar="USER/NAME", help="the Hub repo (created if missing)")
    s.add_argument("--private", action="store_true", help="create the repo private")
    s.add_argument("--dry-run", action="store_true", help="write the folder (--out) and upload nothing")
    s.add_argument("--out", help="where the folder is written (required with --dry-run; else a temporary folder)")
    s.add_argument("--eval-data", metavar="DIR", help="evaluate on this Kaggle-layout data first: the card's figures")
    s.add_argument("--eval-split", default="validation")
    s.add_argument("--eval-name", help="what the evaluation data is, in words, for the card")
    s.add_argument("--eval-dataset-id", help="its Hub dataset id, if it is one")
    s.add_argument("--dataset", action="append", help="a Hub dataset id the model was trained on (repeatable)")
    s.add_argument("--license", default="mit", help="the model's license id on the Hub (default mit)")
    _decoder_args(s)
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("export-web", help="write a static web demo (canvas + the model run in the browser)")
    s.add_argument("--model", required=True, help="a checkpoint, a model folder or a Hub id")
    s.add_argument("--out", required=True, help="the folder to serve (e.g. site/ for GitHub Pages)")
    s.set_defaults(func=cmd_export_web)
    return p


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input, said in one line: the models' and training's only when a command loaded them
    (``--help`` and the commands that need no model import no torch)."""
    loaded = [getattr(sys.modules.get(name), error, None) for name, error in
              (("ocr.checkpoint", "ModelError"), ("ocr.training.loop", "TrainingError"))]
    return (CLIError, ValueError, OSError, *(e for e in loaded if e is not None))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # ``train --gpus N`` starts the same command under torchrun
    try:
        return args.func(args)
    except ImportError as exc:
        _print_err(f"error: {exc} (install the requirements: pip install -r requirements.txt)")
        return 2
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            _print_err(f"error: {exc}")
            return 1
        raise
    except KeyboardInterrupt:
        _print_err("interrupted")
        return 130

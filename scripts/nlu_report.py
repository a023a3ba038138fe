"""NLU report for trainers: 5-fold cross-validation, per-intent table, and what changed.

    make nlu-report                      # cross-validate config.yml on data/nlu
    python scripts/nlu_report.py --compare scripts/nlu_pipelines/*.yml   # compare pipelines

Runs `rasa test nlu --cross-validation --folds 5` (with a fixed seed, so the folds are the same
every run) into reports/nlu/current/: Rasa's intent_report.json, intent_confusion_matrix.png,
intent_histogram.png, intent_errors.json and the entity reports. Then writes summary.md and
summary.json next to them and prints the per-intent precision / recall / F1 table with the
change since the previous run, which is kept in reports/nlu/previous/. Beside it, the model
trained on all of data/nlu is scored on the unseen-phrasing set (tests/nlu/unseen_phrasing.yml,
never trained on) into unseen_phrasing.md / .json, with the thresholds `make test` checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports" / "nlu"
UNSEEN = ROOT / "tests" / "nlu" / "unseen_phrasing.yml"
SEED = 42

# Rasa shuffles the folds with numpy's global generator; seed it so runs are comparable.
_BOOT = (
    "import random, sys, numpy; random.seed({seed}); numpy.random.seed({seed}); "
    "sys.argv[0] = 'rasa'; from rasa.__main__ import main; main()"
)


def cross_validate(*, config: Path, nlu: Path, out: Path, folds: int) -> float:
    """Run Rasa's cross-validation into `out`; returns the wall time in seconds."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONHASHSEED": str(SEED)}
    command = [sys.executable, "-c", _BOOT.format(seed=SEED), "test", "nlu",
               "--nlu", str(nlu), "--config", str(config), "--cross-validation",
               "--folds", str(folds), "--out", str(out)]
    started = time.perf_counter()
    with open(out / "rasa_test.log", "w") as log:
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=log,
                       stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def summarise(run_dir: Path, *, seconds: float | None = None,
              config: Path | None = None) -> dict:
    """Per-intent P/R/F1 and entity scores from Rasa's reports in `run_dir`."""
    report = json.loads((run_dir / "intent_report.json").read_text())
    intents = {
        name: {key: round(float(values[key]), 4) for key in ("precision", "recall", "f1-score")}
        | {"support": int(values["support"])}
        for name, values in report.items()
        if isinstance(values, dict) and name not in ("macro avg", "weighted avg", "micro avg")
    }
    summary = {
        "intents": dict(sorted(intents.items())),
        "accuracy": round(float(report.get("accuracy", 0.0)), 4),
        "macro_f1": round(float(report["macro avg"]["f1-score"]), 4),
        "weighted_f1": round(float(report["weighted avg"]["f1-score"]), 4),
        "entities": {},
    }
    for entity_report in sorted(run_dir.glob("*_report.json")):
        extractor = entity_report.name.removesuffix("_report.json")
        if extractor in ("intent", "response_selection"):
            continue
        data = json.loads(entity_report.read_text())
        summary["entities"][extractor] = {
            name: {key: round(float(values[key]), 4)
                   for key in ("precision", "recall", "f1-score")} | {
                "support": int(values["support"])}
            for name, values in data.items() if isinstance(values, dict) and "support" in values
        }
    if seconds is not None:
        summary["seconds"] = round(seconds, 1)
    if config is not None:
        summary["config"] = str(config.relative_to(ROOT) if config.is_relative_to(ROOT)
                                else config)
    return summary


def _delta(now: float, before: float | None) -> str:
    if before is None:
        return "new"
    change = now - before
    return "=" if abs(change) < 0.00005 else f"{change:+.3f}"


def table(summary: dict, previous: dict | None = None) -> str:
    """The per-intent table in Markdown, with deltas when a previous summary is given."""
    before = (previous or {}).get("intents", {})
    head = "| intent | precision | recall | F1 | support |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if previous:
        head += " ΔF1 | Δrecall |"
        rule += " ---: | ---: |"
    lines = [head, rule]
    for name, row in summary["intents"].items():
        line = (f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{row['f1-score']:.3f} | {row['support']} |")
        if previous:
            old = before.get(name, {})
            line += (f" {_delta(row['f1-score'], old.get('f1-score'))} |"
                     f" {_delta(row['recall'], old.get('recall'))} |")
        lines.append(line)
    footer = (f"\naccuracy {summary['accuracy']:.3f} · macro F1 {summary['macro_f1']:.3f} · "
              f"weighted F1 {summary['weighted_f1']:.3f}")
    if previous:
        footer += (f" (macro F1 was {previous['macro_f1']:.3f}, "
                   f"{_delta(summary['macro_f1'], previous['macro_f1'])})")
        gone = sorted(set(before) - set(summary["intents"]))
        if gone:
            footer += f"\nintents no longer in the data: {', '.join(gone)}"
    for extractor, labels in summary["entities"].items():
        for label, row in labels.items():
            if label in ("micro avg", "macro avg", "weighted avg", "no_entity"):
                continue
            footer += (f"\nentity {label} ({extractor}): P {row['precision']:.3f} "
                       f"R {row['recall']:.3f} F1 {row['f1-score']:.3f} ({row['support']})")
    if "seconds" in summary:
        footer += f"\ncross-validation took {summary['seconds']:.0f} s"
    return "\n".join(lines) + "\n" + footer + "\n"


def worst_confusions(run_dir: Path, limit: int = 12) -> str:
    """The most frequent intent confusions, from Rasa's intent_errors.json."""
    errors_file = run_dir / "intent_errors.json"
    if not errors_file.exists():
        return ""
    errors = json.loads(errors_file.read_text())
    pairs: dict[tuple[str, str], list[str]] = {}
    for error in errors:
        key = (error["intent"], (error.get("intent_prediction") or {}).get("name") or "?")
        pairs.setdefault(key, []).append(error["text"])
    ranked = sorted(pairs.items(), key=lambda item: -len(item[1]))[:limit]
    lines = ["\nMost frequent confusions (true -> predicted: count, example):"]
    lines += [f"  {true} -> {predicted}: {len(texts)}, e.g. {texts[0]!r}"
              for (true, predicted), texts in ranked]
    return "\n".join(lines) + "\n"


def unseen_phrasing(run_dir: Path, *, config: Path, nlu: Path) -> str:
    """The full model (config.yml on data/nlu) scored on the unseen-phrasing set, as Markdown."""
    from nlu_components.evaluation import misses, predict, score, table
    from nlu_components.nlu_model import nlu_model

    if (config.resolve(), nlu.resolve()) != ((ROOT / "config.yml").resolve(),
                                             (ROOT / "data" / "nlu").resolve()):
        return ""  # the cached model is trained from config.yml on data/nlu only
    predictions = predict(nlu_model().path, UNSEEN, synonyms_from=nlu)
    scores = score(predictions)
    (run_dir / "unseen_phrasing.json").write_text(json.dumps({
        "accuracy": round(scores.accuracy, 4), "urgent_recall": round(scores.urgent_recall, 4),
        "false_urgent": scores.false_urgent, "messages": scores.messages,
        "intents": scores.per_intent,
        "misses": [{"text": p.text, "intent": p.intent, "predicted": p.predicted,
                    "confidence": round(p.confidence, 3)}
                   for p in predictions if p.intent != p.predicted]}, indent=2))
    text = (f"\n## Unseen phrasing ({UNSEEN.relative_to(ROOT)}, never trained on)\n\n"
            f"{table(scores)}thresholds (make test): accuracy >= 0.90, urgent recall 1.00, "
            f"false urgent 0\n\nmisses (true -> predicted):\n{misses(predictions)}\n")
    (run_dir / "unseen_phrasing.md").write_text(text)
    return text


def report(args: argparse.Namespace) -> int:
    current, previous = REPORTS / "current", REPORTS / "previous"
    if (current / "summary.json").exists():
        if previous.exists():
            shutil.rmtree(previous)
        shutil.copytree(current, previous)
    seconds = cross_validate(config=args.config, nlu=args.nlu, out=current, folds=args.folds)
    summary = summarise(current, seconds=seconds, config=args.config)
    before = (json.loads((previous / "summary.json").read_text())
              if (previous / "summary.json").exists() else None)
    text = (table(summary, before) + worst_confusions(current)
            + unseen_phrasing(current, config=args.config, nlu=args.nlu))
    (current / "summary.json").write_text(json.dumps(summary, indent=2))
    (current / "summary.md").write_text(f"# NLU cross-validation ({args.folds} folds)\n\n{text}")
    print(text)
    print(f"Reports in {current.relative_to(ROOT)}/ (confusion matrix: "
          f"intent_confusion_matrix.png, errors: intent_errors.json); previous run in "
          f"{previous.relative_to(ROOT)}/.")
    return 0


def compare(args: argparse.Namespace) -> int:
    rows = []
    for config in args.compare:
        out = REPORTS / "compare" / config.stem
        print(f"cross-validating {config} ...", flush=True)
        seconds = cross_validate(config=config, nlu=args.nlu, out=out, folds=args.folds)
        summary = summarise(out, seconds=seconds, config=config)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        urgent = summary["intents"].get("urgent", {})
        entity = next((labels.get("service") for labels in summary["entities"].values()
                       if "service" in labels), None) or {}
        rows.append(f"| {config.stem} | {summary['accuracy']:.3f} | {summary['macro_f1']:.3f} | "
                    f"{urgent.get('recall', 0):.3f} | {urgent.get('precision', 0):.3f} | "
                    f"{entity.get('f1-score', 0):.3f} | {seconds / args.folds:.0f} |")
        print(rows[-1], flush=True)
    text = ("| pipeline | accuracy | macro F1 | urgent recall | urgent precision | "
            "service F1 | s per fold |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            + "\n".join(rows) + "\n")
    (REPORTS / "compare").mkdir(parents=True, exist_ok=True)
    (REPORTS / "compare" / "comparison.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yml")
    parser.add_argument("--nlu", type=Path, default=ROOT / "data" / "nlu")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--compare", type=Path, nargs="+",
                        help="cross-validate each of these configs and print one table")
    args = parser.parse_args(argv)
    return compare(args) if args.compare else report(args)


if __name__ == "__main__":
    sys.exit(main())

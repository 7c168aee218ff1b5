"""Evaluation reports: plots with matplotlib, the same content as Markdown and as a PDF (fpdf2)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from fpdf import FPDF  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

FONT_DIR = Path(__file__).parents[1] / "fonts"  # DejaVu Sans, shipped with the project
GRID_MAX = 40
GRID_PAGE = 20  # images per grid: one A4 page


def plot_curves(history: list[dict], path: Path) -> bool:
    """Train loss per step, validation loss / exact match / CER per epoch. False when there is nothing to plot."""
    steps = [r for r in history if r.get("type") == "step"]
    epochs = [r for r in history if r.get("type") == "epoch"]
    if not steps and not epochs:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    if steps:
        a.plot([r["step"] for r in steps], [r["train_loss"] for r in steps], lw=0.8, label="train loss (step)")
    if epochs:
        a.plot([r["step"] for r in epochs], [r["val_loss"] for r in epochs], "o-", label="validation loss")
        b.plot([r["epoch"] for r in epochs], [r["val_exact_match"] for r in epochs], "o-", label="exact match")
        b.plot([r["epoch"] for r in epochs], [r["val_cer"] for r in epochs], "s-", label="CER")
    a.set_xlabel("step")
    a.set_yscale("log")
    a.legend()
    a.set_title("loss")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    b.set_title("validation")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


def plot_by_length(by_length: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 2.8))
    lengths = list(by_length)
    ax.bar([str(k) for k in lengths], [by_length[k]["exact_match"] for k in lengths], color="#4c72b0")
    for i, k in enumerate(lengths):
        ax.text(i, 0.02, str(by_length[k]["n"]), ha="center", fontsize=7, color="white")
    ax.set_xlabel("label length (number of samples in the bars)")
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def misclassified_grids(wrong: list[tuple], out: Path) -> list[Path]:
    """Page-sized grids of the least confident mistakes: misclassified-1.png, -2.png ..."""
    wrong = sorted(wrong, key=lambda w: w[3])[:GRID_MAX]
    paths = []
    for i in range(0, len(wrong), GRID_PAGE):
        paths.append(out / f"misclassified-{i // GRID_PAGE + 1}.png")
        misclassified_grid(wrong[i:i + GRID_PAGE], paths[-1])
    return paths


def misclassified_grid(wrong: list[tuple], path: Path, columns: int = 2, cell=(360, 70)) -> None:
    """Each wrong image with 'label -> prediction (confidence)' drawn under it."""
    rows = max(1, -(-len(wrong) // columns))
    sheet = Image.new("RGB", (columns * cell[0], rows * (cell[1] + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans.ttf"), 12)
    for i, (img_path, label, pred, conf) in enumerate(wrong):
        x, y = (i % columns) * cell[0], (i // columns) * (cell[1] + 18)
        with Image.open(img_path) as im:
            im = im.convert("RGB")
            im.thumbnail((cell[0] - 8, cell[1] - 4))
            sheet.paste(im, (x + 4, y + 2))
        draw.text((x + 4, y + cell[1]), f"{label} \u2192 {pred or '(nothing)'}  ({conf:.2f})", fill=(200, 0, 0), font=font)
    sheet.save(path)


def write_report(out: Path, metrics: dict, history: list[dict], by_length: dict, confusions: list, wrong: list,
                 model: str = "") -> None:
    has_curves = plot_curves(history, out / "curves.png")
    plot_by_length(by_length, out / "by_length.png")
    for old in out.glob("misclassified-*.png"):
        old.unlink()
    grids = misclassified_grids(wrong, out) if wrong else []
    rows = [("samples", f"{metrics['n']:,}"), ("exact match", f"{metrics['exact_match']:.2%}"),
            ("character accuracy", f"{metrics['char_accuracy']:.2%}"), ("CER", f"{metrics['cer']:.2%}"),
            ("WER", f"{metrics['wer']:.2%}"), ("mean edit distance", f"{metrics['mean_edit_distance']:.3f}"),
            ("excluded rows", ", ".join(f"{k} {v}" for k, v in metrics["excluded"].items()))]
    conf_rows = [(a or "(none)", b or "(none)", str(n)) for a, b, n in confusions[:15]]
    title = f"Evaluation: {Path(metrics['data']).name} / {metrics['split']}"
    subtitle = f"checkpoint {metrics['checkpoint']} \u00b7 model {model} \u00b7 decoder {metrics['decoder']}"

    md = [f"# {title}", "", subtitle, "", "| metric | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    if has_curves:
        md += ["", "## Training curves", "", "![curves](curves.png)"]
    md += ["", "## Accuracy by label length", "", "![by length](by_length.png)", "", "| length | n | exact match |",
           "|---|---|---|"]
    md += [f"| {k} | {v['n']} | {v['exact_match']:.2%} |" for k, v in by_length.items()]
    md += ["", "## Top character confusions", "", "| label | predicted | count |", "|---|---|---|"]
    md += [f"| `{a}` | `{b}` | {n} |" for a, b, n in conf_rows]
    if wrong:
        md += ["", f"## Misclassified ({len(wrong)}; the {len(grids) * GRID_PAGE} least confident)", ""]
        md += [f"![misclassified]({g.name})" for g in grids]
        md += ["", "All of them are in `misclassified/`, named `FILE__LABEL__as__PREDICTION`."]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    pdf = FPDF()
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 16)
    pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(0, 4, subtitle, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("DejaVu", "", 10)
    with pdf.table(col_widths=(40, 100), text_align="LEFT") as table:
        for k, v in [("metric", "value"), *rows]:
            table.row((k, v))
    if has_curves:
        _section(pdf, "Training curves")
        pdf.image(str(out / "curves.png"), w=185)
    _section(pdf, "Accuracy by label length")
    pdf.image(str(out / "by_length.png"), w=185)
    _section(pdf, "Top character confusions")
    pdf.set_font("DejaVu", "", 9)
    with pdf.table(col_widths=(30, 30, 20), width=80, align="LEFT") as table:
        for r in [("label", "predicted", "count"), *conf_rows]:
            table.row(r)
    for i, grid in enumerate(grids):
        pdf.add_page()
        _section(pdf, f"Misclassified ({len(wrong)} in all; least confident first), part {i + 1} of {len(grids)}")
        pdf.image(str(grid), w=170)
    pdf.output(str(out / "report.pdf"))


def _section(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)

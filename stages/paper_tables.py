"""The paper tables: what each one needs, the published numbers, and how ours are laid beside them.

Pure data and rendering (no DVC, Prefect or MLflow): the `report` stage renders the synthetic
counterpart of every single-run table from `reports/metrics.json`; `selfsup table` runs what a table
needs (DVC experiments) and renders it with the same code.

Published numbers come from the project's specs (crw.md §8, cut.md §9, evaluation.md §8); values the
specs mark unverified carry a dagger. Numbers the specs do not list (baseline rows, the paper's
ablation values) are not invented: those cells stay empty and the table says where to find them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

DAGGER = "†"


@dataclass(frozen=True)
class Column:
    key: str                    # metric key inside the set's dict of reports/metrics.json
    label: str
    scale: float = 1.0          # DAVIS metrics are stored on 0..1 and published ×100
    lower_is_better: bool = False


@dataclass(frozen=True)
class Reference:
    """One published row: values by column key; `unverified` lists the keys the specs doubt."""
    label: str
    values: Mapping[str, float]
    unverified: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Variant:
    """One run a table needs. `overrides` are dotted params keys on top of `profiles`."""
    name: str
    label: str
    profiles: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    isolated: bool = False      # True: a `dvc exp run --temp` experiment; False: the workspace
    dataset: str = ""           # translation tables: which data set this run translates


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    kind: str                   # "davis" | "jhmdb" | "vip" (propagation) or "translate"
    columns: tuple[Column, ...]
    references: tuple[Reference, ...]
    datasets: tuple[str, ...]   # registry names a paper-scale run needs (absent: embedded)
    paper_variants: tuple[Variant, ...]
    embedded_variants: tuple[Variant, ...] = (Variant("embedded", "embedded default"),)
    models: tuple[str, ...] = ("crw", "imagenet", "random", "pixels")
    notes: tuple[str, ...] = ()

    def variants(self, embedded: bool) -> tuple[Variant, ...]:
        return self.embedded_variants if embedded else self.paper_variants

    @property
    def single_run(self) -> bool:
        """Rendered from the workspace's metrics alone (so the report stage can write it)."""
        return len(self.embedded_variants) == 1 and not self.embedded_variants[0].isolated


@dataclass
class VariantResult:
    """What one run produced: its metrics (None: not run) and where to find it."""
    variant: Variant
    metrics: Mapping[str, Any] | None
    run_ids: Mapping[str, str] = field(default_factory=dict)    # role ("parent", "evaluate") -> id
    experiment: str = ""                                         # DVC experiment name, if any
    revision: str = ""                                           # its commit


# --------------------------------------------------------------------------------------------
# The published numbers (specs: crw.md §8, cut.md §9, evaluation.md §8)
# --------------------------------------------------------------------------------------------

CRW_PAPER = "Jabri et al. 2020 (arXiv 2006.14613)"
CUT_PAPER = "Park et al. 2020 (arXiv 2007.15651), Table 1"

DAVIS_COLUMNS = (
    Column("J&F-Mean", "J&F", 100), Column("J-Mean", "J mean", 100), Column("J-Recall", "J recall", 100),
    Column("J-Decay", "J decay", 100, lower_is_better=True), Column("F-Mean", "F mean", 100),
    Column("F-Recall", "F recall", 100), Column("F-Decay", "F decay", 100, lower_is_better=True),
)
FID_COLUMNS = (
    Column("fid", "FID", lower_is_better=True), Column("fid_clean", "clean-FID", lower_is_better=True),
    Column("kid", "KID", lower_is_better=True),
)
CITY_COLUMNS = FID_COLUMNS + (
    Column("city_miou", "mAP (mean IoU)"), Column("city_pixel_acc", "pixAcc"),
    Column("city_class_acc", "classAcc"),
)

CRW_TRAIN = ("kinetics-crw",)


def _crw_variants(eval_profile: str) -> tuple[Variant, ...]:
    return (Variant("paper", "Kinetics-400 recipe", CRW_TRAIN + (eval_profile,)),)


# An ablation experiment reruns every stage downstream of the new checkpoint. On the embedded
# default the table reads only the CRW's DAVIS J&F, so its experiments leave out what nothing reads:
# the other sets and models, the test-time variants and stream, the hand-made baselines' training
# the translation models and most of test-time training. A `dvc exp run --temp` copy has no
# dvc.lock unless it is committed, and DVC's run cache does not restore stages with uncached or
# persistent outputs, so these would rerun in full: 10 of 19 minutes a setting on 2 cores.
EMBEDDED_ABLATION_TRIM: dict[str, object] = {
    "propagate.sets": ["davis"], "propagate.models": ["crw"], "translate.modes": [],
    "adapt.stream": False, "adapt.compare": [],
    "baselines.methods": [], "baselines.ablation": False,
    "ttt.epochs": 1, "ttt.train_images": 64, "ttt.test_images": 8, "ttt.shifts": ["gaussian_noise"],
}


def _ablation(name: str, title: str, profile: str, values: Sequence[str], label: str,
              note: str) -> Table:
    """One isolated experiment per setting; the setting is profile `<profile>-<value>`."""
    paper = tuple(Variant(v, f"{label} {v}", CRW_TRAIN + ("davis", f"{profile}-{v}"), isolated=True)
                  for v in values)
    # embedded: the same setting on the synthetic world, scored on DAVIS-format data only
    embedded = tuple(Variant(v, f"{label} {v}", (f"{profile}-{v}",), EMBEDDED_ABLATION_TRIM,
                             isolated=True) for v in values)
    return Table(
        name=name, title=title, kind="davis", columns=DAVIS_COLUMNS,
        references=(Reference(f"{CRW_PAPER}, published model", {"J&F-Mean": 67.6, "J-Mean": 64.8,
                                                                 "F-Mean": 70.2}, ("F-Mean",)),),
        datasets=("kinetics400", "davis"), paper_variants=paper, embedded_variants=embedded,
        models=("crw",),
        notes=(note, "The paper's ablation values are not listed in the specs: take them from "
               "arXiv 2006.14613 v2. They were run with the walk before the transition-order fix, "
               "so they are not directly comparable with a run of the fixed walk."),
    )


TABLES: dict[str, Table] = {t.name: t for t in (
    Table(
        name="crw-davis", title="CRW label propagation on DAVIS-2017 val (semi-supervised, 480p)",
        kind="davis", columns=DAVIS_COLUMNS,
        references=(
            Reference(CRW_PAPER, {"J&F-Mean": 67.6, "J-Mean": 64.8, "J-Recall": 76.1, "F-Mean": 70.2,
                                  "F-Recall": 82.1}, ("J-Recall", "F-Mean", "F-Recall")),
            Reference("official pretrained.pth (README)", {
                "J&F-Mean": 67.606, "J-Mean": 64.590, "J-Recall": 75.804, "J-Decay": 20.31,
                "F-Mean": 70.622, "F-Recall": 83.221, "F-Decay": 24.679}),
            Reference("ImageNet ResNet-18, layer3 (paper baseline)", {"J&F-Mean": 62.9}, ("J&F-Mean",)),
        ),
        datasets=("kinetics400", "davis"), paper_variants=_crw_variants("davis"),
        notes=("Users re-evaluating pretrained.pth with the official scripts reported 61.4 (J 58.5, "
               "F 64.4) and 40.8 (plumbing errors); one user's retraining reached 66.9.",
               "Scores are the official protocol: first and last frames not scored, means over "
               "all objects of all sequences."),
    ),
    Table(
        name="crw-pretrained-davis",
        title="Reproduction check: the official pretrained.pth through selfsup's propagation and "
              "DAVIS metric",
        kind="davis", columns=DAVIS_COLUMNS,
        references=(
            Reference("official pretrained.pth (README)", {
                "J&F-Mean": 67.606, "J-Mean": 64.590, "J-Recall": 75.804, "J-Decay": 20.31,
                "F-Mean": 70.622, "F-Recall": 83.221, "F-Decay": 24.679}),
            Reference(CRW_PAPER, {"J&F-Mean": 67.6, "J-Mean": 64.8, "F-Mean": 70.2}, ("F-Mean",)),
        ),
        datasets=("crw_pretrained", "davis"),
        paper_variants=(Variant("paper", "official pretrained.pth", ("crw-pretrained", "davis")),),
        notes=("At paper scale model `crw` is the official checkpoint: its row should match the "
               "README's 67.606. The embedded counterpart scores the synthetic world's own CRW.",
               "Users re-evaluating pretrained.pth with the official scripts reported 61.4 and 40.8 "
               "(plumbing errors: folder mix-ups, list order, stale caches)."),
    ),
    Table(
        name="crw-jhmdb", title="CRW keypoint propagation on JHMDB split-1 test",
        kind="jhmdb", columns=(Column("PCK@0.1", "PCK@0.1"), Column("PCK@0.2", "PCK@0.2")),
        references=(
            Reference(CRW_PAPER, {"PCK@0.1": 59.3, "PCK@0.2": 84.9}),
            Reference("ImageNet ResNet-18, layer3 (paper baseline)", {"PCK@0.1": 53.8, "PCK@0.2": 74.6},
                      ("PCK@0.1", "PCK@0.2")),
        ),
        datasets=("kinetics400", "jhmdb"), paper_variants=_crw_variants("jhmdb"),
        notes=("The official code publishes no JHMDB number; users re-evaluating pretrained.pth "
               "reported 57.6 / 79.6, and 53.4 / 75.6 with radius 5.",),
    ),
    Table(
        name="crw-vip", title="CRW part propagation on VIP val",
        kind="vip", columns=(Column("mIoU", "mIoU"),),
        references=(
            Reference(CRW_PAPER, {"mIoU": 38.6}),
            Reference("ImageNet ResNet-18, layer3 (paper baseline)", {"mIoU": 31.9}, ("mIoU",)),
        ),
        datasets=("kinetics400", "vip"), paper_variants=_crw_variants("vip"),
        notes=("The official code publishes no VIP number; a user re-evaluating pretrained.pth "
               "reported 37.1.",),
    ),
    Table(
        name="cut-horse2zebra", title="CUT / FastCUT on horse→zebra (256×256, FID on 120 testA fakes "
                                      "vs 140 testB reals)",
        kind="translate", columns=FID_COLUMNS,
        references=(
            Reference(f"{CUT_PAPER}: CUT", {"fid": 45.5}),
            Reference(f"{CUT_PAPER}: FastCUT", {"fid": 73.4}),
            Reference(f"{CUT_PAPER}: CycleGAN", {"fid": 77.2}, ("fid",)),
            Reference("official CUT generator (clean-fid authors' recomputation)", {"fid": 45.51, "fid_clean": 43.71}),
            Reference("official FastCUT generator (clean-fid authors' recomputation)",
                      {"fid": 73.38, "fid_clean": 72.53}),
        ),
        datasets=("horse2zebra",),
        paper_variants=(Variant("cut", "CUT", ("horse2zebra-cut",), isolated=True, dataset="horse2zebra"),
                        Variant("fastcut", "FastCUT", ("horse2zebra-fastcut",), isolated=True,
                                dataset="horse2zebra")),
        models=("cut", "fastcut", "sincut", "identity", "untrained"),
        notes=("Users training from scratch reported final-epoch FIDs of 68 and 61.7 (CUT); FastCUT "
               "defaults collapsing to the identity (252.4). FID on so few images moves by several "
               "points between checkpoints: compare last-checkpoint numbers with last-checkpoint "
               "numbers.",),
    ),
    Table(
        name="cut-cat2dog", title="CUT / FastCUT on cat→dog (AFHQ v1, 500 val cats vs 500 val dogs)",
        kind="translate", columns=FID_COLUMNS,
        references=(
            Reference(f"{CUT_PAPER}: CUT", {"fid": 76.2}),
            Reference(f"{CUT_PAPER}: FastCUT", {"fid": 94.0}),
            Reference(f"{CUT_PAPER}: CycleGAN", {"fid": 85.9}, ("fid",)),
            Reference("official CUT generator (clean-fid authors' recomputation)", {"fid": 76.21, "fid_clean": 77.58}),
            Reference("official FastCUT generator (clean-fid authors' recomputation)",
                      {"fid": 93.95, "fid_clean": 95.37}),
        ),
        datasets=("afhq",),
        paper_variants=(Variant("cut", "CUT", ("cat2dog-cut",), isolated=True, dataset="cat2dog"),
                        Variant("fastcut", "FastCUT", ("cat2dog-fastcut",), isolated=True, dataset="cat2dog")),
        models=("cut", "fastcut", "sincut", "identity", "untrained"),
    ),
    Table(
        name="cut-cityscapes", title="CUT / FastCUT on Cityscapes labels→photo (500 val images)",
        kind="translate", columns=CITY_COLUMNS,
        references=(
            Reference(f"{CUT_PAPER}: CUT", {"fid": 56.4, "city_miou": 24.7, "city_pixel_acc": 68.8,
                                            "city_class_acc": 30.7},
                      ("city_miou", "city_pixel_acc", "city_class_acc")),
            Reference(f"{CUT_PAPER}: FastCUT", {"fid": 68.8, "city_miou": 19.1, "city_pixel_acc": 59.9,
                                                "city_class_acc": 24.3},
                      ("city_miou", "city_pixel_acc", "city_class_acc")),
            Reference(f"{CUT_PAPER}: CycleGAN", {"fid": 68.6, "city_miou": 20.4, "city_pixel_acc": 55.9,
                                                 "city_class_acc": 25.4},
                      ("fid", "city_miou", "city_pixel_acc", "city_class_acc")),
        ),
        datasets=("cityscapes", "cityscapes_val_cut"),
        paper_variants=(Variant("cut", "CUT", ("cityscapes-cut",), isolated=True, dataset="cityscapes"),
                        Variant("fastcut", "FastCUT", ("cityscapes-fastcut",), isolated=True,
                                dataset="cityscapes")),
        models=("cut", "fastcut", "sincut", "identity", "untrained"),
        notes=("The semantic scores need the CUT authors' DRN-D-22 Cityscapes segmenter, whose "
               "weights were never released; other segmenters give numbers that are not comparable.",
               "Cityscapes FID needs the CUT authors' resized JPEG val set (`cityscapes_val_cut`); "
               "the plain val split gives much higher FIDs."),
    ),
    _ablation("crw-ablation-dropout", "CRW ablation: edge dropout (DAVIS-2017 val J&F)",
              "crw-dropout", ("0.0", "0.1", "0.2"), "edge dropout",
              "The published recipe uses 0.1; with the official in-place masking the backward step "
              "sees about 0.19."),
    _ablation("crw-ablation-cycle", "CRW ablation: walk length (training clip length, DAVIS-2017 val J&F)",
              "crw-cycle", ("4", "6", "8"), "clip length",
              "A clip of T frames trains on the palindromes 0→k→0 for k = 2..T−1."),
    _ablation("crw-ablation-temperature", "CRW ablation: temperature τ (DAVIS-2017 val J&F)",
              "crw-tau", ("0.01", "0.05", "0.1"), "τ",
              "With the fixed walk the authors recommend τ 0.01–0.05 (the paper's 0.07 was tuned "
              "for the walk before the fix)."),
)}


def _cut_fid() -> Table:
    """CUT's Table 1 FID column: the three unpaired tasks in one table (six paper-scale runs)."""
    parts = [TABLES[n] for n in ("cut-horse2zebra", "cut-cat2dog", "cut-cityscapes")]
    task = {"cut-horse2zebra": "horse→zebra", "cut-cat2dog": "cat→dog", "cut-cityscapes": "Cityscapes"}
    references = tuple(Reference(f"{r.label} [{task[t.name]}]", {k: v for k, v in r.values.items()
                                                                 if k in {"fid", "fid_clean"}},
                                 tuple(u for u in r.unverified if u in {"fid", "fid_clean"}))
                       for t in parts for r in t.references)
    variants = tuple(Variant(f"{v.dataset}-{v.name}", f"{task[t.name]} {v.label}", v.profiles, v.overrides,
                             isolated=True, dataset=v.dataset) for t in parts for v in t.paper_variants)
    return Table(
        name="cut-fid", title="CUT Table 1: FID of CUT and FastCUT on the three unpaired tasks",
        kind="translate", columns=FID_COLUMNS, references=references,
        datasets=tuple(dict.fromkeys(d for t in parts for d in t.datasets)), paper_variants=variants,
        models=parts[0].models,
        notes=("Per-task details, semantic scores and user reports: tables cut-horse2zebra, "
               "cut-cat2dog and cut-cityscapes.",),
    )


TABLES["cut-fid"] = _cut_fid()


def get(name: str) -> Table:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    return TABLES[name]


# --------------------------------------------------------------------------------------------
# Our numbers out of reports/metrics.json
# --------------------------------------------------------------------------------------------

def model_metrics(table: Table, metrics: Mapping[str, Any] | None, model: str) -> Mapping[str, Any] | None:
    """The dict of one model (propagation) or one translation mode, or None if absent."""
    if not metrics:
        return None
    if table.kind == "translate":
        section = metrics.get("translate")
    else:
        section = (metrics.get("propagation") or {}).get(table.kind)
    if not isinstance(section, Mapping):
        return None
    value = section.get(model)
    return value if isinstance(value, Mapping) else None


def models_present(table: Table, results: Sequence[VariantResult]) -> list[str]:
    """Declared models first (in order), then any others the runs produced."""
    seen: list[str] = []
    for result in results:
        for name in _section_keys(table, result.metrics):
            if name not in seen:
                seen.append(name)
    ordered = [m for m in table.models if m in seen]
    return ordered + [m for m in seen if m not in ordered]


def _section_keys(table: Table, metrics: Mapping[str, Any] | None) -> list[str]:
    if not metrics:
        return []
    section = metrics.get("translate") if table.kind == "translate" else \
        (metrics.get("propagation") or {}).get(table.kind)
    return [k for k, v in section.items() if isinstance(v, Mapping)] if isinstance(section, Mapping) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def extra_columns(table: Table, results: Sequence[VariantResult]) -> list[Column]:
    """Numeric metrics our runs produced that the published columns do not cover."""
    known = {c.key for c in table.columns}
    extra: list[str] = []
    for result in results:
        for model in _section_keys(table, result.metrics):
            values = model_metrics(table, result.metrics, model) or {}
            for key, value in values.items():
                if key not in known and key not in extra and _number(value) is not None:
                    extra.append(key)
    return [Column(k, k) for k in extra]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return "0.0" if text in {"-0.0", "-0.00", "-0.000"} else text


def _digits(value: float) -> int:
    """Published numbers keep their own precision (67.606 stays 67.606)."""
    text = repr(float(value))
    if "e" in text or "." not in text:
        return 1
    return max(1, min(3, len(text.split(".")[1].rstrip("0")) or 1))


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def short_id(run_id: str) -> str:
    return run_id[:8] if run_id else ""


def render_markdown(table: Table, results: Sequence[VariantResult], *, embedded: bool,
                    mlflow_url: str | None = None, generated_by: str = "") -> str:
    """The table as Markdown: published rows, then ours, same columns; run ids linked."""
    extras = extra_columns(table, results)
    columns = list(table.columns) + extras
    header = ["source"] + [c.label for c in columns] + ["MLflow runs"]
    lines = [f"# {table.title}", ""]
    scale_note = ("**Synthetic counterpart**: our rows come from the embedded default (the "
                  "synthetic world at a CPU-sized scale), laid beside the published numbers for "
                  "orientation only; they are not comparable." if embedded else
                  "**Paper scale**: our rows come from runs with the paper's data sets and settings "
                  f"(profiles: {', '.join(sorted({p for v in table.paper_variants for p in v.profiles}))}).")
    lines += [scale_note, "", _row(header), _row(["---"] + ["---:"] * len(columns) + ["---"])]
    any_unverified = False
    for ref in table.references:
        cells = [ref.label]
        for col in columns:
            value = ref.values.get(col.key)
            if value is None:
                cells.append("–")
                continue
            mark = DAGGER if col.key in ref.unverified else ""
            any_unverified |= bool(mark)
            cells.append(fmt(value, _digits(value)) + mark)
        lines.append(_row(cells + [""]))
    models = models_present(table, results)
    for result in results:
        prefix = "ours" if len(results) == 1 else f"ours, {result.variant.label}"
        if result.metrics is None or not _section_keys(table, result.metrics):
            reason = "not run" if result.metrics is None else f"not run (no {table.kind} results)"
            lines.append(_row([f"{prefix}: {reason}"] + ["–"] * len(columns) + [_run_cell(result, mlflow_url)]))
            continue
        for model in models:
            values = model_metrics(table, result.metrics, model)
            if values is None:
                continue
            cells = [f"{prefix}: {model}"]
            for col in columns:
                number = _number(values.get(col.key))
                scaled = None if number is None else number * col.scale
                cells.append(fmt(scaled, 1 if scaled is not None and abs(scaled) >= 10 else 3))
            lines.append(_row(cells + [_run_cell(result, mlflow_url)]))
    lines.append("")
    lower = [c.label for c in columns if c.lower_is_better]
    if lower:
        lines += [f"Lower is better for {', '.join(lower)}; higher for the others.", ""]
    if any_unverified:
        lines += [f"{DAGGER} marked in the specs as unverified: check the paper before quoting.", ""]
    for note in table.notes:
        lines.append(f"- {note}")
    experiments = [r for r in results if r.experiment]
    if experiments:
        lines += ["", "DVC experiments: " + ", ".join(
            f"`{r.experiment}`" + (f" ({r.revision[:7]})" if r.revision else "") for r in experiments) + "."]
    if generated_by:
        lines += ["", f"_Generated by `{generated_by}`._"]
    return "\n".join(lines).rstrip() + "\n"


def _run_cell(result: VariantResult, mlflow_url: str | None) -> str:
    parts = []
    for role, run_id in result.run_ids.items():
        if not run_id:
            continue
        text = f"{role} `{short_id(run_id)}`"
        if mlflow_url:
            text = f"[{text}]({mlflow_url.rstrip('/')}/#/runs/{run_id})"
        parts.append(text)
    return ", ".join(parts)


def uses_datasets(table: Table, datasets: Sequence[str]) -> bool:
    """Whether a run configured with these `download.datasets` is a paper-scale run of `table`."""
    return all(d in datasets for d in table.datasets)

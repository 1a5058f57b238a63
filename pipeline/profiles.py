"""Named profiles: `profiles/<name>.yaml` files that override sections of params.yaml.

A profile is applied the way DVC applies experiment parameters: flattened into
`section.key=value` overrides for `dvc exp run -S ...` (or written into params.yaml by DVC's own
override code for a workspace run), so DVC records exactly which values changed.

Mapping-valued parameters (`translate.lambda_nce: {cut: 1.0, fastcut: 1.0}`) merge key by key
everywhere: a profile holding `translate: {lambda_nce: {fastcut: 10.0}}` changes only `fastcut`,
in `combine`, in `selfsup.config.load_params(..., profile=...)` and in DVC, which receives the
dotted leaf `-S translate.lambda_nce.fastcut=10.0`. An entry params.yaml does not have yet (a
mode its mapping omits) goes as Hydra's append, `-S +translate.lambda_nce.fastcut=10.0`, when the
params the overrides apply to are known (`to_set_params(..., base=...)`); DVC refuses a plain
override of a key that does not exist.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from selfsup.config import ParamsError, load_params, merge_overrides
from pipeline.project import PROJECT_ROOT

PROFILES_DIR = PROJECT_ROOT / "profiles"

_PLAIN = re.compile(r"^[A-Za-z0-9_./\-]+$")


def available(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def profile_path(name: str | Path, profiles_dir: Path = PROFILES_DIR) -> Path:
    """The file of profile `name` (a name from profiles/ or a path to a YAML file)."""
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return candidate
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown profile {str(name)!r}: no {path}; profiles: "
                         f"{', '.join(available(profiles_dir)) or 'none'}")
    return path


def load_profile(name: str | Path, profiles_dir: Path = PROFILES_DIR) -> dict:
    """The overrides of one profile as a nested mapping."""
    path = profile_path(name, profiles_dir)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return data


def describe(name: str, profiles_dir: Path = PROFILES_DIR) -> str:
    """A profile's description: the comment lines at the top of its file."""
    lines = []
    for line in profile_path(name, profiles_dir).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


# Lists that profiles add to rather than replace: `kinetics-crw` + `davis` needs both data sets.
UNION_KEYS = ("download.datasets", "propagate.sets", "translate.modes")


def combine(names: Iterable[str | Path], extra: Mapping[str, Any] | None = None,
            profiles_dir: Path = PROFILES_DIR) -> dict:
    """Profiles merged left to right, then `extra` (nested or dotted keys) on top.

    Later profiles replace earlier values, except the UNION_KEYS lists, which are joined (first
    occurrence order); `extra` always replaces.
    """
    merged: dict = {}
    for name in names:
        profile = load_profile(name, profiles_dir)
        before = flatten(merged)
        merged = merge_overrides(merged, profile)
        after = flatten(profile)
        for key in UNION_KEYS:
            old, new = before.get(key), after.get(key)
            if isinstance(old, list) and isinstance(new, list):
                section, leaf = key.split(".")
                merged[section][leaf] = old + [v for v in new if v not in old]
    if extra:
        merged = merge_overrides(merged, unflatten(extra))
    return merged


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'pretrain': {'lr': 1e-4}} -> {'pretrain.lr': 1e-4} (lists stay values).

    Mapping-valued parameters flatten to their entries, {'translate': {'lambda_nce': {'fastcut':
    10.0}}} -> {'translate.lambda_nce.fastcut': 10.0}, so that setting one entry leaves the
    others; an empty mapping stays a value (it changes nothing when merged).
    """
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        if isinstance(value, Mapping):
            value = unflatten(value)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), Mapping):
            node[parts[-1]] = merge_overrides(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def _parses_to(text: str, value: Any) -> bool:
    """Whether the override grammar reads `text` back as exactly `value` (unquoted paths, names)."""
    from dvc.utils.hydra import to_hydra_overrides

    try:
        parsed = to_hydra_overrides([f"k={text}"])[0].value()
    except Exception:  # not valid unquoted
        return False
    return type(parsed) is type(value) and parsed == value


def format_value(value: Any) -> str:
    """A value in the override grammar that `dvc exp run -S` parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"cannot pass {value!r} as a parameter")
        text = repr(value)
        return text if any(c in text for c in ".e") else f"{text}.0"
    if isinstance(value, str):
        if _PLAIN.match(value) and _parses_to(value, value):
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot pass a {type(value).__name__} as a parameter: {value!r}")


_MISSING = object()


def _lookup(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, Mapping) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _is_new_entry(parts: list[str], base: Mapping[str, Any]) -> bool:
    """Whether `parts` is absent from `base` inside a mapping-valued parameter (a new entry of
    e.g. translate.lambda_nce); new sections or section keys are not (DVC refuses those: typos)."""
    if _lookup(base, parts) is not _MISSING:
        return False
    for depth in range(len(parts) - 1, 0, -1):
        ancestor = _lookup(base, parts[:depth])
        if ancestor is not _MISSING:
            return depth >= 2 and isinstance(ancestor, Mapping)
    return False


def _check_key(overrides: Mapping[str, Any], path: tuple = ()) -> None:
    """Every key must be a string the override grammar reads back as one dotted part."""
    from dvc.utils.hydra import to_hydra_overrides

    for key, value in overrides.items():
        where = ".".join(map(str, (*path, key)))
        ok = isinstance(key, str) and key and "." not in key
        if ok:
            try:
                ok = to_hydra_overrides([f"{where}=0"])[0].key_or_group == where
            except Exception:
                ok = False
        if not ok:
            raise ValueError(f"cannot pass key {key!r} (at {where}) as a parameter: keys must be "
                             "names without dots or spaces")
        if isinstance(value, Mapping):
            _check_key(value, (*path, key))


def to_set_params(overrides: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> list[str]:
    """Nested overrides -> ['section.key=value', ...] for `dvc exp run -S`.

    Mapping-valued parameters become one item per entry ('translate.lambda_nce.fastcut=10.0'),
    which DVC merges into the mapping like `merge_overrides` does. With `base` (the params the
    overrides apply to), an entry that mapping lacks is appended: '+translate.lambda_nce.x=1.0'.
    """
    _check_key(overrides)
    items = []
    for key, value in flatten(overrides).items():
        add = "+" if base is not None and _is_new_entry(key.split("."), base) else ""
        items.append(f"{add}{key}={format_value(value)}")
    return items


def validate(overrides: Mapping[str, Any], params_file: Path, label: str = "overrides") -> None:
    """Raise ParamsError (naming the key) unless params_file + overrides is a valid configuration."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{Path(str(label)).stem}-",
                                     delete=False) as handle:
        yaml.safe_dump(dict(overrides), handle, sort_keys=False)
        tmp = Path(handle.name)
    try:
        load_params(params_file, profile=tmp)
    except ParamsError as exc:
        raise ParamsError(str(exc).replace(str(tmp), str(label))) from None
    finally:
        tmp.unlink(missing_ok=True)


def apply_to_params_file(params_file: Path, overrides: Mapping[str, Any]) -> None:
    """Write overrides into params.yaml with DVC's own `-S` code (comments and order kept)."""
    from dvc.utils.hydra import apply_overrides

    base = yaml.safe_load(Path(params_file).read_text()) or {}
    apply_overrides(params_file, to_set_params(overrides, base))


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.profiles [NAME ...]`: list the profiles, or print the `dvc exp run`
    command that applies the named ones (merged left to right)."""
    import shlex
    import sys

    names = list(sys.argv[1:] if argv is None else argv)
    if not names:
        for name in available():
            print(f"{name:<24} {describe(name)}")
        return 0
    merged = combine(names)
    params_file = PROJECT_ROOT / "params.yaml"
    validate(merged, params_file, label="+".join(names))
    args = ["dvc", "exp", "run", "--name", "--".join(Path(n).stem for n in names)]
    for item in to_set_params(merged, yaml.safe_load(params_file.read_text()) or {}):
        args += ["-S", item]
    print(" ".join(shlex.quote(a) for a in args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

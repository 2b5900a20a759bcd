"""Named recipes: ``presets/<name>.yaml`` holds what a recipe changes of ``params.yaml``.

``visionflow preset NAME`` merges it into ``params.yaml`` key by key: a mapping merges into
the mapping ``params.yaml`` has there; any other value, or a mapping where ``params.yaml``
has none, replaces it as written; ``null`` deletes the key. The result is checked with the
config loader before it replaces ``params.yaml`` (atomically), so a bad preset changes
nothing. Comments are kept (a ruamel.yaml round trip): ``params.yaml``'s own, and on each
line the preset sets, the preset's comment where it has one.

``apply_overrides`` sets dotted keys the same way, checked and with comments kept: what
``python -m flows.pipeline -S key=value`` does before it runs, as ``dvc exp run -S`` would.

Only the ``visionflow`` command and the flows import this module; no stage does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken

from visionflow.config import Config, ConfigError, load_config
from visionflow.io import atomic_path

PRESETS_DIR = "presets"  # beside params.yaml


def preset_file(name: str, root: Path) -> Path:
    """``<root>/presets/<name>.yaml``; an unknown name lists the presets there."""
    folder = Path(root) / PRESETS_DIR
    path = folder / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"{path}: no such preset (presets: {', '.join(names) or f'none in {folder}'})")
    return path


def apply_preset(name: str, params_path: str | Path = "params.yaml") -> Config:
    """Merge preset ``name`` into ``params_path``, check the result, then write it; returns the new config."""
    params_path = Path(params_path)
    yaml = _round_trip_yaml()
    preset = _read(yaml, preset_file(name, params_path.parent))
    params = _read(yaml, params_path)
    merge_preset(params, preset)
    return _write_checked(yaml, params, params_path, f"with preset {name}")


def apply_overrides(overrides: dict[str, Any], params_path: str | Path = "params.yaml") -> Config:
    """Set each dotted key of ``params_path`` to its value, as ``dvc exp run -S key=value`` does; the
    result is checked before it is written (a bad value changes nothing); returns the new config."""
    params_path = Path(params_path)
    yaml = _round_trip_yaml()
    params = _read(yaml, params_path)
    for dotted, value in overrides.items():
        _set(params, dotted, value)
    return _write_checked(yaml, params, params_path, f"with -S {', '.join(overrides)}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` -> ``("key.sub", value)``, the value read as YAML: ``10``, ``[0.5, 0.6]``, ``null``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: not KEY=VALUE (a dotted key of params.yaml: train.detector.finetune.epochs=10)")
    try:
        return key.strip(), YAML(typ="safe").load(value) if value.strip() else ""
    except YAMLError as e:
        raise ValueError(f"{text!r}: the value is not valid YAML ({' '.join(str(e).split())})") from None


def _set(params, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    section = params
    for i, key in enumerate(path):
        if key not in section:
            section[key] = CommentedMap()
        section = section[key]
        if not _is_mapping(section):
            raise ConfigError(f"-S {dotted}: {'.'.join(path[:i + 1])} is not a section of params.yaml")
    section[last] = _as_written(value)


def _as_written(value):
    """Lists as params.yaml writes them, on one line; mappings as blocks."""
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _as_written(item)
        return mapping
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(_as_written(item) for item in value)
        seq.fa.set_flow_style()
        return seq
    return value


def _write_checked(yaml: YAML, params: CommentedMap, params_path: Path, what: str) -> Config:
    """Write ``params`` over ``params_path`` once the config loader accepts it; the new config."""
    with atomic_path(params_path) as tmp:
        with tmp.open("w") as f:
            yaml.dump(params, f)
        try:
            return load_config(tmp)
        except ConfigError as e:  # name the file the user knows, not the scratch copy
            raise ConfigError(str(e).replace(str(tmp), f"{params_path} {what}", 1)) from None


def merge_preset(params, preset) -> None:
    """Merge ``preset`` into ``params`` in place (both ruamel mappings), by the rules above."""
    end = _end(params)
    for key, value in preset.items():
        if value is None:
            if key in params:
                del params[key]
                params.ca.items.pop(key, None)
            continue
        if _is_mapping(value) and _is_mapping(params.get(key)):
            merge_preset(params[key], value)
        else:
            params[key] = _without_trailing_lines(value)
        _take_comment(params, preset, key)
    _keep_end_lines(params, end)


def _is_mapping(value) -> bool:
    return isinstance(value, CommentedMap)


def _end(mapping) -> tuple | None:
    """``(mapping, key)`` of the last line of ``mapping``'s block: ruamel keeps the lines after a block there."""
    if not mapping:
        return None
    key = list(mapping)[-1]
    value = mapping[key]
    if _is_mapping(value) and value and not value.fa.flow_style():
        return _end(value)
    return mapping, key


def _keep_end_lines(mapping, old_end: tuple | None) -> None:
    """The blank lines and comments after the block stay after it when its last entry is deleted or added to."""
    new_end = _end(mapping)
    if old_end is None or new_end is None or (new_end[0] is old_end[0] and new_end[1] == old_end[1]):
        return
    comment, after, column = _eol_comment(*old_end)
    _set_eol_comment(*old_end, comment, "", column)  # (harmless when that entry is gone)
    comment, _, column = _eol_comment(*new_end)
    _set_eol_comment(*new_end, comment, after, column)


def _eol_comment(mapping, key) -> tuple[str | None, str, int | None]:
    """The comment on ``key``'s line (or None), the lines ruamel attached after it, and the comment's column."""
    item = mapping.ca.items.get(key)
    token = item[2] if item and len(item) > 2 else None
    if token is None:
        return None, "", None
    first, _, rest = token.value.partition("\n")
    return (first if first.lstrip().startswith("#") else None), rest, token.column


def _set_eol_comment(mapping, key, comment: str | None, after: str, column: int | None) -> None:
    mapping.ca.items.pop(key, None)
    if comment is not None or after:
        token = CommentToken(f"{comment or ''}\n{after}", CommentMark(column or 0))
        mapping.ca.items[key] = [None, None, token, None]


def _take_comment(params, preset, key) -> None:
    """The preset's comment on ``key``'s line, if it has one; the blank lines and comments after it stay params'."""
    comment, _, column = _eol_comment(preset, key)
    old_comment, after, old_column = _eol_comment(params, key)
    if comment is not None:
        _set_eol_comment(params, key, comment, after, old_column if old_comment is not None else column)


def _without_trailing_lines(value):
    """A preset's mapping keeps each line's comment, not the blank lines and comments between its keys."""
    if _is_mapping(value):
        for key in value:
            comment, _, column = _eol_comment(value, key)
            _set_eol_comment(value, key, comment, "", column)
            _without_trailing_lines(value[key])
    return value


def _round_trip_yaml() -> YAML:
    yaml = YAML()  # round trip: comments, key order and flow lists stay as written
    yaml.width = 4096  # never re-wrap a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def _read(yaml: YAML, path: Path) -> CommentedMap:
    try:
        data = yaml.load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except MarkedYAMLError as e:  # bad syntax or a key given twice: its line and what is wrong
        where = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{e.problem}") from None
    except YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not _is_mapping(data):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data

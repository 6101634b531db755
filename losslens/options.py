"""One set of options for every command, and the settings file that fills them.

`Options` is what `pipeline.analyze` takes (and `check`, `skiplist`, `watch`, reports,
`--jobs` and Dask workers through it): how to read (format, roles), the detectors' fields,
which events to ignore (tags, kinds, allowed step ranges), the skip plan (checkpoints, PaLM
policy, batch size) and the gate of `check` (fail-on, baseline, rtol). A frozen dataclass;
picklable, so that workers get the same options.

`load(...)` reads `[tool.losslens]` in pyproject.toml or a losslens.toml (top-level keys),
the first found from the current folder upward, or the file named; `Options.merged(...)` lays
command-line values over it (options override the file). Keys use dashes (`fail-on`) or
underscores; messages name the file and the key. Library messages name parameters
(`checkpoint_every`); the CLI shows them as flags.

    fail-on = "warning"
    ignore-tags = ["validation-*"]          # fnmatch patterns
    ignore-kinds = ["overflow"]
    allow-steps = ["1500-1650", 2000]       # events starting inside are ignored
    checkpoint-every = 1000                 # or checkpoints = [...], checkpoint-dir = "..."
    before = 100; min-skip = 200; max-skip = 500; global-batch-size = 1536
    rtol = 0.05; baseline = "golden/values.json"
    [tool.losslens.detectors.spike]
    threshold = 8
    [tool.losslens.roles]
    "my/loss" = "train_loss"
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidParameterError, LogNotFoundError
from .events import EVENT_KINDS, SEVERITIES

FAIL_ON = SEVERITIES
DEFAULT_RTOL = 0.05


@dataclass(frozen=True)
class Options:
    """Everything a command's analysis depends on besides the logs (all optional)."""

    # reading
    input_format: str | None = None
    roles: Mapping[str, str] = field(default_factory=dict)  # tag -> role
    #: seconds one unit of a walked folder (a file or TensorBoard folder) may take to be read
    #: and analysed before it is a failed run (None: `limits.UNIT_TIMEOUT`)
    unit_timeout: float | None = None
    # detection
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> fields
    ignore_tags: tuple[str, ...] = ()  # fnmatch patterns
    ignore_kinds: tuple[str, ...] = ()
    allow_steps: tuple[tuple[int, int], ...] = ()  # inclusive; events starting inside ignored
    # skip plan
    checkpoint_every: int | None = None
    checkpoints: tuple[int, ...] | None = None
    checkpoint_dir: str | None = None
    before: int = 100
    min_skip: int = 200
    max_skip: int = 500
    global_batch_size: int | None = None
    # the gate (check)
    fail_on: str = "critical"
    rtol: float = DEFAULT_RTOL
    baseline: str | None = None
    source: str | None = None  # the settings file these came from, if any
    # the in-training guard's policy table ([tool.losslens.guard]; losslens.guard reads it)
    guard: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> "Options":
        """Raise InvalidParameterError on an out-of-range value; return self."""
        if self.fail_on not in FAIL_ON:
            raise InvalidParameterError(
                f"fail-on must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")
        if not (self.rtol >= 0 and math.isfinite(self.rtol)):
            raise InvalidParameterError(f"rtol must be a finite number >= 0, got {self.rtol}")
        unknown = [k for k in self.ignore_kinds if k not in EVENT_KINDS]
        if unknown:
            raise InvalidParameterError(
                f"ignore-kinds: unknown kind(s) {', '.join(unknown)}; known: "
                f"{', '.join(EVENT_KINDS)}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise InvalidParameterError(
                f"`checkpoint_every` must be > 0, got {self.checkpoint_every}")
        if self.unit_timeout is not None and not (self.unit_timeout > 0):
            raise InvalidParameterError(f"`unit_timeout` must be > 0, got {self.unit_timeout:g}")
        if self.input_format is not None:
            from .errors import UnknownFormatError
            from .readers import get_format

            try:
                get_format(self.input_format)
            except UnknownFormatError as exc:  # (a settings file's: named by from_mapping)
                raise InvalidParameterError(str(exc)) from None
        if self.global_batch_size is not None and self.global_batch_size <= 0:
            raise InvalidParameterError(
                f"`global_batch_size` must be > 0, got {self.global_batch_size}")
        self.policy.validate()
        return self

    @property
    def policy(self):
        """The PaLM skip policy of these options."""
        from .skipplan import SkipPolicy

        return SkipPolicy(before=self.before, min_skip=self.min_skip, max_skip=self.max_skip)

    def detector_instances(self) -> dict[str, Any] | None:
        """Every registered detector with these options' field overrides (None: none given)."""
        return build_detectors(self.detectors, self.source or "settings")

    def keep(self, event: Any) -> bool:
        """False for an event these options ignore (tag pattern, kind, allowed step range)."""
        if any(fnmatch.fnmatchcase(event.tag, pat) for pat in self.ignore_tags):
            return False
        if event.kind in self.ignore_kinds:
            return False
        return not any(a <= event.start_step <= b for a, b in self.allow_steps)

    def merged(self, **given: Any) -> "Options":
        """These options with the values given (None and empty collections: not given)."""
        changes = {k: v for k, v in given.items()
                   if v is not None and not (isinstance(v, (tuple, list, dict)) and not v)}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InvalidParameterError(f"unknown option(s) {', '.join(unknown)}")
        if "roles" in changes:  # roles add to the file's (a tag named on the command wins)
            changes["roles"] = {**self.roles, **changes["roles"]}
        for key in ("ignore_tags", "ignore_kinds", "checkpoints"):
            if key in changes:
                changes[key] = tuple(changes[key])
        return dataclasses.replace(self, **changes)


def build_detectors(overrides: Mapping[str, Mapping[str, Any]], where: str = "settings"):
    """Detector instances with the field overrides, or None when there are none."""
    if not overrides:
        return None
    from .detectors import DETECTORS, default_detectors, detector_class

    for name, fields in overrides.items():
        if name not in DETECTORS:
            raise InvalidParameterError(
                f"{where}: unknown detector {name!r}; known: {', '.join(DETECTORS)}")
        known = {f.name for f in dataclasses.fields(detector_class(name))}
        bad = sorted(set(fields) - known)
        if bad:
            raise InvalidParameterError(
                f"{where}: detector {name!r} has no field(s) {', '.join(bad)}; "
                f"fields: {', '.join(sorted(known))}")
    detectors = default_detectors(**{k: dict(v) for k, v in overrides.items()})
    for det in detectors.values():
        if hasattr(det, "validate"):
            try:
                det.validate()
            except InvalidParameterError as exc:  # name the settings file it came from
                text = str(exc)
                raise InvalidParameterError(text if text.startswith(where)
                                            else f"{where}: {text}") from None
    return detectors


# --------------------------------------------------------------------------- the file

#: settings-file key -> Options field
_KEYS = {"input-format": "input_format", "roles": "roles", "detectors": "detectors",
         "ignore-tags": "ignore_tags", "ignore-kinds": "ignore_kinds",
         "allow-steps": "allow_steps", "checkpoint-every": "checkpoint_every",
         "checkpoints": "checkpoints", "checkpoint-dir": "checkpoint_dir", "before": "before",
         "min-skip": "min_skip", "max-skip": "max_skip",
         "global-batch-size": "global_batch_size", "fail-on": "fail_on", "rtol": "rtol",
         "baseline": "baseline", "guard": "guard", "unit-timeout": "unit_timeout"}


def _toml():
    import tomllib  # the standard library's since Python 3.11, the oldest losslens runs on
    return tomllib


def _load_toml(path: Path) -> dict:
    tomllib = _toml()
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LogNotFoundError(f"{path}: cannot read settings ({exc.strerror})") from None
    except UnicodeDecodeError as exc:  # a latin-1 pyproject.toml: TOML is UTF-8
        raise InvalidParameterError(f"{path}: not valid TOML (not UTF-8: byte "
                                    f"{exc.object[exc.start]:#04x} at offset {exc.start})") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameterError(f"{path}: not valid TOML ({exc})") from None


def _section(path: Path, doc: dict) -> dict | None:
    tool = doc.get("tool", {}).get("losslens") if isinstance(doc.get("tool"), dict) else None
    if tool is not None and not isinstance(tool, dict):
        raise InvalidParameterError(f"{path}: tool.losslens must be a table ([tool.losslens]), "
                                    f"got {type(tool).__name__} {tool!r}")
    if path.name == "pyproject.toml":
        return tool
    return tool if tool is not None else {k: v for k, v in doc.items() if k != "tool"}


def find_config(start: Path | None = None) -> Path | None:
    """losslens.toml, or a pyproject.toml with [tool.losslens], from `start` upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / "losslens.toml"
        if own.is_file():
            return own
        py = folder / "pyproject.toml"
        if py.is_file() and _section(py, _load_toml(py)) is not None:
            return py
    return None


def _steps(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = f"{value[0]}-{value[1]}"  # (checked as "A-B": a range that ends before it starts)
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(value))
    if not m:
        raise InvalidParameterError(
            f"{where}: allow-steps entries are N, \"A-B\" or [A, B], got {value!r}")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
        raise InvalidParameterError(f"{where}: allow-steps range {value!r} ends before it starts")
    return a, b


def _entries(value: Any) -> list:
    """A list setting's entries: one value given alone (`allow-steps = "100-200"`) is one
    entry, not a string to walk character by character."""
    return value if isinstance(value, list) else [value]


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidParameterError(f"{where}: {key} must be a list of strings, got {value!r}")


def _int(table: Mapping[str, Any], key: str, where: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def _roles(value: Any, where: str) -> dict[str, str]:
    from .roles import ROLES

    if not isinstance(value, dict):
        raise InvalidParameterError(
            f"{where}: roles must be a table of tag = role, e.g. \"my/loss\" = \"train_loss\"")
    for tag, role in value.items():
        if role not in ROLES:
            raise InvalidParameterError(
                f"{where}: roles: unknown role {role!r} for {tag!r}; known roles: "
                f"{', '.join(ROLES)}")
    return {str(k): str(v) for k, v in value.items()}


def _checkpoint_list(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return tuple(sorted(set(value)))
    raise InvalidParameterError(f"{where}: checkpoints must be a list of iterations, "
                                f"got {value!r}")


def _guard_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParameterError(f"{where}: guard must be a table, [tool.losslens.guard]")
    return dict(value)


def from_mapping(raw: Mapping[str, Any], where: str = "settings",
                 base: Path | None = None) -> Options:
    """Options from a `[tool.losslens]` table (dashes or underscores in keys); relative paths
    are taken from `base` (the settings file's folder)."""
    table = {str(k).replace("_", "-"): v for k, v in raw.items()}
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise InvalidParameterError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    detectors = table.get("detectors", {})
    if not isinstance(detectors, dict) or not all(isinstance(v, dict) for v in detectors.values()):
        raise InvalidParameterError(
            f"{where}: detectors must be tables, e.g. [tool.losslens.detectors.spike]")

    def path(key: str) -> str | None:
        value = table.get(key)
        if value is None or base is None or str(value).startswith("wandb://"):
            return None if value is None else str(value)
        return str(base / str(value))

    try:
        rtol = float(table.get("rtol", DEFAULT_RTOL))
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{where}: rtol must be a number") from None
    try:
        unit_timeout = (None if table.get("unit-timeout") is None
                        else float(table["unit-timeout"]))
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{where}: unit-timeout must be a number of seconds") \
            from None
    given = {
        "input_format": table.get("input-format"),
        "roles": _roles(table.get("roles", {}), where),
        "detectors": {str(k): dict(v) for k, v in detectors.items()},
        "ignore_tags": _strings(table.get("ignore-tags", []), "ignore-tags", where),
        "ignore_kinds": _strings(table.get("ignore-kinds", []), "ignore-kinds", where),
        "allow_steps": tuple(_steps(v, where) for v in _entries(table.get("allow-steps", []))),
        "checkpoint_every": _int(table, "checkpoint-every", where),
        "checkpoints": _checkpoint_list(table.get("checkpoints"), where),
        "checkpoint_dir": path("checkpoint-dir"),
        "before": _int(table, "before", where), "min_skip": _int(table, "min-skip", where),
        "max_skip": _int(table, "max-skip", where),
        "global_batch_size": _int(table, "global-batch-size", where),
        "fail_on": None if "fail-on" not in table else str(table["fail-on"]),
        "rtol": rtol, "baseline": path("baseline"), "source": where,
        "guard": _guard_table(table.get("guard", {}), where),
        "unit_timeout": unit_timeout,
    }
    opts = Options().merged(**given)
    try:
        return opts.validate()
    except InvalidParameterError as exc:
        text = str(exc)
        raise InvalidParameterError(text if text.startswith(where) else f"{where}: {text}") \
            from None


def load(path: str | Path | None = None, start: Path | None = None) -> Options:
    """Options from the settings file `path`, or from the first one found upward from `start`
    (the current folder); the defaults when there is none."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise LogNotFoundError(f"`config` {p}: no such file")
    else:
        p = find_config(start)
        if p is None:
            return Options()
    section = _section(p, _load_toml(p))
    if section is None:
        raise InvalidParameterError(f"{p}: no [tool.losslens] table")
    where = f"{p} [tool.losslens]" if p.name == "pyproject.toml" else str(p)
    return from_mapping(section, where, p.parent)

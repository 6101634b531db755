"""The guard's configuration: `[tool.losslens.guard]` (pyproject.toml) or `[guard]`
(losslens.toml) for its policy, and the same `[tool.losslens.detectors.NAME]` fields that
`analyze`, `check` and `watch` use, so the guard's events are theirs.

```toml
[tool.losslens.guard]
check-every = 50        # run the detectors every N steps (and at once over the bar)
skip-nonfinite = true   # skip_step on a NaN/inf loss or grad norm
skip-z = 0              # skip_step on a spike this many robust scales high (0: never)
stop-after = 50         # stop_and_restart when a spike has not come back in N steps
stop-on = ["spike", "divergence", "nonfinite"]
alert-severity = "warning"
before = 100            # the PaLM plan
min-skip = 200
max-skip = 500
asynchronous = true     # the detectors in a worker process; false: in this one,
slice-ms = 0            # in process: N > 0 runs the window update in N ms slices
max-lag = 100           # either way a decision reaches step() at most N calls late
```
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidParameterError
from .core import Guard, GuardPolicy


def policy_from_mapping(raw: Mapping[str, Any], where: str = "guard settings") -> GuardPolicy:
    """A GuardPolicy from a settings table (keys with dashes or underscores)."""
    known = {f.name: f for f in dataclasses.fields(GuardPolicy)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise InvalidParameterError(
                f"{where}: unknown key {key!r}; known: "
                f"{', '.join(n.replace('_', '-') for n in known)}")
        if name == "stop_on":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise InvalidParameterError(f"{where}: stop-on must be a list of kinds")
            value = tuple(str(v) for v in value)
        values[name] = value
    policy = GuardPolicy(**values)
    try:
        policy.validate()
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc}") from None
    return policy


def load_guard_config(path: str | Path | None = None,
                      start: Path | None = None) -> tuple[GuardPolicy, Any]:
    """(policy, detectors) from the settings file `path`, or the one `analyze` finds from
    `start` (the working folder) upward; the defaults when there is none. `detectors` is
    None (the defaults) or the name -> detector mapping the file's detector fields make."""
    from .. import options

    opts = options.load(path, start)
    where = f"{opts.source or 'settings'} [guard]"
    return policy_from_mapping(opts.guard, where), opts.detector_instances()


def guard_from_settings() -> Guard:
    """A Guard with the policy and detectors of the settings file `analyze` finds (the
    callbacks' default)."""
    policy, detectors = load_guard_config()
    return Guard(policy, detectors=detectors)

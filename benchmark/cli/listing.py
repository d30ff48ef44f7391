"""``bdbench list``: every plugin with its source, parameters and requirements; data sets; suites."""

from __future__ import annotations

from ..plugins.params import describe_params
from ..plugins.registry import default_registry, read_registry_toml


def list_text() -> str:
    registry = default_registry()
    lines = []
    for kind in ("attack", "defense"):
        lines.append(f"{kind}s:")
        for name in registry.names(kind):
            entry = registry.entries[(kind, name)]
            try:
                cls = entry.load()
            except Exception:
                lines.append(f"  {name}  [{entry.source}]  UNAVAILABLE: {entry.error.strip().splitlines()[-1]}")
                continue
            requires = ", ".join(sorted(cls.requires)) or "nothing"
            lines.append(f"  {name} v{cls.version}  [{entry.source}]  requires: {requires}")
            for pname, ptype, default in describe_params(cls.Params):
                lines.append(f"      {pname}: {ptype} = {default!r}")
    lines.append("datasets:")
    for name, spec in sorted(registry.datasets.items()):
        where = "generated" if spec.generator else f"--data-dir {name}/ or hub {spec.hub_id}"
        lines.append(f"  {name}  ({where})")
    lines.append("  your own data, no plugin needed: --dataset PATH (a folder of train.tsv, test.tsv, optional dev.tsv) "
                 "or --dataset hf:ID[:CONFIG]")
    lines.append("suites:")
    for name, suite in read_registry_toml().get("suites", {}).items():
        lines.append(f"  {name}: {suite.get('description', '')}")
    if registry.broken:
        lines.append("plugins that failed to load or were disabled:")
        lines += [f"  {b}" for b in registry.broken]
    return "\n".join(lines)

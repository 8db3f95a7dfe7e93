"""``immunocal params list|show|export`` — browse and export the parameter registry."""

from __future__ import annotations

import math

from immunocal.priors import registry


def _fmt(x: float | None) -> str:
    if x is None:
        return "pending"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def cmd_list(args) -> int:
    reg = registry()
    models = [args.model] if args.model else reg.models
    for model in models:
        entry = reg.entry(model)
        presets = [args.preset] if args.preset else list(entry.presets)
        for preset in presets:
            reg.check_preset(model, preset)
            print(f"# {model} — {entry.title}  [preset {preset}: {entry.presets[preset]}]")
            opts = reg.preset_options(model, preset)
            if opts:
                print("# options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
            rows = []
            for r in reg.records(model):
                value = None if r.pending else r.default_for(preset)
                lo, hi = r.bounds_for(preset)
                fixed = "fixed" if r.is_fixed(preset) else ""
                rows.append([r.name, r.symbol, r.unit_for(preset), _fmt(value), f"[{_fmt(lo)}, {_fmt(hi)}]",
                             fixed, r.source])
            print(_table(rows, ["name", "symbol", "unit", "default", "range", "fixed", "source"]))
            print()
    return 0


def cmd_show(args) -> int:
    reg = registry()
    found = reg.find(args.name)
    if not found:
        import difflib

        names = [r.name for m in reg.models for r in reg.records(m)]
        close = difflib.get_close_matches(args.name, names, n=3)
        raise ValueError(f"no parameter named '{args.name}'" + (f"; did you mean {close}?" if close else ""))
    for r in found:
        print(f"{r.model}.{r.name} ({r.symbol}) — {r.description}")
        print(f"  unit:     {r.unit}")
        for preset in reg.presets(r.model):
            value = None if r.pending else r.default_for(preset)
            lo, hi = r.bounds_for(preset)
            fixed = " (fixed by the seed)" if r.is_fixed(preset) else ""
            print(f"  {preset:<16} default {_fmt(value)}, range [{_fmt(lo)}, {_fmt(hi)}]{fixed}")
        print(f"  scale:    {r.scale}" + (f" (from {_fmt(r.log_lower)}; 0 = off admissible)" if r.log_lower else ""))
        print(f"  source:   {r.source}")
        if r.seed_range:
            print(f"  seed range: {r.seed_range}")
        if r.status != "ok":
            print(f"  status:   {r.status}")
        if r.note:
            print(f"  note:     {r.note}")
        if not r.pending:
            first = next(iter(reg.presets(r.model)))
            print(f"  prior:    {r.prior(first).to_dict()}")
        print()
    return 0


def cmd_export(args) -> int:
    from immunocal.calib.cli.types import output_file

    output_file(args.file, args.force, option="FILE")
    ps = registry().parameter_set(args.model, args.preset)
    path = ps.to_file(args.file)
    print(f"wrote {len(ps)} {args.model} parameters (preset {args.preset}) to {path}")
    return 0


def register(commands) -> None:
    p = commands.add("params", help="browse and export the parameter registry")
    sub = p.add_subparsers(dest="params_command", required=True)
    lst = sub.add_parser("list", help="table of parameters: name, symbol, unit, default, range, source")
    lst.add_argument("--model", choices=registry().models)
    lst.add_argument("--preset", help="one preset (default: all presets of the model)")
    lst.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="everything the registry knows about one parameter (name or symbol)")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)
    exp = sub.add_parser("export", help="write a preset's values to a TOML/JSON parameter file")
    exp.add_argument("--model", required=True, choices=registry().models)
    exp.add_argument("--preset", required=True)
    exp.add_argument("file", help="output file ending in .toml or .json")
    exp.add_argument("--force", action="store_true", help="replace an existing file")
    exp.set_defaults(func=cmd_export)

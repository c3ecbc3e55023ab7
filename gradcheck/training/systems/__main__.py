"""``python -m gradcheck.training.systems``: check every seed system, print the table.

Each system runs ``--steps`` steps from ``--starts`` canonical starting points (seeds 0, 1,
...) against autograd + its torch optimizer in float64; the table gives the worst agreement
over them. The seed bugs follow, with the reports the checks give for them.
"""

from __future__ import annotations

import argparse
import sys

import torch

from gradcheck.training.models import check_model, verify_model
from gradcheck.training.steps import check_step, verify_step
from gradcheck.training.systems import SYSTEMS, SeedSystem, bugs, modules


def _row(system: SeedSystem, steps: int, starts: int) -> str:
    reports = [check_step(system.step, system.start(seed), steps=steps) for seed in range(starts)]
    verdict = "pass" if all(r.ok for r in reports) else "FAIL"
    curves = [r.curves for r in reports if r.curves is not None]
    loss = max(c.agreement for c in curves)
    parameters = max(c.parameter_agreement for c in curves)
    first = curves[0]
    model = ""
    if system.module is not None and system.spec is not None:
        module = system.module(system.sizes)
        ok = verify_model(module, system.spec, max_examples=50, seed=0).ok
        model = f"{'pass' if ok else 'FAIL'} (`{system.spec.name}`)"
    devices = ["cpu"]
    for device in system.devices:
        if device == "cpu":
            continue
        if device == "cuda" and not torch.cuda.is_available():
            devices.append("cuda not run (no GPU)")
            continue
        on_device = check_step(system.step, system.start(0), steps=steps, device=device)
        devices.append(device if on_device.ok else f"{device} FAIL")
        if not on_device.ok:
            verdict = "FAIL"
    return (
        f"| `{system.name}` | {system.seeds} | {system.summary} | {', '.join(devices)} | "
        f"{verdict} | "
        f"{first.hand[0]:.4g} → {first.hand[-1]:.4g} | {loss:.1e} | {parameters:.1e} | "
        f"{model or '-'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcheck.training.systems")
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    parser.add_argument("--starts", type=int, default=5, help="starting points (default 5)")
    options = parser.parse_args(argv)
    torch.manual_seed(0)  # nn.Linear's initial values, overwritten by every check anyway
    print(
        "| system | seeds | what | devices | steps vs autograd + optimizer | loss (start 0) "
        "| loss curves agree to | parameters agree to | model vs spec |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for system in SYSTEMS:
        print(_row(system, options.steps, options.starts))
    print()
    two_layer = SYSTEMS[0]
    print(verify_step(bugs.SEED004_STALE_W2, steps=options.steps, max_examples=20, seed=0))
    print()
    module = bugs.Seed000TwoLayerNet(3, 4, 2)
    print(verify_model(module, modules.NET_SPEC, max_examples=50, seed=0))
    print()
    print(check_model(module, modules.NET_SPEC, {"x": [[1.0, -2.0, 0.5]]}))
    print()
    print(check_step(bugs.SEED002_IF_GRAD, bugs.SEED002_ZERO_BATCH, steps=options.steps))
    print()
    print(check_step(bugs.SEED001_WRONG_MASK, two_layer.start(0), steps=options.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Split the run's plan into one manifest per batch (the ``plan`` rule).

The plan is made once, while Snakemake reads the Snakefile, from one listing of the input and one
of the output, and written to a local file. This step turns it into the per-batch manifests the
``render`` jobs read; they are ordinary Snakemake outputs, so on the cloud path Snakemake uploads
them to the default storage where the Google Batch machines find them.
"""

import json
from pathlib import Path


def write_manifests(plan: dict, manifests: list[str]) -> None:
    by_batch = {Path(path).stem: Path(path) for path in manifests}
    if set(by_batch) != set(plan["batches"]):
        raise ValueError("the manifests asked for do not match the batches of the plan")
    for batch, files in plan["batches"].items():
        manifest = {
            "batch": batch,
            "input": plan["input"],
            "output": plan["output"],
            "files": files,
        }
        by_batch[batch].parent.mkdir(parents=True, exist_ok=True)
        by_batch[batch].write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def main(smk) -> None:
    plan = json.loads(Path(smk.input.plan).read_text())
    write_manifests(plan, list(smk.output.manifests))
    with open(smk.log[0], "w") as log:
        print(f"plan {plan['plan']}: {len(plan['batches'])} manifest(s) written", file=log)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 - defined by Snakemake's script preamble

"""The thumbnail job's library; the rule entry points beside this package import it.

Planning (read while Snakemake reads the Snakefile) imports only the standard library:
``formats`` (the one table of the file types the job reads), ``locations`` (input and output,
config checks), ``plan`` (what is new, the batches), ``report`` (rows, the merged report) and
``store`` (every storage call; google-cloud-storage imported on first use). Rendering, imported
once per batch, adds numpy and Pillow: ``signals`` (reading) -> ``reduce`` (bounded memory) ->
``canvas`` (shared drawing) -> ``draw.*`` (one module per kind of data) -> ``preview``
(``make_preview``), run in a process of its own per batch (``worker``). Importing this package
imports none of them.
"""

# The renderer's version, recorded with every preview (in a bucket, on the object; in the report,
# the `renderer` column), so that `redo: older-than=VERSION` finds the previews an older one drew.
# Raise it (year.month[.n]) with any change that makes the preview of the same file differ.
RENDERER = "2026.12"

"""The thumbnail job's library; the rule entry points beside this package import it.

Planning (read while Snakemake reads the Snakefile) imports only the standard library:
``formats`` (the one table of the file types the job reads), ``locations`` (input and output,
config checks), ``plan`` (what is new, the batches), ``report`` (rows, the merged report) and
``store`` (every storage call; google-cloud-storage imported on first use). Rendering, imported
once per batch, adds numpy and Pillow: ``signals`` (reading) -> ``reduce`` (bounded memory) ->
``canvas`` (shared drawing) -> ``draw.*`` (one module per kind of data) -> ``preview``
(``make_preview``). Importing this package imports none of them.
"""

"""microscopy-notebook's own tooling, one subpackage per artifact it serves.

Layers, lowest first (each imports only from the ones before it):

- `paths`: where the repository's artifacts are;
- `cloud`: the offline Google Cloud Storage (pinned fetches, sample files, the emulator and its
  front);
- `image`: the container image (its package list, the build and its checks);
- `book`: the Jupyter Book (the build command, publishing, its Sphinx extensions);
- `bench`: the benchmarks (shared helpers, the comparison, archive scale, the rendering floor).

Installed editable by nox (``pip install -e .``); nothing here is shipped to users.
"""

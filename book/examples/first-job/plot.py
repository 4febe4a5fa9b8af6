"""Load a microscope file with HyperSpy and save a picture of it with matplotlib."""

import hyperspy.api as hs
import matplotlib

matplotlib.use("Agg")  # draw into files: a batch machine has no screen
import matplotlib.pyplot as plt

signal = hs.load(snakemake.input[0])  # noqa: F821 (Snakemake defines `snakemake`)
if isinstance(signal, list):  # a file can hold several signals: take the first
    signal = signal[0]

fig, ax = plt.subplots(figsize=(5, 5))
if signal.axes_manager.signal_dimension == 2:
    ax.imshow(signal.data, cmap="gray")
else:
    ax.plot(signal.axes_manager.signal_axes[0].axis, signal.data)
ax.set_title(signal.metadata.General.title)
fig.savefig(snakemake.output[0], dpi=100)  # noqa: F821

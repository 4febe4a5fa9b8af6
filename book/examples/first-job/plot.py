"""Load a microscope file with HyperSpy and save a picture of it with matplotlib."""

import hyperspy.api as hs
import matplotlib
import numpy as np

matplotlib.use("Agg")  # draw into files: a batch machine has no screen
import matplotlib.pyplot as plt  # noqa: E402

signal = hs.load(snakemake.input[0])  # noqa: F821 (Snakemake defines `snakemake`)
if isinstance(signal, list):  # a file can hold several signals: take the first
    signal = signal[0]
title = signal.metadata.General.title or signal.metadata.General.original_filename

# A stack, a map or a scan holds an image or a spectrum at each position: draw their sum.
positions = signal.axes_manager.navigation_size
if positions > 1:
    signal = signal.sum()
    drawn = "images" if signal.axes_manager.signal_dimension == 2 else "spectra"
    title += f"\nsum of its {positions} {drawn}"

fig, ax = plt.subplots(figsize=(5, 5))
if signal.is_rgb:  # a colour picture (.png, .jpg): its red, green and blue as they are
    ax.imshow(np.stack([signal.data[colour] for colour in "RGB"], axis=-1))
elif signal.axes_manager.signal_dimension == 2:
    ax.imshow(signal.data, cmap="gray")
else:
    axis = signal.axes_manager.signal_axes[0]
    ax.plot(axis.axis, signal.data)
    ax.set_xlabel(f"{axis.name} ({axis.units})")
ax.set_title(title)
fig.savefig(snakemake.output[0], dpi=100)  # noqa: F821

# The original guide's test.py on current HyperSpy: hyperspy.api (api_nogui is gone), and the first
# signal of a file that holds several (the original crashed on those: hs.load returns a list).
import hyperspy.api as hs
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

signal = hs.load(snakemake.input[0])  # noqa: F821 - injected by Snakemake
if isinstance(signal, list):
    signal = signal[0]
signal.plot()
fig = plt.gcf()
fig.tight_layout()
fig.savefig(snakemake.output[0])  # noqa: F821
